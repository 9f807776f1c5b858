"""Routing core: token curves, the cost model, SLO tiers, the threshold rule and forecasts."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from proxy.energy.curves import WILKINS_CURVES
from proxy.energy.estimate import PROFILES
from proxy.routing.cost import (
    SLO,
    Forecast,
    Observed,
    PoolFacts,
    rank_by_cost,
    rank_by_threshold,
)
from proxy.routing.predict import InputEstimator, LatencyTracker, OutputPredictor

WILKINS = Path(__file__).resolve().parents[3] / "shared" / "data" / "wilkins"
A100, M1 = PROFILES["a100"], PROFILES["m1-pro"]


def facts(name: str, profile=A100, **options) -> PoolFacts:
    return PoolFacts(name=name, profile=profile, ci_g_per_kwh=options.pop("ci", 300.0),
                     **options)


def test_curve_reproduces_the_measured_sweep_points() -> None:
    curve = WILKINS_CURVES["a100"]
    assert curve.predict(32, 256).energy_j == pytest.approx(2019.5)  # output sweep
    # Input sweep: within 1%, the two sweeps' disagreement where they cross at (32, 32).
    assert curve.predict(512, 32).energy_j == pytest.approx(611.2, rel=0.01)
    assert curve.predict(512, 32).runtime_s == pytest.approx(1.978, rel=0.01)
    between = curve.predict(32, 192).energy_j  # piecewise linear between 128 and 256
    assert between == pytest.approx((797.4 + 2019.5) / 2)
    # No KV-cache reuse: a long prompt costs more the more tokens are decoded.
    assert curve.predict(1024, 256).energy_j - curve.predict(32, 256).energy_j == pytest.approx(
        (1133.2 - 154.2) * 256 / 32)
    cost = curve.predict(100, 50)
    assert 0 < cost.ttft_s < cost.runtime_s and cost.decode_s > 0


@pytest.mark.skipif(not WILKINS.exists(), reason="../shared/data/wilkins not present")
def test_curves_are_the_per_host_means_of_the_shared_measurements() -> None:
    hosts = {"a100": ("Palmetto Intel+A100", "Swing AMD+A100"), "m1-pro": ("M1-Pro",)}
    rows = []
    for name in ("in.csv", "out.csv"):
        with (WILKINS / name).open(newline="") as handle:
            rows += [dict(r, sweep=name) for r in csv.DictReader(handle)
                     if r["Phase"] not in ("tokenizer", "model load", "load model")]
    for profile, systems in hosts.items():
        curve = WILKINS_CURVES[profile]
        for tokens, joules, _seconds in curve.output_sweep:
            means = []
            for system in systems:
                picked = [r for r in rows if r["sweep"] == "out.csv" and r["System"] == system
                          and int(r["Number of Output Tokens"]) == tokens]
                means.append(sum(float(r["CPU Energy (J)"] or 0) + float(r["GPU Energy (J)"] or 0)
                                 for r in picked) / len(picked))
            assert sum(means) / len(means) == pytest.approx(joules, abs=0.06), (profile, tokens)


def test_the_m1_wins_short_calls_and_loses_long_ones_as_wilkins_found() -> None:
    assert M1.predict(8, 8).energy_j < A100.predict(8, 8).energy_j
    assert M1.predict(16, 16).energy_j < A100.predict(16, 16).energy_j
    assert M1.predict(32, 256).energy_j > A100.predict(32, 256).energy_j
    assert M1.predict(8, 8).runtime_s > A100.predict(8, 8).runtime_s  # but it is slower


def test_lambda_trades_energy_against_runtime() -> None:
    pools = [facts("a100"), facts("m1", M1)]
    short = Forecast(10, 10)
    assert rank_by_cost(pools, short, lam=1.0)[0].pool == "m1"
    assert rank_by_cost(pools, short, lam=0.0)[0].pool == "a100"
    assert rank_by_cost(pools, Forecast(10, 400), lam=1.0)[0].pool == "a100"
    with pytest.raises(ValueError):
        rank_by_cost(pools, short, lam=1.5)


def test_carbon_objective_uses_each_pools_own_grid_and_embodied_share() -> None:
    clean, dirty = facts("clean", ci=50.0), facts("dirty", ci=500.0)
    assert rank_by_cost([dirty, clean], Forecast(50, 100), lam=1.0)[0].pool == "clean"
    # Same energy and grid: the device with the smaller embodied share per second wins.
    old = facts("old", embodied_g_per_s=0.001)
    new = facts("new", embodied_g_per_s=0.01)
    ranked = rank_by_cost([new, old], Forecast(50, 100), lam=1.0)
    assert ranked[0].pool == "old" and ranked[0].carbon_g < ranked[1].carbon_g
    # The energy objective ignores grids.
    ranked = rank_by_cost([dirty, clean], Forecast(50, 100), lam=1.0, objective="energy")
    assert ranked[0].energy_j == ranked[1].energy_j


def test_tiers_slo_then_capacity_then_breaker() -> None:
    forecast = Forecast(50, 100)
    cheap_but_slow = facts("slow", M1, slo=SLO(ttft_ms=500))  # M1 prefill takes seconds
    meets = facts("fast", slo=SLO(ttft_ms=500, per_token_ms=100))
    full = facts("full", free_slot=False, can_queue=False)
    queueing = facts("queue", free_slot=False)
    broken = facts("broken", usable=False)
    ranked = rank_by_cost([broken, full, queueing, cheap_but_slow, meets], forecast, lam=1.0)
    assert [s.pool for s in ranked] == ["fast", "slow", "queue", "full", "broken"]
    assert [s.tier for s in ranked] == [0, 1, 2, 3, 4]
    assert not ranked[1].meets_slo


def test_measured_latency_overrides_the_profile_for_the_slo() -> None:
    forecast = Forecast(50, 100)
    measured_slow = facts("a", slo=SLO(per_token_ms=100),
                          observed=Observed(ttft_s=0.05, per_token_s=0.5))
    ok = facts("b", slo=SLO(per_token_ms=100))
    ranked = rank_by_cost([measured_slow, ok], forecast, lam=1.0)
    assert [s.pool for s in ranked] == ["b", "a"]
    assert ranked[1].per_token_s == pytest.approx(0.5)


def test_threshold_rule_sends_short_requests_to_the_efficient_pool() -> None:
    pools = [facts("a100"), facts("m1", M1)]
    rule = {"efficient_pool": "m1", "max_input_tokens": 32, "max_output_tokens": 32, "lam": 0.0}
    assert rank_by_threshold(pools, Forecast(20, 30), **rule)[0].pool == "m1"
    assert [s.pool for s in rank_by_threshold(pools, Forecast(20, 33), **rule)] == ["a100", "m1"]
    busy = [facts("a100"), facts("m1", M1, free_slot=False)]
    assert rank_by_threshold(busy, Forecast(8, 8), **rule)[0].pool == "a100"


def test_output_predictor_learns_per_class_level_pool_with_fallbacks() -> None:
    predictor = OutputPredictor(alpha=0.5)
    assert predictor.predict("code", "L2", "a") == 100.0  # Sprout's alpaca prior for L2
    assert predictor.predict("code", None, "a") == 272.0  # no directive answers like L0
    predictor.observe("code", "L1", "a", 40)
    predictor.observe("code", "L1", "a", 60)
    assert predictor.predict("code", "L1", "a") == 50.0
    assert predictor.predict("code", "L1", "b") == 50.0  # same class and level, other pool
    assert predictor.predict("chat", "L1", "b") == 50.0  # same level
    assert predictor.predict("code", "L1", "a", max_tokens=16) == 16.0
    predictor.seed([("math", "L0", "a", 300.0, 10), ("math", "L0", "b", 100.0, 30)])
    assert predictor.predict("math", "L0", "b") == 100.0
    assert predictor.predict("math", "L0", "c") == pytest.approx(150.0)  # count-weighted


def test_input_estimator_and_latency_staleness() -> None:
    inputs = InputEstimator(alpha=1.0)
    assert inputs.predict(400) == 100.0
    inputs.observe(300, 100)
    assert inputs.predict(300) == pytest.approx(100.0)
    tracker = LatencyTracker(alpha=0.5, stale_s=10)
    assert tracker.observed("p", 0.0) is None
    tracker.observe("p", now_s=0.0, latency_s=1.1, ttft_s=0.1, completion_tokens=11)
    seen = tracker.observed("p", 5.0)
    assert seen is not None and seen.ttft_s == pytest.approx(0.1)
    assert seen.per_token_s == pytest.approx(0.1)
    tracker.observe("p", now_s=5.0, latency_s=2.0, ttft_s=None, completion_tokens=11)
    seen = tracker.observed("p", 6.0)
    assert seen is not None and seen.per_token_s == pytest.approx(0.1 + 0.5 * (2.0 / 11 - 0.1))
    assert tracker.observed("p", 30.0) is None  # stale: back to the profile
