"""Optimiser speed: LP solve time, and the per-request directive decision.

    .venv/bin/python bench/optimiser_speed.py

- LP: 8 classes x (3 levels x 6 pools) options per class, per-class form with one global quality
  constraint (quality depends on the level only; pool capacity constraints come with routing).
  Goal <= 10 ms.
- Decision: what the request path adds per chat request: policy, task class, one draw from the
  published Allocation, directive injection. Goal <= 20 us.
- Learned classes: a predictor fitted by `evaluator.predictor` on 5,000 verdicts drawn from
  Sprout's judged prompts (../shared/data/sprout; a synthetic set without it), then the
  per-request classification over 2,000 of those prompts (their real lengths, up to ~500
  words) and the whole decision with it. Goal <= 20 us per classification.
- Joint LP: the same 8 x 3 x 6 as x[class, level, pool] with 6 pool capacity rows.
- Routing: Router.order over 6 pools (cost policy; forecasts with 8 output quantiles each).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.auth.keys import KeyRing  # noqa: E402
from proxy.classify.classifier import CLASSES, classify  # noqa: E402
from proxy.directives.catalogue import DEFAULT_LEVELS, Catalogue  # noqa: E402
from proxy.directives.store import CatalogueStore  # noqa: E402
from proxy.limits.usage import KeyUsage  # noqa: E402
from proxy.optimiser.allocation import Allocation, AllocationHolder  # noqa: E402
from proxy.optimiser.lp import ClassTerms, solve  # noqa: E402
from proxy.protocol.chat import ChatCompletionRequest  # noqa: E402
from proxy.serving.directing import Director  # noqa: E402

PROMPTS = [
    "Which gas is inert?\n(A): neon\n(B): oxygen\n(C): hydrogen\n(D): nitrogen",
    "Tom has 3 apples and buys 5 more. How many apples does he have now?",
    "who wrote the iliad",
    "Write a short story about a lighthouse keeper who befriends a seagull.",
    "Name three primary colours.",
]


def lp_times(repeats: int, rng: random.Random) -> list[float]:
    levels, pools = 3, 6
    times = []
    for _ in range(repeats):
        terms = []
        for c in range(8):
            quality = [rng.random() for _ in range(levels)]
            total = sum(quality)
            carbon, q = [], []
            for level in range(levels):
                for _pool in range(pools):
                    carbon.append(rng.uniform(0.01, 1.0) / (level + 1))
                    q.append(quality[level] / total)
            terms.append(ClassTerms(f"c{c}", rng.random() + 0.1, tuple(carbon), tuple(q)))
        started = time.perf_counter()
        solve(terms, xi=0.1, ci=rng.uniform(100, 400), ci_min=50, ci_max=450)
        times.append((time.perf_counter() - started) * 1000)
    return times


def decision_times(repeats: int) -> dict[str, float]:
    catalogue = Catalogue(DEFAULT_LEVELS)
    rows = {name: (0.2, 0.5, 0.3) for name in CLASSES}
    holder = AllocationHolder(Allocation(catalogue.ids, rows, (1.0, 0.0, 0.0), "bench"))
    keys = KeyRing(None)
    director = Director(CatalogueStore(catalogue), holder, keys, "auto", random.Random(0),
                        KeyUsage(keys, [], flush_s=60.0))
    requests = [ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "system", "content": "Be kind."},
                                    {"role": "user", "content": p}]}) for p in PROMPTS]
    results = {}
    for name, call in [
        ("classify", lambda r: classify(r.task_text())),
        ("allocation draw", lambda r: holder.current.draw("open/s", 0.42)),
        ("whole decision (policy+classify+draw+inject)", lambda r: director.apply(r, None, None)),
    ]:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeats):
                for request in requests:
                    call(request)
            samples.append((time.perf_counter() - started) / (repeats * len(requests)) * 1e6)
        results[name] = statistics.median(samples)
    return results


def learned_times(data_dir: Path) -> dict[str, float]:
    """Fit a predictor as the evaluator does; time its classification on real prompts."""
    from bench.sprout_data import load_datasets
    from evaluator.predictor import FOLDS, Example, fit
    from proxy.classify.learned import ClassifierHolder

    rng = random.Random(0)
    datasets = load_datasets(data_dir, None) if data_dir.is_dir() else []
    judged = [(t, int(b)) for d in datasets for t, b in zip(d.texts, d.best_level, strict=True)]
    if not judged:  # no reference data: prompts whose wording decides the winner
        judged = [(f"{p} (variant {i})", i % 3) for i in range(600) for p in PROMPTS[:1]]
        judged += [(f"{p} #{i}", i % 3) for i in range(400) for p in PROMPTS]
    drawn = [judged[rng.randrange(len(judged))] for _ in range(5000)]
    started = time.perf_counter()
    fitted = fit([Example(text, best, float(i)) for i, (text, best) in enumerate(drawn)],
                 Catalogue(DEFAULT_LEVELS).ids, 1e9, version="bench")
    fit_s = time.perf_counter() - started
    assert fitted is not None
    classifier = fitted.classifier
    prompts = [judged[rng.randrange(len(judged))][0] for _ in range(2000)]
    catalogue = Catalogue(DEFAULT_LEVELS)
    rows = {name: (0.2, 0.5, 0.3) for name in classifier.classes}
    holder = AllocationHolder(Allocation(catalogue.ids, rows, (1.0, 0.0, 0.0), "bench"))
    keys = KeyRing(None)
    director = Director(CatalogueStore(catalogue), holder, keys, "auto", random.Random(0),
                        KeyUsage(keys, [], flush_s=60.0), ClassifierHolder(classifier))
    requests = [ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": p}]}) for p in prompts]
    results = {f"fit ({FOLDS} folds + full), s": fit_s,
               "mean prompt words": statistics.mean(len(p.split()) for p in prompts)}
    for name, call in [("learned classify", lambda r: classifier.classify(r.task_text())),
                       ("regex classify (same prompts)", lambda r: classify(r.task_text())),
                       ("whole decision, learned classes", lambda r: director.apply(
                           r, None, None))]:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            for request in requests:
                call(request)
            samples.append((time.perf_counter() - started) / len(requests) * 1e6)
        results[name + ", us"] = statistics.median(samples)
    return results


def joint_times(runs: int, rng: random.Random) -> list[float]:
    from proxy.optimiser.joint import JointTerms, PoolCapacity, solve_joint

    times = []
    for _ in range(runs):
        terms = [JointTerms(f"c{c}", rng.random() + 0.1, (0.5, 0.3, 0.2),
                            tuple(tuple(rng.random() for _ in range(6)) for _ in range(3)),
                            tuple(tuple(rng.random() * 10 for _ in range(6)) for _ in range(3)))
                 for c in range(8)]
        pools = [PoolCapacity(f"p{p}", 4.0) for p in range(6)]
        solution = solve_joint(terms, pools, rate_per_s=0.5, xi=0.1, ci=300, ci_min=100,
                               ci_max=400)
        times.append(solution.solve_ms)
    return times


def routing_micros(requests: int) -> float:
    from proxy.backends.factory import build_backends
    from proxy.energy.estimate import PROFILES
    from proxy.pools.config import PoolConfig
    from proxy.pools.registry import Pool, Route
    from proxy.routing.router import PoolStatic, RouteAsk, Router, RoutingConfig

    names = ["a100", "v100", "m1-pro", "h100", "t4", "cpu"]
    routes = []
    for name in names:
        config = PoolConfig(name=name, base_urls=["http://127.0.0.1:1/v1"])
        # Never called: routing only reads the pools' state.
        routes.append(Route(Pool(config, build_backends(config)), "m"))
    router = Router(RoutingConfig(), {n: PoolStatic(PROFILES[n]) for n in names},
                    lambda region: 300.0)
    for tokens in range(1, 200, 7):
        router.predictor.observe("qa", "L0", "a100", tokens)
    ask = RouteAsk("chat", "qa", "L0", prompt_chars=200)
    started = time.perf_counter()
    for _ in range(requests):
        router.order(routes, ask)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> int:
    times = lp_times(300, random.Random(0))
    print(f"LP 8 classes x 3 levels x 6 pools (144 variables): median "
          f"{statistics.median(times):.2f} ms, p99 {sorted(times)[int(0.99 * len(times))]:.2f}"
          f" ms (goal <= 10 ms)")
    for name, micros in decision_times(2000).items():
        print(f"{name:46s} {micros:6.2f} us per request")
    print("(goal for the whole decision: <= 20 us)")
    for name, value in learned_times(ROOT.parent / "shared/data/sprout").items():
        print(f"{name:46s} {value:8.2f}")
    print("(goal for the learned classification: <= 20 us)")
    joint = joint_times(100, random.Random(1))
    print(f"joint LP x[class, level, pool] 8 x 3 x 6 + 6 capacity rows: median "
          f"{statistics.median(joint):.2f} ms")
    print(f"Router.order over 6 pools (cost, 8 quantiles): {routing_micros(2000):.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
