"""LearnedClassifier: task classes from a predictor of each directive level's quality (pure).

The evaluator fits a regularised multinomial logistic regression on its own verdicts (which
level's answer the judge preferred, `evaluator/predictor.py`) and publishes it as a JSON
document. This module only scores it, with a dot product over a handful of dict lookups, so
no scikit-learn on the request path (~µs, `bench/optimiser_speed.py`).

Features of a prompt (the text `classify` reads, lower-cased and split on whitespace):

- its words, at most the first `HEAD_WORDS` and the last `TAIL_WORDS` (the cost is bounded
  however long the prompt); only words seen in at least a few judged prompts have a weight;
- the prompt itself, as a 64-bit BLAKE2b hash of its text (surrounding whitespace stripped):
  a prompt that recurs gets the verdicts it had (the model stores hashes, never text);
- the regex classifier's class (`proxy.classify.classifier`) and log(1 + words).

The model gives logits d_k = z_k - z_0 of every level against the baseline (index 0), so
P(baseline best) = 1 / (1 + sum_k exp(d_k)). A prompt's learned class is the bucket of that
probability (quantile edges of held-out predictions) and the cheaper level it leans to, e.g.
``learned/03/L2``: the LP, the Allocation, the ledger and the admin API see plain class names.
Bucket names are stable from one fit to the next (bucket 03 is always the fourth-lowest
share of baseline wins), so the ledger's per-class energy keeps its meaning across refits.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.classify.classifier import classify, classify_words

HEAD_WORDS = 48
TAIL_WORDS = 16
PREFIX = "learned/"


def prompt_words(lowered_words: list[str]) -> list[str]:
    """The words that carry features: the head and tail of a long prompt."""
    if len(lowered_words) <= HEAD_WORDS + TAIL_WORDS:
        return lowered_words
    return lowered_words[:HEAD_WORDS] + lowered_words[-TAIL_WORDS:]


def prompt_key(text: str) -> str:
    """The prompt's identity feature: a hash of its text (no text is kept)."""
    return hashlib.blake2b(text.strip().encode(), digest_size=8).hexdigest()


def length_feature(lowered_words: list[str]) -> float:
    """log(1 + words): prompt length on a scale a linear model can use."""
    return math.log1p(len(lowered_words))


def class_name(bucket: int, lean: str) -> str:
    """The learned class of a bucket and the level it leans to."""
    return f"{PREFIX}{bucket:02d}/{lean}"


def is_learned(task_class: str | None) -> bool:
    """Whether a class name is a learned one (not a regex class)."""
    return task_class is not None and task_class.startswith(PREFIX)


Weights = tuple[float, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class LearnedClassifier:
    """A published predictor: weights per feature (one per non-baseline level), bucket edges."""

    version: str
    levels: tuple[str, ...]
    bias: Weights
    length: Weights
    words: Mapping[str, Weights]
    prompts: Mapping[str, Weights]
    regex_classes: Mapping[str, Weights]
    edges: tuple[float, ...]  # ascending P(baseline best) edges: len(edges) + 1 buckets
    heldout_accuracy: float | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class this predictor can give."""
        return tuple(class_name(b, lean) for b in range(len(self.edges) + 1)
                     for lean in self.levels[1:])

    def logits(self, text: str) -> Weights:
        """d_k = z_k - z_0 for every non-baseline level k."""
        words = text.split()
        lowered = text.lower().split()
        rows = [self.regex_classes.get(classify_words(text, words)),
                self.prompts.get(prompt_key(text))]
        rows.extend(map(self.words.get, prompt_words(lowered)))
        length = length_feature(lowered)
        if len(self.bias) == 2:  # three levels: two running sums, the common case
            first = self.bias[0] + self.length[0] * length
            second = self.bias[1] + self.length[1] * length
            for row in rows:
                if row is not None:
                    first += row[0]
                    second += row[1]
            return first, second
        totals = [b + w * length for b, w in zip(self.bias, self.length, strict=True)]
        for row in rows:
            if row is not None:
                for k, value in enumerate(row):
                    totals[k] += value
        return tuple(totals)

    def baseline_probability(self, logits: Weights) -> float:
        """P(the baseline level's answer is judged best)."""
        return 1.0 / (1.0 + sum(math.exp(min(d, 50.0)) for d in logits))

    def classify(self, text: str) -> str:
        """The learned class of a prompt."""
        logits = self.logits(text)
        bucket = bisect.bisect_right(self.edges, self.baseline_probability(logits))
        lean = max(range(len(logits)), key=logits.__getitem__)
        return class_name(bucket, self.levels[1 + lean])

    def document(self) -> dict[str, Any]:
        """The JSON form that is persisted (`predictors.model_json`)."""
        return {"version": self.version, "levels": list(self.levels), "bias": list(self.bias),
                "length": list(self.length),
                "words": {k: list(v) for k, v in self.words.items()},
                "prompts": {k: list(v) for k, v in self.prompts.items()},
                "regex_classes": {k: list(v) for k, v in self.regex_classes.items()},
                "edges": list(self.edges), "heldout_accuracy": self.heldout_accuracy}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> LearnedClassifier:
        """Rebuild a published predictor from its JSON form."""
        def table(name: str) -> dict[str, Weights]:
            return {k: tuple(float(x) for x in v) for k, v in document[name].items()}

        return cls(str(document["version"]), tuple(document["levels"]),
                   tuple(float(x) for x in document["bias"]),
                   tuple(float(x) for x in document["length"]), table("words"),
                   table("prompts"), table("regex_classes"),
                   tuple(float(x) for x in document["edges"]), document.get("heldout_accuracy"))


class RegexClassifier:
    """The cold start: the regex classes (`proxy.classify.classifier`)."""

    version = None
    levels: tuple[str, ...] = ()

    def classify(self, text: str) -> str:
        """The regex task class of a prompt."""
        return classify(text)


TaskClassifier = LearnedClassifier | RegexClassifier


class ClassifierHolder:
    """The classifier in force; the optimiser job swaps it (one reference assignment)."""

    def __init__(self, initial: TaskClassifier | None = None) -> None:
        self.current: TaskClassifier = initial or RegexClassifier()

    def publish(self, classifier: TaskClassifier) -> None:
        """Swap in a new classifier; requests in flight keep the one they read."""
        self.current = classifier


def bucket_edges(baseline_probabilities: Sequence[float], buckets: int) -> tuple[float, ...]:
    """Quantile edges that split predictions into at most `buckets` groups of equal size.

    Each edge lies halfway between two neighbouring distinct predictions, so no bucket is
    empty (tied predictions share a bucket, and a bucket then covers more than its share).
    """
    ordered = sorted(baseline_probabilities)
    edges: list[float] = []
    for i in range(1, buckets):
        k = (len(ordered) * i) // buckets
        if 0 < k < len(ordered) and ordered[k - 1] < ordered[k]:
            edge = (ordered[k - 1] + ordered[k]) / 2
            if not edges or edge > edges[-1]:
                edges.append(edge)
    return tuple(edges)
