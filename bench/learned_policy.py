"""The learned-class policy in the Sprout replay, trained causally as the evaluator would be.

At each evaluator firing the replay hands over the prompts it judged during that hour; their
verdicts exist from the end of that hour (`judged_at` = hour + 0.5), so they can shape
decisions from the next hour on, never the hour they were judged in. Before a decision at
hour t the policy refits the production predictor (`evaluator.predictor.fit`, which itself
ignores any verdict judged at or after t) on the verdicts still within prompt retention, and
solves the production LP over the learned classes with:

- quality per learned class from the *held-out* (cross-fitted) verdicts, decayed, shrunk and
  lower-bounded exactly as `proxy.optimiser.inputs.build_terms` does live;
- energy and time per (learned class, level) from the judged prompts' own measurements (the
  replay's stand-in for the ledger's regenerations), decayed by age;
- traffic shares from the traffic served so far, labelled with the current classifier.

Without a predictor yet (fewer than `evaluator.predictor.MIN_VERDICTS` verdicts) every
request is served at L0, the production cold start.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from evaluator.predictor import Example, Fitted, fit
from proxy.classify.learned import LearnedClassifier
from proxy.optimiser.lp import ClassTerms, solve
from proxy.optimiser.quality import VerdictCounts


@dataclasses.dataclass
class _Judged:
    judged_at: float
    prompts: np.ndarray
    energy_j: np.ndarray
    time_s: np.ndarray
    best: np.ndarray


class LearnedPolicy:
    """Refit at each new evaluator run, then a per-class LP over the learned classes."""

    def __init__(self, texts: list[str], levels: tuple[str, ...], *, half_life_h: float,
                 retention_h: float, prior_strength: float, lower_bound_z: float,
                 embodied_g_per_s: float) -> None:
        self._texts = texts
        self._levels = levels
        self._rate = math.log(2) / half_life_h
        self._retention_h = retention_h
        self._prior = prior_strength
        self._z = lower_bound_z
        self._embodied = embodied_g_per_s
        self._judged: list[_Judged] = []
        self._fitted_upto = -math.inf
        self.fitted: Fitted | None = None
        self.fits = 0
        self._class_of_prompt = np.zeros(len(texts), dtype=int)
        self._classes: tuple[str, ...] = ()

    def judged(self, hour: int, prompts: np.ndarray, energy_j: np.ndarray, time_s: np.ndarray,
               best: np.ndarray) -> None:
        """An evaluator run during `hour` judged these prompts (verdicts from hour + 0.5)."""
        self._judged.append(_Judged(hour + 0.5, prompts, energy_j, time_s, best))

    def _refit(self, now: float) -> None:
        available = [j for j in self._judged if now - self._retention_h <= j.judged_at < now]
        newest = max((j.judged_at for j in available), default=-math.inf)
        if newest <= self._fitted_upto:
            return
        self._fitted_upto = newest
        examples = [Example(self._texts[p], int(b), j.judged_at)
                    for j in available for p, b in zip(j.prompts, j.best, strict=True)]
        self.fitted = fit(examples, self._levels, now, version=f"replay-{now:.0f}")
        self.fits += 1
        if self.fitted is not None:
            classifier: LearnedClassifier = self.fitted.classifier
            self._classes = classifier.classes
            index = {name: i for i, name in enumerate(self._classes)}
            self._class_of_prompt = np.array([index[classifier.classify(t)]
                                              for t in self._texts])

    def rows(self, now: float, ci: float, ci_min: float, ci_max: float, xi: float,
             prompt_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(class index per prompt id, x per class) for hour `now`; None: cold start (L0)."""
        self._refit(now)
        if self.fitted is None:
            return None
        levels = len(self._levels)
        classes = len(self._classes)
        index = {name: i for i, name in enumerate(self._classes)}
        counts = VerdictCounts(self._classes, levels)
        for held in self.fitted.heldout:
            counts.add(held.task_class, held.winner,
                       math.exp(-self._rate * (now - float(held.judged_at))))
        quality = counts.scores(self._prior, self._z)
        energy = np.zeros((classes, levels))
        seconds = np.zeros((classes, levels))
        weight = np.zeros(classes)
        for judged in self._judged:
            if not now - self._retention_h <= judged.judged_at < now:
                continue
            w = math.exp(-self._rate * (now - judged.judged_at))
            cls = self._class_of_prompt[judged.prompts]
            np.add.at(energy, cls, w * judged.energy_j)
            np.add.at(seconds, cls, w * judged.time_s)
            np.add.at(weight, cls, w)
        seen = weight > 0
        overall_e = energy.sum(axis=0) / weight.sum()
        overall_t = seconds.sum(axis=0) / weight.sum()
        energy = np.where(seen[:, None], energy / np.maximum(weight, 1e-12)[:, None], overall_e)
        seconds = np.where(seen[:, None], seconds / np.maximum(weight, 1e-12)[:, None],
                           overall_t)
        carbon = energy / 3.6e6 * ci + self._embodied * seconds
        shares = np.bincount(self._class_of_prompt, weights=prompt_counts,
                             minlength=classes) + 1e-3
        solution = solve([ClassTerms(name, float(shares[i]), tuple(carbon[i]), quality[name])
                          for name, i in index.items()], form="per_class", xi=xi, ci=ci,
                         ci_min=ci_min, ci_max=ci_max)
        return self._class_of_prompt, np.array([solution.rows[name] for name in self._classes])
