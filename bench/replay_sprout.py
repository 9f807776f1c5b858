"""Replay the Sprout authors' measurements through the production optimiser: the yardstick.

    .venv/bin/python bench/replay_sprout.py [--data-dir ../shared/data/sprout] [--xi 0.1]

For each region (hourly CI export) and 30-day window it replays hourly traffic drawn from the
judged prompts of every dataset CSV, mixed by the job trace, and serves it under several
policies, all built from the production modules (`proxy.classify`, `proxy.optimiser.lp`,
`proxy.optimiser.quality`, `evaluator.schedule`):

- always-L0 (BASE) and CO2-opt (every request at the level with the least estimated carbon);
- Sprout: one global mix from the global LP, with quality known only from the latest
  evaluation (Sprout's design);
- per-class: our mix per task class with one global quality constraint, quality per class
  from decayed, shrunk verdict counts of all evaluations so far;
- learned: the per-class LP over classes learned from the evaluator's verdicts
  (`evaluator.predictor`, `proxy.classify.learned`), refitted after every evaluator run and
  used only from the hour after it (`bench/learned_policy.py`); L0 until the first fit;
- oracle: knows every request's verdict and energies (per-prompt greedy: an upper bound).

Everything is causal: CI min/max/mean come from a trailing window, and the evaluator fires by
Sprout's rule against the trailing mean. Only prompts sampled at evaluator times reveal
verdicts and energies at every level. `--statistics sprout` uses Sprout's look-ahead statistics
instead (year min/max, window mean), to show what causality costs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learned_policy import LearnedPolicy  # noqa: E402
from bench.sprout_data import Dataset, Region, load_datasets, load_job_trace, load_regions  # noqa: E402
from evaluator.schedule import should_evaluate  # noqa: E402
from proxy.classify.classifier import CLASSES  # noqa: E402
from proxy.optimiser.estimates import DecayedMeans  # noqa: E402
from proxy.optimiser.lp import ClassTerms, solve, tolerance_scale  # noqa: E402
from proxy.optimiser.quality import VerdictCounts  # noqa: E402

# Sprout's embodied term: a server's 26,356.568 gCO2e over a 5-year life, per second of use
# (../shared/data/sprout/README.md, "How the Sprout simulator uses these data", item 5).
EMBODIED_G_PER_S = 26356.568 / (5 * 365 * 24 * 3600)
STALENESS_RATE_PER_H = 0.029
POLICIES = ("base", "co2opt", "sprout", "per_class", "learned", "oracle")
LABELS = {"base": "always-L0", "co2opt": "CO2-opt", "sprout": "Sprout (global mix)",
          "per_class": "per-class mix (ours)", "learned": "learned classes (ours)",
          "oracle": "oracle (per-prompt)"}
REFERENCE_LABELS = {"base": "BASE", "co2opt": "SPROUT_CO2", "sprout": "SPROUT",
                    "oracle": "ORACLE"}


@dataclasses.dataclass
class Hour:
    """One hour's requests: energies/times per level, verdicts, classes, uniform draws."""

    energy_j: np.ndarray
    time_s: np.ndarray
    best: np.ndarray
    cls: np.ndarray
    uniform: np.ndarray
    prompt: np.ndarray  # index into the concatenated prompt texts of all datasets


def build_traffic(datasets: list[Dataset], trace: np.ndarray | None, hours: int,
                  per_hour: int, rng: np.random.Generator) -> list[Hour]:
    """Hourly traffic for one window; the same for every region (as in Sprout's runs)."""
    count = len(datasets)
    offsets = rng.integers(0, len(trace), count) if trace is not None else np.zeros(count, int)
    starts = np.cumsum([0] + [len(d.best_level) for d in datasets])
    step, next_update = 0, 0
    shares = np.full(count, 1 / count)
    traffic = []
    for t in range(hours):
        if trace is not None and t == next_update:
            jobs = trace[(offsets + step) % len(trace)]
            shares = jobs / jobs.sum() if jobs.sum() > 0 else np.full(count, 1 / count)
            step += 1
            next_update = t + max(1, round(rng.normal(24, 4.8)))
        per_dataset = rng.multinomial(per_hour, shares)
        parts = [(d, rng.integers(0, len(d.best_level), n), start)
                 for d, n, start in zip(datasets, per_dataset, starts, strict=False) if n]
        traffic.append(Hour(
            energy_j=np.concatenate([d.energy_j[i] for d, i, _ in parts]),
            time_s=np.concatenate([d.time_s[i] for d, i, _ in parts]),
            best=np.concatenate([d.best_level[i] for d, i, _ in parts]),
            cls=np.concatenate([d.class_index[i] for d, i, _ in parts]),
            uniform=rng.random(per_hour),
            prompt=np.concatenate([i + start for _, i, start in parts]),
        ))
    return traffic


def draw_levels(rows: np.ndarray, cls: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Vectorised `Allocation.draw`: bisect_right on each request's cumulative class row."""
    cumulative = np.cumsum(rows, axis=1)[cls]
    return np.minimum((uniform[:, None] >= cumulative).sum(axis=1), rows.shape[1] - 1)


def oracle_levels(carbon: np.ndarray, best: np.ndarray, floor_matches: float) -> np.ndarray:
    """Start at each request's best level; move the biggest savers to their cheapest level
    while the number served at their best level stays >= floor (each move costs one)."""
    rows = np.arange(len(best))
    cheapest = carbon.argmin(axis=1)
    saving = carbon[rows, best] - carbon[rows, cheapest]
    movable = np.flatnonzero((cheapest != best) & (saving > 0))
    allowed = max(0, int(np.floor(len(best) - floor_matches)))
    chosen = movable[np.argsort(-saving[movable], kind="stable")[:allowed]]
    levels = best.copy()
    levels[chosen] = cheapest[chosen]
    return levels


def simulate(region: Region, start: int, traffic: list[Hour], args: argparse.Namespace,
             levels: int, texts: list[str]) -> dict[str, dict[str, float]]:
    """One region and window: per policy, carbon per request and quality per hour."""
    learned = LearnedPolicy(texts, tuple(f"L{k}" for k in range(levels)),
                            half_life_h=math.log(2) / STALENESS_RATE_PER_H,
                            retention_h=args.retention_days * 24,
                            prior_strength=args.prior_strength,
                            lower_bound_z=args.lower_bound_z, embodied_g_per_s=EMBODIED_G_PER_S)
    prompt_counts = np.zeros(len(texts))
    ci = region.ci_g_per_kwh
    window = ci[start:start + len(traffic)]
    classes = len(CLASSES)
    verdicts = VerdictCounts(CLASSES, levels)
    energy = DecayedMeans(classes, levels)
    seconds = DecayedMeans(classes, levels)
    traffic_counts = np.zeros(classes)
    sprout_q: tuple[float, ...] = ()
    last_eval = 0
    evaluations = 0
    carbon_h = {p: [] for p in POLICIES}
    quality_h = {p: [] for p in POLICIES}
    level_mix = {p: np.zeros(levels) for p in POLICIES}
    base_row = np.zeros((classes, levels))
    base_row[:, 0] = 1.0
    for t, hour in enumerate(traffic):
        h = start + t
        ci_now = float(ci[h])
        if args.statistics == "sprout":  # look-ahead, as in the authors' simulator
            ci_min, ci_max, reference = float(ci.min()), float(ci.max()), float(window.mean())
        else:
            trailing = ci[max(0, h - args.trailing_hours):h]
            ci_min, ci_max, reference = (float(trailing.min()), float(trailing.max()),
                                         float(trailing.mean()))
        fire = t == 0 or should_evaluate(float(t - last_eval),
                                         (float(ci[h - 2]), float(ci[h - 1]), ci_now), reference)
        if fire:
            sample = slice(0, min(args.eval_sample, len(hour.best)))
            age = t - last_eval
            verdicts.decay(age, STALENESS_RATE_PER_H)
            energy.decay(age, STALENESS_RATE_PER_H)
            seconds.decay(age, STALENESS_RATE_PER_H)
            verdicts.add_many(hour.cls[sample], hour.best[sample])
            energy.add(hour.cls[sample], hour.energy_j[sample])
            seconds.add(hour.cls[sample], hour.time_s[sample])
            learned.judged(t, hour.prompt[sample], hour.energy_j[sample], hour.time_s[sample],
                           hour.best[sample])
            judged = np.bincount(hour.best[sample], minlength=levels)
            sprout_q = tuple(float(v) for v in judged / judged.sum())
            last_eval, evaluations = t, evaluations + 1
            if t == 0:
                traffic_counts += np.bincount(hour.cls[sample], minlength=classes)

        shares = traffic_counts + 1e-3  # unseen classes keep a tiny share (and a real row)
        carbon_est = energy.means() / 3.6e6 * ci_now + EMBODIED_G_PER_S * seconds.means()
        q_class = verdicts.scores(args.prior_strength, args.lower_bound_z)
        rows = {"base": base_row}
        co2 = np.zeros((classes, levels))
        co2[:, int(np.argmin((shares / shares.sum()) @ carbon_est))] = 1.0
        rows["co2opt"] = co2
        common = {"xi": args.xi, "ci": ci_now, "ci_min": ci_min, "ci_max": ci_max}
        sprout = solve([ClassTerms(name, float(shares[i]), tuple(carbon_est[i]), sprout_q)
                        for i, name in enumerate(CLASSES)], form="global", **common)
        rows["sprout"] = np.array([sprout.rows[name] for name in CLASSES])
        ours = solve([ClassTerms(name, float(shares[i]), tuple(carbon_est[i]), q_class[name])
                      for i, name in enumerate(CLASSES)], form="per_class", **common)
        rows["per_class"] = np.array([ours.rows[name] for name in CLASSES])
        # Verdicts judged during this hour are not known yet when it is served (causal).
        learned_rows = learned.rows(float(t), ci_now, ci_min, ci_max, args.xi, prompt_counts)

        carbon_all = hour.energy_j / 3.6e6 * ci_now + EMBODIED_G_PER_S * hour.time_s
        base_matches = float((hour.best == 0).sum())
        index = np.arange(len(hour.best))
        for policy in POLICIES:
            if policy == "oracle":
                scale = tolerance_scale(ci_now, ci_min, ci_max)
                served = oracle_levels(carbon_all, hour.best,
                                       (1 - args.xi * scale) * base_matches)
            elif policy == "learned":
                served = (np.zeros(len(hour.best), dtype=int) if learned_rows is None else
                          draw_levels(learned_rows[1], learned_rows[0][hour.prompt],
                                      hour.uniform))
            else:
                served = draw_levels(rows[policy], hour.cls, hour.uniform)
            carbon_h[policy].append(float(carbon_all[index, served].mean()))
            quality_h[policy].append(float((served == hour.best).sum()) / max(base_matches, 1))
            level_mix[policy] += np.bincount(served, minlength=levels) / len(served)
        traffic_counts = 0.9 * traffic_counts + np.bincount(hour.cls, minlength=classes)
        prompt_counts = 0.9 * prompt_counts + np.bincount(hour.prompt, minlength=len(texts))

    base_carbon = float(np.mean(carbon_h["base"]))
    results = {}
    for policy in POLICIES:
        mix = level_mix[policy] / len(traffic)
        results[policy] = {
            "saving_pct": (base_carbon - float(np.mean(carbon_h[policy]))) / base_carbon * 100,
            "preference_pct": float(np.mean(quality_h[policy])) * 100,
            "mean_carbon_per_req_g": float(np.mean(carbon_h[policy])),
            "evaluations": evaluations,
            "predictor_fits": learned.fits,
            "heldout_accuracy": (learned.fitted.heldout_accuracy if learned.fitted else None),
            **{f"mean_x_L{k}": float(mix[k]) for k in range(levels)},
        }
    return results


def load_reference(data_dir: Path) -> dict[tuple[str, int, str], tuple[float, float]]:
    """The authors' own results (if the folder has them), keyed by zone, window, label."""
    path = data_dir / "results_reference.csv"
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {(r["zone_id"], int(r["season_start_hour"]), r["policy_label"]):
                (float(r["carbon_saving_pct"]), float(r["preference_pct_of_base"]))
                for r in csv.DictReader(handle) if float(r["tolerance"]) == 0.1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/sprout")
    parser.add_argument("--datasets", nargs="*", help="dataset CSV stems (default: all found)")
    parser.add_argument("--regions", nargs="*", help="zone ids (default: every export found)")
    parser.add_argument("--windows", type=int, nargs="*", default=[800, 3900, 7000],
                        help="first hour-of-year of each 30-day window")
    parser.add_argument("--hours", type=int, default=720)
    parser.add_argument("--xi", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests-per-hour", type=int, default=1000)
    parser.add_argument("--eval-sample", type=int, default=1000,
                        help="prompts the evaluator re-asks and has judged at each run")
    parser.add_argument("--prior-strength", type=float, default=20.0)
    parser.add_argument("--lower-bound-z", type=float, default=0.2,
                        help="per-class quality: score non-baseline levels by q - z*SE")
    parser.add_argument("--trailing-hours", type=int, default=720)
    parser.add_argument("--retention-days", type=float, default=7.0,
                        help="captured prompts the predictor may train on (PROXY_PROMPT_"
                             "RETENTION_DAYS)")
    parser.add_argument("--statistics", choices=["causal", "sprout"], default="causal")
    parser.add_argument("--jobs", type=int, default=2, help="simulations run in parallel")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "replay")
    args = parser.parse_args()

    started = time.perf_counter()
    datasets = load_datasets(args.data_dir, args.datasets)
    regions = load_regions(args.data_dir, args.regions)
    trace = load_job_trace(args.data_dir)
    if not datasets or not regions:
        print(f"no dataset or region files in {args.data_dir}", file=sys.stderr)
        return 2
    levels = datasets[0].energy_j.shape[1]
    reference = load_reference(args.data_dir)
    print(f"datasets: {', '.join(d.name for d in datasets)}; regions: "
          f"{', '.join(r.name for r in regions)}; windows: {args.windows}; xi={args.xi}; "
          f"statistics={args.statistics}")
    records = []
    texts = [text for d in datasets for text in d.texts]
    # Every (window, region) is independent: one process each, `--jobs` at a time (the
    # learned policy refits the predictor at every evaluator run, ~1-4 s a fit).
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        futures = {}
        for window in args.windows:
            traffic = build_traffic(datasets, trace, args.hours, args.requests_per_hour,
                                    np.random.default_rng([args.seed, window]))
            for region in regions:
                futures[window, region.name] = pool.submit(simulate, region, window, traffic,
                                                           args, levels, texts)
        for (window, name), future in futures.items():
            results = future.result()
            print(f"  {name} {window}: learned {results['learned']['saving_pct']:.1f}% / "
                  f"{results['learned']['preference_pct']:.1f}% "
                  f"({results['learned']['predictor_fits']} fits)", flush=True)
            region = next(r for r in regions if r.name == name)
            for policy, values in results.items():
                ref = reference.get((region.name, window, REFERENCE_LABELS.get(policy, "")))
                records.append({"region": region.name, "window_start_hour": window,
                                "policy": policy, "label": LABELS[policy], **values,
                                "reference_saving_pct": ref[0] if ref else None,
                                "reference_preference_pct": ref[1] if ref else None})
    args.out.mkdir(parents=True, exist_ok=True)
    write_outputs(records, args)
    print(f"\nreplay took {time.perf_counter() - started:.1f} s; wrote {args.out}")
    return 0


def write_outputs(records: list[dict[str, object]], args: argparse.Namespace) -> None:
    """CSV, printed table and the saving-vs-preference plot."""
    suffix = "" if args.statistics == "causal" else "_sprout_statistics"
    with (args.out / f"replay{suffix}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    print(f"\n{'region':13s} {'window':>6s} {'policy':22s} {'saving %':>9s} {'pref %':>7s} "
          f"{'x L0/L1/L2':>16s} {'authors: saving/pref':>21s}")
    for r in records:
        mix = "/".join(f"{r[f'mean_x_L{k}']:.2f}" for k in range(3) if f"mean_x_L{k}" in r)
        ref = (f"{r['reference_saving_pct']:.1f} / {r['reference_preference_pct']:.1f}"
               if r["reference_saving_pct"] is not None else "")
        print(f"{r['region']:13s} {r['window_start_hour']:6d} {r['label']:22s} "
              f"{r['saving_pct']:9.1f} {r['preference_pct']:7.1f} {mix:>16s} {ref:>21s}")
    print("\nmean over regions and windows:")
    for policy in POLICIES:
        rows = [r for r in records if r["policy"] == policy]
        saving = np.mean([float(r["saving_pct"]) for r in rows])  # type: ignore[arg-type]
        pref = np.mean([float(r["preference_pct"]) for r in rows])  # type: ignore[arg-type]
        refs = [float(r["reference_saving_pct"]) for r in rows  # type: ignore[arg-type]
                if r["reference_saving_pct"] is not None]
        note = f"   (authors, 6 datasets: {np.mean(refs):.1f}%)" if refs else ""
        print(f"  {LABELS[policy]:22s} saving {saving:5.1f}%  preference {pref:5.1f}%{note}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5))
    for policy in POLICIES:
        rows = [r for r in records if r["policy"] == policy]
        axis.scatter([r["preference_pct"] for r in rows], [r["saving_pct"] for r in rows],
                     label=LABELS[policy], alpha=0.8)
    refs = [r for r in records if r["policy"] == "sprout" and r["reference_saving_pct"]]
    if refs:
        axis.scatter([r["reference_preference_pct"] for r in refs],
                     [r["reference_saving_pct"] for r in refs], marker="x", color="black",
                     label="Sprout, authors' runs (6 datasets)")
    axis.set_xlabel("preference, % of always-L0")
    axis.set_ylabel("carbon saving vs always-L0, %")
    axis.set_title(f"Sprout replay ({args.statistics} statistics, xi={args.xi})")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out / f"replay{suffix}.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
