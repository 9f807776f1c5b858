"""Replay an Alpaca workload over an M1 Pro pool + an A100 pool: placement and directives.

    .venv/bin/python bench/replay_wilkins.py [--data-dir ../shared/data] [--out bench/out]

Workload: the 2000 judged Alpaca prompts of ../shared/data/sprout/alpaca.csv (Stanford Alpaca
instructions; Llama-2-13B-chat answers at Sprout's levels L0/L1/L2, answer characters / 4 as
output tokens, instruction characters / 4 as input tokens, and the judge's best level).
Even rows are history (what the predictors and the LP learn from), odd rows are replayed.
Cost of a request on a pool: Wilkins et al. 2024's measured token curves (proxy/energy/curves.py,
from ../shared/data/wilkins: 7B models, CPU + GPU joules per call, no KV-cache reuse).

Policies, all through the project's own code (proxy/routing, proxy/optimiser):
- workload-unaware: everything on the A100; random (half each);
- Wilkins' threshold rule (<= 32 input and <= 32 output tokens -> M1 Pro), with forecast output
  lengths (the router's per class x level x pool EWMA, learnt online) and with the true lengths;
- our cost router, U = lambda E + (1 - lambda) R, for several lambda (forecast lengths);
- directives: Sprout's per-class LP on the A100 alone; that LP's levels followed by the cost
  router; and the joint LP x[class, level, pool] with pool capacity rows.
Quality is the share of requests served at their judged best level (Sprout's preference);
energy and runtime are per-request means. The replay has no queueing: like the paper, it adds
up per-call costs; utilisation is the busy-seconds per second each pool would need at
--rate requests per second (the joint LP keeps it under its capacity; others may not).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.classify.classifier import classify  # noqa: E402
from proxy.energy.estimate import PROFILES  # noqa: E402
from proxy.optimiser.joint import JointTerms, PoolCapacity, solve_joint  # noqa: E402
from proxy.optimiser.lp import ClassTerms, solve  # noqa: E402
from proxy.optimiser.quality import VerdictCounts  # noqa: E402
from proxy.routing.cost import Forecast, PoolFacts, rank_by_cost, rank_by_threshold  # noqa: E402
from proxy.routing.predict import OutputPredictor  # noqa: E402

LEVELS = ("L0", "L1", "L2")
POOLS = ("m1-pro", "a100")


@dataclasses.dataclass(frozen=True)
class Prompt:
    task_class: str
    input_tokens: float
    output_tokens: tuple[float, ...]  # per level
    best_level: int


@dataclasses.dataclass
class Outcome:
    name: str
    energy_j: float
    runtime_s: float
    quality: float
    busy_s: dict[str, float]


def load(path: Path) -> list[Prompt]:
    prompts = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["judged_best_level"] == "" or not row["answer_chars_L0"]:
                continue
            prompts.append(Prompt(
                classify(row["instruction"]), len(row["instruction"]) / 4,
                tuple(float(row[f"answer_chars_{level}"]) / 4 for level in LEVELS),
                int(row["judged_best_level"])))
    return prompts


def cost(pool: str, prompt: Prompt, level: int) -> tuple[float, float]:
    call = PROFILES[pool].predict(prompt.input_tokens, prompt.output_tokens[level])
    return call.energy_j, call.runtime_s


FACTS = [PoolFacts(name=pool, profile=PROFILES[pool], ci_g_per_kwh=1.0) for pool in POOLS]


class Replay:
    """Accumulates one policy's expected energy, runtime, quality and pool busy time."""

    def __init__(self, name: str) -> None:
        self.outcome = Outcome(name, 0.0, 0.0, 0.0, dict.fromkeys(POOLS, 0.0))
        self.count = 0

    def serve(self, prompt: Prompt, level: int, pool: str, weight: float = 1.0) -> None:
        energy, runtime = cost(pool, prompt, level)
        self.outcome.energy_j += weight * energy
        self.outcome.runtime_s += weight * runtime
        self.outcome.busy_s[pool] += weight * runtime
        self.outcome.quality += weight * (prompt.best_level == level)

    def done(self, requests: int) -> Outcome:
        o = self.outcome
        return Outcome(o.name, o.energy_j / requests, o.runtime_s / requests,
                       o.quality / requests, {p: s / requests for p, s in o.busy_s.items()})


def trained_predictor(history: list[Prompt]) -> OutputPredictor:
    predictor = OutputPredictor(alpha=0.1)
    for prompt in history:
        for level, name in enumerate(LEVELS):
            for pool in POOLS:
                predictor.observe(prompt.task_class, name, pool, int(prompt.output_tokens[level]))
    return predictor


def route(kind: str, prompt: Prompt, level: int, predictor: OutputPredictor | None,
          lam: float) -> str:
    """The pool our routing code picks (forecast lengths, or the true ones without predictor)."""
    if predictor is None:
        forecast = Forecast(prompt.input_tokens, prompt.output_tokens[level])
    else:
        forecast = Forecast(
            prompt.input_tokens,
            predictor.predict(prompt.task_class, LEVELS[level], "a100"),
            predictor.spread(prompt.task_class, LEVELS[level], "a100"))
    if kind == "threshold":
        ranked = rank_by_threshold(FACTS, forecast, efficient_pool="m1-pro", max_input_tokens=32,
                                   max_output_tokens=32, lam=0.0, objective="energy")
    else:
        ranked = rank_by_cost(FACTS, forecast, lam=lam, objective="energy")
    return ranked[0].pool


def placement_only(history: list[Prompt], replay: list[Prompt], lambdas: list[float],
                   level: int = 0) -> list[Outcome]:
    """Every request at one level (the workload's answer lengths); only the pool varies."""
    outcomes = []
    fixed = Replay("all on A100 (workload-unaware)")
    coin = Replay("random (workload-unaware)")
    for prompt in replay:
        fixed.serve(prompt, level, "a100")
        coin.serve(prompt, level, "a100", 0.5)
        coin.serve(prompt, level, "m1-pro", 0.5)
    outcomes += [fixed.done(len(replay)), coin.done(len(replay))]
    cases = [("threshold", 0.0, True, "threshold rule (forecast lengths)"),
             ("threshold", 0.0, False, "threshold rule (true lengths)")]
    cases += [("cost", lam, True, f"cost router lambda={lam:g}") for lam in lambdas]
    cases += [("cost", 1.0, False, "cost router lambda=1 (true lengths)")]
    for kind, lam, forecast, name in cases:
        predictor = trained_predictor(history) if forecast else None
        run = Replay(name)
        for prompt in replay:
            pool = route(kind, prompt, level, predictor, lam)
            run.serve(prompt, level, pool)
            if predictor is not None:  # learn online, as the live router does
                predictor.observe(prompt.task_class, LEVELS[level], pool,
                                  int(prompt.output_tokens[level]))
        outcomes.append(run.done(len(replay)))
    return outcomes


def class_means(history: list[Prompt]) -> dict[str, dict[str, np.ndarray]]:
    """Per class: share, quality per level, mean energy and runtime per (level, pool)."""
    grouped: dict[str, list[Prompt]] = {}
    for prompt in history:
        grouped.setdefault(prompt.task_class, []).append(prompt)
    means = {}
    for name, members in grouped.items():
        energy = np.zeros((len(LEVELS), len(POOLS)))
        busy = np.zeros_like(energy)
        for prompt in members:
            for level in range(len(LEVELS)):
                for p, pool in enumerate(POOLS):
                    e, r = cost(pool, prompt, level)
                    energy[level, p] += e / len(members)
                    busy[level, p] += r / len(members)
        means[name] = {"share": np.array(len(members) / len(history)),
                       "energy": energy, "busy": busy}
    # Quality as the live optimiser scores it: verdict shares shrunk towards the all-class mix
    # (20 pseudo-verdicts) and lower-bounded (z = 0.2), proxy/optimiser/quality.py.
    counts = VerdictCounts(tuple(grouped), len(LEVELS))
    for prompt in history:
        counts.add(prompt.task_class, prompt.best_level)
    for name, quality in counts.scores(prior_strength=20.0, lower_bound_z=0.2).items():
        means[name]["quality"] = np.array(quality)
    return means


def with_directives(history: list[Prompt], replay: list[Prompt], *, xi: float, rate: float,
                    slots: dict[str, float]) -> tuple[list[Outcome], str]:
    means = class_means(history)
    dirty = {"xi": xi, "ci": 1.0, "ci_min": 0.0, "ci_max": 1.0}  # the dirtiest hour: s = 1
    a100 = POOLS.index("a100")
    sprout = solve([ClassTerms(name, float(m["share"]), tuple(m["energy"][:, a100]),
                               tuple(m["quality"])) for name, m in means.items()],
                   form="per_class", **dirty)
    joint = solve_joint(
        [JointTerms(name, float(m["share"]), tuple(m["quality"]),
                    tuple(map(tuple, m["energy"])), tuple(map(tuple, m["busy"])))
         for name, m in means.items()],
        [PoolCapacity(pool, slots[pool]) for pool in POOLS], rate_per_s=rate, **dirty)
    predictor = trained_predictor(history)
    plain = Replay("no directive, all on A100")
    on_a100 = Replay("Sprout per-class LP, all on A100")
    then_route = Replay("Sprout LP, then cost router lambda=1")
    then_true = Replay("Sprout LP, then cost router (true lengths)")
    joint_run = Replay("joint LP x[class, level, pool]")
    baseline = [1.0, 0.0, 0.0]
    for prompt in replay:
        plain.serve(prompt, 0, "a100")
        levels = sprout.rows.get(prompt.task_class, baseline)
        placement = joint.placement.get(prompt.task_class)
        for level, weight in enumerate(levels):
            if weight > 0:
                on_a100.serve(prompt, level, "a100", weight)
                then_route.serve(prompt, level, route("cost", prompt, level, predictor, 1.0),
                                 weight)
                then_true.serve(prompt, level, route("cost", prompt, level, None, 1.0), weight)
        for level in range(len(LEVELS)):
            for p, pool in enumerate(POOLS):
                weight = placement[level][p] if placement else (level == 0 and pool == "a100")
                if weight > 0:
                    joint_run.serve(prompt, level, pool, float(weight))
    note = (f"joint LP: {joint.status}, {joint.solve_ms:.1f} ms; planned utilisation "
            + ", ".join(f"{p} {u:.0%}" for p, u in joint.utilisation.items()))
    runs = (plain, on_a100, then_route, then_true, joint_run)
    return [r.done(len(replay)) for r in runs], note


def table(outcomes: list[Outcome], rate: float, slots: dict[str, float]) -> None:
    base = outcomes[0]
    print(f"{'policy':44s} {'J/req':>7s} {'energy':>7s} {'s/req':>7s} {'pref':>6s} "
          + " ".join(f"{'util ' + p:>11s}" for p in POOLS))
    for o in outcomes:
        print(f"{o.name:44s} {o.energy_j:7.0f} {o.energy_j / base.energy_j - 1:+7.1%} "
              f"{o.runtime_s:7.2f} {o.quality:6.1%} "
              + " ".join(f"{rate * o.busy_s[p] / slots[p]:11.0%}" for p in POOLS))


def cap_sweep(replay: list[Prompt], caps: list[int]) -> str:
    """The threshold rule (true lengths) with every answer cut at max_tokens = cap."""
    parts = []
    for cap in caps:
        capped = [dataclasses.replace(p, output_tokens=tuple(min(o, cap) for o in p.output_tokens))
                  for p in replay]
        fixed, rule = Replay("a100"), Replay("rule")
        for prompt in capped:
            fixed.serve(prompt, 0, "a100")
            rule.serve(prompt, 0, route("threshold", prompt, 0, None, 0.0))
        parts.append(f"{cap}: {rule.outcome.energy_j / fixed.outcome.energy_j - 1:+.1%}")
    return ", ".join(parts)


def plot(sections: list[tuple[str, list[Outcome]]], path: Path) -> None:
    """One horizontal bar panel per section: energy per request vs that section's first row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(sections), 1, figsize=(9, 2.2 + 3.2 * len(sections)))
    for axis, (title, outcomes) in zip(np.atleast_1d(axes), sections, strict=True):
        base = outcomes[0].energy_j
        shown = [o for o in outcomes[1:] if "random" not in o.name]
        values = [100 * (o.energy_j / base - 1) for o in shown]
        axis.barh([f"{o.name} ({o.runtime_s:.1f} s/req)" for o in shown], values,
                  color=["tab:green" if v < 0 else "tab:red" for v in values])
        axis.axvline(0, color="black", linewidth=0.8)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(f"energy per request vs {outcomes[0].name} (%)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1.0, 0.99, 0.95, 0.9, 0.5])
    parser.add_argument("--xi", type=float, default=0.1, help="Sprout's quality tolerance")
    parser.add_argument("--rate", type=float, default=0.5, help="requests per second")
    parser.add_argument("--m1-slots", type=float, default=8.0)
    parser.add_argument("--a100-slots", type=float, default=8.0)
    args = parser.parse_args()
    prompts = load(args.data_dir / "sprout" / "alpaca.csv")
    random.Random(0).shuffle(prompts)
    history, replay = prompts[0::2], prompts[1::2]
    slots = {"m1-pro": args.m1_slots, "a100": args.a100_slots}
    short = np.mean([p.output_tokens[0] <= 32 and p.input_tokens <= 32 for p in replay])
    print(f"{len(replay)} Alpaca requests replayed ({len(history)} more as history); "
          f"{short:.1%} are <= 32 in and out tokens at L0\n")
    sections = []
    for level, name in enumerate(LEVELS):
        print(f"Placement only, every answer at {name} length (energy vs all on A100):")
        outcomes = placement_only(history, replay, args.lambdas, level)
        table(outcomes, args.rate, slots)
        print()
        sections.append((f"Placement only, answers at {name} length", outcomes))
    print("Threshold rule (true lengths) with answers capped at max_tokens: "
          + cap_sweep(replay, [32, 64, 128, 256]) + "\n")
    directed: list[Outcome] = []
    for scale in (1, 2):  # the A100 pool as given (capacity may bind), then twice as large
        sized = {**slots, "a100": slots["a100"] * scale}
        print(f"Directives and placement (xi={args.xi:g} at the dirtiest hour, "
              f"{args.rate:g} req/s, slots {sized}):")
        outcomes, note = with_directives(history, replay, xi=args.xi, rate=args.rate,
                                         slots=sized)
        table(outcomes, args.rate, sized)
        print(f"{note}\n")
        if not directed:
            directed = outcomes
            sections.append((f"Directives + placement, {sized['a100']:g} A100 slots", outcomes))
    path = args.out / "replay_wilkins.png"
    plot(sections, path)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
