"""Learned task classes: the causality guard, the published form, the optimiser's inputs."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

from evaluator.predictor import MIN_VERDICTS, Example, fit
from proxy.classify.classifier import CLASSES
from proxy.classify.learned import (
    ClassifierHolder,
    LearnedClassifier,
    RegexClassifier,
    is_learned,
)
from proxy.optimiser.inputs import Usage, Verdict, build_terms

LEVELS = ("L0", "L1", "L2")


def _examples(count: int, rng: random.Random, start_h: float = 0.0) -> list[Example]:
    """Prompts whose wording says which level wins (with some noise)."""
    kinds = [("please explain in depth the history of", 0), ("what is the capital of", 2),
             ("give one synonym for", 1)]
    out = []
    for i in range(count):
        text, winner = kinds[i % 3]
        if rng.random() < 0.15:
            winner = rng.randrange(3)
        out.append(Example(f"{text} thing{rng.randrange(40)}", winner, start_h + i / count))
    return out


def test_a_verdict_judged_after_the_decision_time_never_changes_the_fit() -> None:
    rng = random.Random(3)
    past = _examples(240, rng)
    now = 10.0
    before = fit(past, LEVELS, now, version="v")
    assert before is not None
    # Verdicts at or after `now`, all contradicting the past: the guard drops every one.
    future = [Example(e.text, (e.winner + 1) % 3, now + k) for k, e in enumerate(past[:120])]
    future.append(Example(past[0].text, 2, now))
    after = fit([*past, *future], LEVELS, now, version="v")
    assert after is not None
    assert after.classifier.document() == before.classifier.document()
    assert after.heldout == before.heldout
    assert after.verdicts == before.verdicts == len(past)


def test_too_few_verdicts_keep_the_regex_classes() -> None:
    assert fit(_examples(MIN_VERDICTS - 1, random.Random(1)), LEVELS, 99.0, version="v") is None


def test_the_predictor_learns_which_level_wins_and_round_trips_its_document() -> None:
    fitted = fit(_examples(300, random.Random(5)), LEVELS, 99.0, version="v1")
    assert fitted is not None
    classifier = fitted.classifier
    assert fitted.heldout_accuracy > 0.6
    again = LearnedClassifier.from_document(classifier.document())
    assert again == classifier
    deep = again.classify("please explain in depth the history of thing3")
    short = again.classify("what is the capital of thing7")
    assert is_learned(deep) and is_learned(short)
    assert deep in classifier.classes and short in classifier.classes
    # Buckets rise with P(L0 best): the in-depth prompt sits above the capital question.
    assert deep.split("/")[1] > short.split("/")[1]
    assert short.endswith("/L2")
    # Every held-out verdict has a class the published classifier can give.
    assert {h.task_class for h in fitted.heldout} <= set(classifier.classes)


def test_the_holder_starts_with_the_regex_classes_and_swaps_atomically() -> None:
    holder = ClassifierHolder()
    assert isinstance(holder.current, RegexClassifier)
    assert holder.current.classify("who wrote the iliad") in CLASSES
    fitted = fit(_examples(300, random.Random(2)), LEVELS, 99.0, version="v2")
    assert fitted is not None
    holder.publish(fitted.classifier)
    assert is_learned(holder.current.classify("who wrote the iliad"))


def test_learned_classes_without_usage_take_energy_from_the_regex_rows() -> None:
    classes = ("learned/00/L1", "learned/00/L2")
    usage = [Usage("open/s", level, 100, 2.0, joules, 1.0)
             for level, joules in (("L0", 1000.0), ("L1", 300.0), ("L2", 200.0))]
    verdicts = [Verdict(classes[i % 2], LEVELS[i % 3], 1.0) for i in range(60)]
    built = build_terms(LEVELS, classes, usage, verdicts, ci_g_per_kwh=300.0,
                        j_per_output_token=1.0, half_life_h=24.0, prior_strength=20.0,
                        lower_bound_z=0.2, min_verdicts=30)
    assert built.terms is not None
    for terms in built.terms:
        assert terms.carbon_g[0] > terms.carbon_g[1] > terms.carbon_g[2] > 0


def test_the_replay_policy_serves_an_hour_without_that_hours_verdicts() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.learned_policy import LearnedPolicy

    rng = random.Random(7)
    examples = _examples(600, rng)
    texts = sorted({e.text for e in examples})
    index = {t: i for i, t in enumerate(texts)}
    policy = LearnedPolicy(texts, LEVELS, half_life_h=24.0, retention_h=168.0,
                           prior_strength=20.0, lower_bound_z=0.2, embodied_g_per_s=0.0)

    def judge(hour: int, batch: list[Example], flip: bool = False) -> None:
        prompts = np.array([index[e.text] for e in batch])
        best = np.array([(e.winner + flip) % 3 for e in batch])
        joules = np.tile([1000.0, 300.0, 200.0], (len(batch), 1))
        policy.judged(hour, prompts, joules, joules / 250, best)

    counts = np.ones(len(texts))
    judge(0, examples[:300])
    assert policy.rows(0.0, 300.0, 100.0, 400.0, 0.1, counts) is None  # judged during hour 0
    first = policy.rows(1.0, 300.0, 100.0, 400.0, 0.1, counts)
    assert first is not None
    judge(1, examples[300:], flip=True)  # judged during hour 1: unknown while serving hour 1
    again = policy.rows(1.0, 300.0, 100.0, 400.0, 0.1, counts)
    assert again is not None
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    later = policy.rows(2.0, 300.0, 100.0, 400.0, 0.1, counts)
    assert later is not None and policy.fits == 2
