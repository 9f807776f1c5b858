"""Prometheus metrics: counters fed where finished rows pass, gauges read at scrape time.

Nothing here runs on the request path: `Metrics.observe` is the ledger writer's observer (for
pooled requests it runs in the energy accountant's tick), and the gauges are collected from the
live state when `/metrics` is scraped.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy.accounting.record import LedgerRow
from proxy.errors import AuthenticationFailed

if TYPE_CHECKING:
    from proxy.state import AppState

router = APIRouter(tags=["metrics"])

_LIMIT_CODES = frozenset({"rate_limit_exceeded", "carbon_budget_exceeded"})
_MS_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000, 60000)


class Metrics:
    """One registry per app (no module globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("endpoint", "status", "pool", "level")
        self.requests = Counter("sprout_requests", "Inference requests by outcome", labels,
                                registry=self.registry)
        self.tokens = Counter("sprout_tokens", "Tokens by direction", ("pool", "direction"),
                              registry=self.registry)
        self.energy = Counter("sprout_energy_joules", "Attributed joules", ("pool", "level",
                                                                           "method"),
                              registry=self.registry)
        self.carbon = Counter("sprout_carbon_grams", "gCO2e by kind", ("pool", "level", "kind"),
                              registry=self.registry)
        self.overhead = Histogram("sprout_proxy_overhead_ms", "Time the proxy itself added",
                                  ("endpoint",), buckets=_MS_BUCKETS, registry=self.registry)
        self.ttft = Histogram("sprout_ttft_ms", "Time to first token (streams)", ("pool",),
                              buckets=_MS_BUCKETS, registry=self.registry)
        self.key_refusals = Counter(
            "sprout_key_refusals", "Requests refused by a key's limit or carbon budget",
            ("key_id", "reason"), registry=self.registry)
        self.latency = Histogram("sprout_latency_ms", "Total latency", ("endpoint",),
                                 buckets=_MS_BUCKETS, registry=self.registry)
        # Each row's labelled children, by label values: prometheus_client's `labels()` checks
        # and locks on every call, a dict lookup does not (the label sets are few).
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe(self, row: LedgerRow) -> None:
        """Count one finished row (called by the ledger writer's submit)."""
        pool = row.pool or ""
        level = row.directive_level or ""
        child = self._child
        child(self.requests, row.endpoint, row.status, pool, level).inc()
        if row.prompt_tokens:
            child(self.tokens, pool, "prompt").inc(row.prompt_tokens)
        if row.completion_tokens:
            child(self.tokens, pool, "completion").inc(row.completion_tokens)
        if row.energy_j is not None:
            child(self.energy, pool, level, row.energy_method or "").inc(row.energy_j)
        if row.operational_g_co2e is not None:
            child(self.carbon, pool, level, "operational").inc(row.operational_g_co2e)
        if row.embodied_g_co2e is not None:
            child(self.carbon, pool, level, "embodied").inc(row.embodied_g_co2e)
        if row.overhead_ms is not None:
            child(self.overhead, row.endpoint).observe(row.overhead_ms)
        if row.ttft_ms is not None:
            child(self.ttft, pool).observe(row.ttft_ms)
        child(self.latency, row.endpoint).observe(row.latency_ms)
        if row.error_type in _LIMIT_CODES and row.api_key_id is not None:
            # Keyed by API key: not cached, so a stream of keys cannot grow the dict.
            self.key_refusals.labels(row.api_key_id, row.error_type).inc()

    def watch(self, state: AppState) -> None:
        """Register the scrape-time gauges over the live state."""
        self.registry.register(_LiveState(state))


class _LiveState(Collector):
    def __init__(self, state: AppState) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._state
        in_flight = GaugeMetricFamily("sprout_pool_in_flight", "Requests running", labels=["pool"])
        waiting = GaugeMetricFamily("sprout_pool_waiting", "Requests queued", labels=["pool"])
        intensity = GaugeMetricFamily("sprout_grid_ci_g_per_kwh", "Grid intensity now",
                                      labels=["pool", "source"])
        for pool in state.registry.pools:
            in_flight.add_metric([pool.name], pool.admission.in_flight)
            waiting.add_metric([pool.name], pool.admission.waiting)
            reading = state.carbon.latest(pool.config.accounting.region)
            intensity.add_metric([pool.name, reading.source], reading.g_per_kwh)
        breakers = GaugeMetricFamily(
            "sprout_backend_circuit_open", "1 while a backend's circuit breaker is open",
            labels=["pool", "backend"])
        for pool in state.registry.pools:
            for backend, breaker in zip(pool.backends, pool.breakers, strict=True):
                breakers.add_metric([pool.name, backend.url], int(breaker.state == "open"))
        yield from (in_flight, waiting, intensity, breakers)
        budgets = GaugeMetricFamily(
            "sprout_key_carbon_budget_used_ratio",
            "Share of its carbon budget each key has spent this period", labels=["key_id"])
        for key_id, fraction in state.usage.budget_fractions().items():
            budgets.add_metric([key_id], fraction)
        yield budgets
        ledger = state.ledger
        for name, value, text in [
            ("sprout_ledger_queue_depth", ledger.queue_depth, "Rows waiting in memory"),
            ("sprout_ledger_dropped_rows", ledger.stats.dropped_rows, "Rows lost (must be 0)"),
            ("sprout_ledger_spilled_rows", ledger.stats.spilled_rows, "Rows spilled to file"),
            ("sprout_ledger_quarantined_rows", ledger.stats.quarantined_rows,
             "Rows the database refused, kept in the quarantine file"),
            ("sprout_ledger_journal_replayed_rows", ledger.stats.journal_replayed_rows,
             "Rows written from dead processes' journals"),
            ("sprout_ledger_database_up", int(ledger.stats.database_up), "Database reachable"),
            ("sprout_ledger_database_timeouts", ledger.stats.database_timeouts,
             "Ledger writes cut off by the statement timeout (a hung database)"),
        ]:
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge
        solve = GaugeMetricFamily("sprout_optimiser_last_solve_ms", "Last LP solve time")
        solve.add_metric([], state.reoptimiser.last_solve_ms)
        yield solve
        cold = GaugeMetricFamily("sprout_optimiser_cold_start",
                                 "1 while the published allocation is the cold-start policy")
        cold.add_metric([], int(state.allocation.current.cold_start))
        yield cold
        enabled = GaugeMetricFamily("sprout_evaluator_enabled",
                                    "1 when the proxy schedules the evaluator (a judge is set)")
        enabled.add_metric([], int(bool(state.settings.evaluator_judge_model)))
        yield enabled
        finished = state.reoptimiser.last_evaluation_at
        last = GaugeMetricFamily("sprout_evaluator_last_finished_timestamp_seconds",
                                 "When the last evaluator run finished (0: never)")
        last.add_metric([], finished.timestamp() if finished else 0.0)
        yield last


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    """The text exposition format; with `PROXY_METRICS_TOKEN` set, only for that bearer."""
    state = request.state.sprout
    token = state.settings.metrics_token
    if token is not None:
        scheme, _, presented = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                presented.strip().encode(), token.get_secret_value().encode()):
            raise AuthenticationFailed(
                "/metrics needs the scrape token: 'Authorization: Bearer PROXY_METRICS_TOKEN'.",
                code="invalid_scrape_token")
    return Response(generate_latest(state.metrics.registry),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
