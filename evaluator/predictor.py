"""Fitting the learned-class predictor from the evaluator's verdicts (scikit-learn; causal).

`fit` takes judged prompts (text, winning level, when judged) and a time `now`, and uses
only verdicts judged *before* `now`: a verdict from after a decision time can never shape the
classifier used for that decision (the causality guard; tests/unit/test_learned_classes.py).

- Model: multinomial logistic regression (L2, C = `C`; Newton-CG; about two seconds for
  5,000 verdicts, its six fits together) on the features of `proxy.classify.learned` (words,
  the prompt's hash, regex class, log length).
- Cross-fitting: verdicts are split at random into `FOLDS` folds; each fold is predicted by
  the model fitted on the others. Those held-out predictions give the bucket edges (quantiles
  of P(baseline best)), each verdict's held-out class, and the held-out accuracy. Quality
  per learned class is therefore scored only on verdicts the predicting model never saw.
- The published model is then fitted on every verdict and scored with the same edges.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from proxy.classify.classifier import CLASSES, classify
from proxy.classify.learned import (
    LearnedClassifier,
    bucket_edges,
    class_name,
    length_feature,
    prompt_key,
    prompt_words,
)

FOLDS = 5  # cross-fitting: each held-out model sees 80% of the verdicts (see fit)
BUCKETS = 10  # quantiles of P(baseline best); x (levels - 1) leanings = learned classes
C = 1.0  # scikit-learn's default regularisation strength, chosen before any replay
MIN_WORD_PROMPTS = 3  # a word needs this many distinct judged prompts to get a weight
MIN_VERDICTS = 100  # fewer: keep the regex classes
WEIGHT_FLOOR = 1e-4  # smaller weights are dropped from the published document


@dataclasses.dataclass(frozen=True, slots=True)
class Example:
    """One verdict on a captured prompt."""

    text: str
    winner: int  # index into the levels
    judged_at: datetime | float  # a datetime live; hours in the replay


@dataclasses.dataclass(frozen=True, slots=True)
class HeldOut:
    """A verdict with the learned class its held-out model gave it."""

    judged_at: datetime | float
    task_class: str
    winner: int


@dataclasses.dataclass(frozen=True, slots=True)
class Fitted:
    """A fit: the classifier to publish and what the held-out verdicts say about it."""

    classifier: LearnedClassifier
    heldout: tuple[HeldOut, ...]
    heldout_accuracy: float
    heldout_log_loss: float
    regex_accuracy: float  # the regex classes' majority level, held out the same way
    verdicts: int


class _Features:
    """Column indices for the features of a set of prompts."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.parsed = [(text.lower().split(), classify(text), prompt_key(text)) for text in texts]
        prompts_with: Counter[str] = Counter()
        seen = set()
        for lowered, _, key in self.parsed:
            if key not in seen:
                seen.add(key)
                prompts_with.update(set(prompt_words(lowered)))
        self.words = sorted(w for w, n in prompts_with.items() if n >= MIN_WORD_PROMPTS)
        self.prompts = sorted(seen)
        offset = 2  # 0: length, 1: unused (keeps the layout readable)
        self.word_index = {w: offset + i for i, w in enumerate(self.words)}
        offset += len(self.words)
        self.prompt_index = {p: offset + i for i, p in enumerate(self.prompts)}
        offset += len(self.prompts)
        self.class_index = {c: offset + i for i, c in enumerate(CLASSES)}
        self.columns = offset + len(CLASSES)

    def matrix(self) -> object:
        """A sparse matrix (rows: prompts in order)."""
        from scipy.sparse import csr_matrix

        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        for r, (lowered, regex_class, key) in enumerate(self.parsed):
            counts: Counter[int] = Counter(self.word_index[w] for w in prompt_words(lowered)
                                           if w in self.word_index)
            counts[self.prompt_index[key]] += 1
            counts[self.class_index[regex_class]] += 1
            cells = [*counts.items(), (0, length_feature(lowered))]
            rows.extend([r] * len(cells))
            cols.extend(c for c, _ in cells)
            values.extend(float(v) for _, v in cells)
        return csr_matrix((values, (rows, cols)), shape=(len(self.parsed), self.columns))


def fit(examples: Sequence[Example], levels: Sequence[str], now: datetime | float, *,
        version: str, seed: int = 0, min_verdicts: int = MIN_VERDICTS) -> Fitted | None:
    """Fit on the verdicts judged before `now`; None if too few (the regex classes stay)."""
    from sklearn.linear_model import LogisticRegression

    usable = [e for e in examples if _before(e.judged_at, now) and 0 <= e.winner < len(levels)]
    winners = np.array([e.winner for e in usable], dtype=int)
    if len(usable) < min_verdicts or len(set(winners.tolist())) < 2:
        return None
    features = _Features([e.text for e in usable])
    x = features.matrix()
    rng = random.Random(seed)
    folds = np.array([rng.randrange(FOLDS) for _ in usable])

    def model(rows: np.ndarray) -> LogisticRegression:
        return LogisticRegression(C=C, solver="newton-cg", max_iter=100).fit(x[rows], winners[rows])  # type: ignore[index]

    heldout = np.zeros((len(usable), len(levels)))
    regex_right = 0
    for fold in range(FOLDS):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        if len(test) == 0:
            continue
        if len(set(winners[train].tolist())) < 2:
            heldout[test] = np.bincount(winners[train], minlength=len(levels)) / len(train)
            continue
        fitted = model(train)
        heldout[np.ix_(test, fitted.classes_)] = fitted.predict_proba(x[test])  # type: ignore[index]
        majority = _regex_majority([features.parsed[i][1] for i in train], winners[train])
        regex_right += sum(majority.get(features.parsed[i][1], 0) == winners[i] for i in test)
    full = model(np.arange(len(usable)))
    classifier = _classifier(full, features, levels, version, heldout)
    edges = classifier.edges
    accuracy = float((heldout.argmax(axis=1) == winners).mean())
    classifier = dataclasses.replace(classifier, heldout_accuracy=accuracy)
    labelled = tuple(HeldOut(e.judged_at, _heldout_class(row, edges, levels), e.winner)
                     for e, row in zip(usable, heldout, strict=True))
    picked = np.clip(heldout[np.arange(len(usable)), winners], 1e-12, 1.0)
    return Fitted(classifier, labelled, accuracy, float(-np.log(picked).mean()),
                  regex_right / len(usable), len(usable))


def _before(judged_at: datetime | float, now: datetime | float) -> bool:
    return judged_at < now  # type: ignore[operator]


def _regex_majority(classes: list[str], winners: np.ndarray) -> dict[str, int]:
    tally: dict[str, Counter[int]] = {}
    for task_class, winner in zip(classes, winners.tolist(), strict=True):
        tally.setdefault(task_class, Counter())[winner] += 1
    return {name: counts.most_common(1)[0][0] for name, counts in tally.items()}


def _heldout_class(probabilities: np.ndarray, edges: tuple[float, ...],
                   levels: Sequence[str]) -> str:
    """The class a held-out prediction falls in (the same rule as LearnedClassifier)."""
    import bisect

    baseline = float(probabilities[0])
    lean = int(np.argmax(probabilities[1:]))
    return class_name(bisect.bisect_right(edges, baseline), levels[1 + lean])


def _classifier(full: object, features: _Features, levels: Sequence[str], version: str,
                heldout: np.ndarray) -> LearnedClassifier:
    """The published form: logits against the baseline, per feature, small ones dropped."""
    coef = np.zeros((len(levels), features.columns))
    intercept = np.zeros(len(levels))
    classes = list(full.classes_)  # type: ignore[attr-defined]
    weights, offsets = full.coef_, full.intercept_  # type: ignore[attr-defined]
    if len(classes) == 2:  # scikit-learn's binary form: one row, for the second class
        weights = np.vstack([-weights[0] / 2, weights[0] / 2])
        offsets = np.array([-offsets[0] / 2, offsets[0] / 2])
    coef[classes] = weights
    intercept[classes] = offsets
    missing = [k for k in range(len(levels)) if k not in classes]
    intercept[missing] = -30.0  # a level never judged best gets (almost) no probability
    delta = coef[1:] - coef[0]
    bias = intercept[1:] - intercept[0]

    def table(index: dict[str, int]) -> dict[str, tuple[float, ...]]:
        return {name: tuple(round(float(v), 6) for v in delta[:, col])
                for name, col in index.items() if np.abs(delta[:, col]).max() > WEIGHT_FLOOR}

    return LearnedClassifier(
        version, tuple(levels), tuple(float(v) for v in bias),
        tuple(float(v) for v in delta[:, 0]), table(features.word_index),
        table(features.prompt_index), table(features.class_index),
        bucket_edges(heldout[:, 0].tolist(), BUCKETS))
