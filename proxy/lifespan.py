"""The lifespan: build every long-lived object once, hand them over as typed state, close them."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import random
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from proxy.accounting.db import make_engine
from proxy.accounting.journal import Journal
from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.provisional import PoolAccounts, ProvisionalAccounts
from proxy.accounting.repository import output_lengths
from proxy.accounting.responses_store import ResponseStore
from proxy.accounting.settlement import SettlementConfig, SettlementJob
from proxy.accounting.spill import SpillFile
from proxy.api.metrics import Metrics
from proxy.auth.keys import KeyRing, load_virtual_keys, resolve_master_key
from proxy.backends.factory import build_pools
from proxy.carbon.base import CarbonIntensityProvider
from proxy.carbon.cache import CachedProvider, FallbackChain
from proxy.carbon.electricitymaps import ElectricityMapsProvider
from proxy.carbon.history import CIHistory, CIRecorder
from proxy.carbon.service import CarbonService
from proxy.carbon.static import REGION_ANNUAL_G_PER_KWH, StaticProvider
from proxy.carbon.trace import TraceProvider
from proxy.carbon.ukgrid import UKGridProvider
from proxy.carbon.watttime import WattTimeProvider
from proxy.classify.learned import ClassifierHolder
from proxy.config import Settings
from proxy.directives.catalogue import Catalogue
from proxy.directives.store import CatalogueStore
from proxy.energy.base import EnergyMeter
from proxy.energy.devices import DeviceMap, MeterTarget
from proxy.energy.factory import build_meter
from proxy.energy.remote import RemoteMeter
from proxy.energy.sampler import MeterSampler
from proxy.httpclient import tls_context
from proxy.jobs.heartbeat import Heartbeat
from proxy.jobs.leader import LeaderLock
from proxy.jobs.refresh import KeyRefresh, ModelRediscovery
from proxy.jobs.reoptimise import Reoptimiser
from proxy.jobs.responses_retention import INTERVAL_S as RETENTION_INTERVAL_S
from proxy.jobs.responses_retention import ResponsesRetention
from proxy.jobs.scheduler import Job, start_scheduler
from proxy.limits.sync import KeyUsageSync
from proxy.limits.usage import KeyUsage
from proxy.optimiser.allocation import Allocation, AllocationHolder
from proxy.pools.config import PoolConfig
from proxy.pools.discovery import configured_pools, discover_models
from proxy.pools.health import HealthChecker
from proxy.pools.profile import pool_embodied_g_per_s, pool_profile
from proxy.pools.registry import Pool, PoolRegistry
from proxy.routing.cost import SLO
from proxy.routing.disaggregation import KVTransfer
from proxy.routing.planner import JointPlanner
from proxy.routing.predict import InputEstimator, LatencyTracker, OutputPredictor
from proxy.routing.router import PoolStatic, Router, RoutingConfig
from proxy.server.loopwatch import LoopWatch
from proxy.serving.capture import CapturePolicy
from proxy.serving.directing import Director
from proxy.serving.flights import InFlight
from proxy.serving.responses import ResponsesRelay
from proxy.serving.retry import RetryPolicy
from proxy.serving.service import Serving
from proxy.state import AppState

log = logging.getLogger(__name__)

# The collector's thresholds from start-up on. CPython collects the young generation whenever
# container allocations outnumber deallocations by 700: on a loaded proxy ~170 times a second
# (0.1-0.2 ms each, ~2.5% of the core), and each tenth of each tenth is a full collection of
# everything since `gc.freeze()` (3.5-7 ms, the loop stopped, about once a second at c=32,
# every request in flight delayed). A request frees what it allocates, so the count only
# drifts up by what survives or leaks in cycles: at 20,000 a c=32 run set up as in
# bench/overhead.py saw no collection in 7.5 s. Cycles wait longer to be freed, at most ~20,000
# objects of them.
GC_THRESHOLDS = (20_000, 10, 10)


def carbon_provider(settings: Settings, zone: str | None = None) -> CarbonIntensityProvider:
    """Live provider (cached) > trace > static table for the zone > the static default."""
    chain: list[CarbonIntensityProvider] = []
    live = live_provider(settings, zone or settings.carbon_zone)
    if live is not None:
        chain.append(CachedProvider(
            live, max_staleness=timedelta(seconds=settings.carbon_max_staleness_s),
            timeout_s=settings.carbon_timeout_s))
    if settings.carbon_trace_file is not None and zone is None:
        chain.append(TraceProvider(settings.carbon_trace_file, settings.carbon_trace_column,
                                   settings.carbon_trace_offset_hours))
    if zone in REGION_ANNUAL_G_PER_KWH:
        chain.append(StaticProvider(REGION_ANNUAL_G_PER_KWH[zone], f"static:{zone}:2023-mean"))
    chain.append(StaticProvider(settings.carbon_static_g_per_kwh))
    return chain[0] if len(chain) == 1 else FallbackChain(chain)


def live_provider(settings: Settings, zone: str | None) -> CarbonIntensityProvider | None:
    """The configured live provider for a zone, if any (credentials from settings)."""
    kind = settings.carbon_live_provider
    timeout = settings.carbon_timeout_s
    if kind == "ukgrid":
        return UKGridProvider(base_url=settings.ukgrid_base_url, timeout_s=timeout)
    if kind == "electricitymaps" and zone and settings.electricitymaps_token:
        factor = "direct" if settings.carbon_trace_column == "direct" else "lifecycle"
        return ElectricityMapsProvider(zone, settings.electricitymaps_token, factor=factor,
                                       base_url=settings.electricitymaps_base_url,
                                       timeout_s=timeout)
    if kind == "watttime" and zone and settings.watttime_username and settings.watttime_password:
        return WattTimeProvider(zone, settings.watttime_username, settings.watttime_password,
                                base_url=settings.watttime_base_url, timeout_s=timeout)
    if kind != "none":
        log.warning("carbon provider %s needs a zone and credentials; using static values", kind)
    return None


def pool_accounts(pools: list[Pool], carbon: CarbonService) -> dict[str, PoolAccounts]:
    """Each pool's profile, model size, region, PUE and embodied rate (its regions served)."""
    accounts = {}
    for pool in pools:
        if pool.config.decode_pool is not None:
            continue
        accounting = pool.config.accounting
        if accounting.region:
            carbon.add_region(accounting.region)
        accounts[pool.name] = PoolAccounts(
            profile=pool_profile(pool.config), params_b=pool.config.model_params_b,
            region=accounting.region, pue=accounting.pue,
            embodied_g_per_s=pool_embodied_g_per_s(pool.config),
            prefill_weight=accounting.prefill_weight, decode_weight=accounting.decode_weight)
    for pool in pools:  # a disaggregated pool's rows are decoded on its decode pool's device
        config = pool.config
        if config.decode_pool is not None and config.prefill_pool is not None:
            accounts[pool.name] = dataclasses.replace(
                accounts[config.decode_pool], members=(config.prefill_pool, config.decode_pool))
    return accounts


def target_meters(devices: DeviceMap,
                  configs: dict[str, PoolConfig]) -> list[tuple[MeterTarget, EnergyMeter]]:
    """A meter per target: each backend's /metrics/energy, or the pool's configured meter."""
    meters: list[tuple[MeterTarget, EnergyMeter]] = []
    for target in devices.targets:
        if target.spec == "remote" and target.url:
            meters.append((target, RemoteMeter(target.url)))
        else:
            meters.append((target, build_meter(configs[target.pool])))
    return meters


def build_router(settings: Settings, registry: PoolRegistry, carbon: CarbonService,
                 engine: Engine, holder: AllocationHolder) -> Router:
    """The router, its output forecasts seeded from the last week of the ledger."""
    configs = {pool.name: pool.config for pool in registry.pools}

    def static(config: PoolConfig) -> PoolStatic:
        slo = SLO(config.slo.ttft_ms, config.slo.per_token_ms)
        if config.decode_pool is not None:  # its own figures are its decode pool's
            return dataclasses.replace(
                static(configs[config.decode_pool]), slo=slo, prefill_pool=config.prefill_pool,
                transfer=KVTransfer(config.kv_bytes_per_token, config.link_gbps,
                                    config.link_j_per_gb))
        return PoolStatic(
            profile=pool_profile(config), region=config.accounting.region,
            pue=config.accounting.pue, embodied_g_per_s=pool_embodied_g_per_s(config),
            params_b=config.model_params_b, slo=slo)

    statics = {name: static(config) for name, config in configs.items()}
    config = RoutingConfig(
        policy=settings.routing_policy, lam=settings.routing_lambda,
        objective=settings.routing_objective, threshold_pool=settings.routing_threshold_pool,
        threshold_input_tokens=settings.routing_threshold_input_tokens,
        threshold_output_tokens=settings.routing_threshold_output_tokens)
    predictor = OutputPredictor(alpha=settings.routing_output_ewma_alpha)
    with engine.connect() as connection:
        predictor.seed(output_lengths(connection, datetime.now(UTC) - timedelta(days=7)))
    return Router(config, statics, lambda region: carbon.latest(region).g_per_kwh,
                  predictor=predictor, inputs=InputEstimator(),
                  latency=LatencyTracker(stale_s=settings.routing_latency_stale_s),
                  placement=lambda klass, level: holder.current.pool_weights(klass, level))


@asynccontextmanager
async def lifespan(_app: Any, *, settings: Settings) -> AsyncIterator[dict[str, AppState]]:
    """Migrate, replay dead journals, build everything; on exit drain the ledger, close."""
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    engine = make_engine(settings.database_url)
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade_to_head, settings.database_url)
    master_key = resolve_master_key(settings.master_key, settings.master_key_file, create=False)
    if master_key is None:
        log.warning("no master key configured: only virtual keys are accepted")
    digests, policies = await asyncio.to_thread(load_virtual_keys, engine)
    keys = KeyRing(master_key, digests, policies)
    metrics = Metrics()
    usage = KeyUsage(keys, settings.key_budget_steps, flush_s=settings.key_usage_flush_s)
    journal = Journal(settings.ledger_journal_dir)
    journal.open()
    # The writer's own connections: each call is bounded, none is pinged on checkout.
    ledger_engine = make_engine(settings.database_url,
                                statement_timeout_s=settings.ledger_statement_timeout_s)
    ledger = LedgerWriter(
        ledger_engine,
        SpillFile(settings.ledger_spill_path),
        journal,
        queue_size=settings.ledger_queue_size,
        batch_size=settings.ledger_batch_size,
        retry_interval_s=settings.ledger_retry_interval_s,
        linger_s=settings.ledger_linger_s,
        statement_timeout_s=settings.ledger_statement_timeout_s,
        # every finished row is counted as it is handed over (metrics, per-key usage)
        observers=[metrics.observe, usage.record],
    )
    await ledger.replay_journal()  # rows of processes killed before they wrote them
    ledger.start()
    configs = await asyncio.gather(*(discover_models(c) for c in configured_pools(settings)))
    if not configs:
        log.warning("no pools configured: every model request will answer 404")
    devices = DeviceMap(list(configs))
    registry = PoolRegistry(build_pools(list(configs), devices))
    carbon = CarbonService(await asyncio.to_thread(carbon_provider, settings),
                           regional_factory=lambda zone: carbon_provider(settings, zone))
    accounts = pool_accounts(registry.pools, carbon)
    await carbon.refresh()
    retry = RetryPolicy(
        settings.retry_max_attempts, settings.retry_backoff_base_s, settings.retry_backoff_max_s
    )
    rng = random.Random()
    catalogues = CatalogueStore(Catalogue(settings.directive_levels))
    await asyncio.to_thread(catalogues.reload, engine)  # one an operator set, if any
    catalogue = catalogues.current
    holder = AllocationHolder(Allocation.always(
        catalogue.ids, catalogue.baseline.level, "cold start: the optimiser has not run yet"))
    classifiers = ClassifierHolder()  # regex classes until a learned predictor is published
    director = Director(catalogues, holder, keys, settings.directive_default, rng, usage,
                        classifiers)
    capture = CapturePolicy(keys, master_key_captures=settings.capture_master_key_prompts,
                            rate=settings.prompt_capture_rate, rng=rng)
    router = await asyncio.to_thread(build_router, settings, registry, carbon, engine, holder)
    flights = InFlight()
    response_store = (ResponseStore(engine, timedelta(days=settings.responses_retention_days))
                      if settings.responses_store else None)
    serving = Serving(registry, ledger, retry, rng, director,
                      ProvisionalAccounts(accounts, carbon.latest), devices, flights, usage,
                      capture, router, ResponsesRelay(response_store, rng))
    leader = LeaderLock(engine)
    history = CIHistory(engine)
    reoptimiser = Reoptimiser(
        engine=engine, settings=settings, catalogues=catalogues, holder=holder,
        provider=await asyncio.to_thread(carbon_provider, settings), leader=leader,
        history=history, classifiers=classifiers,
        planner=(JointPlanner(router, registry, settings.optimiser_max_utilisation)
                 if settings.routing_policy == "joint" else None),
    )
    heartbeat = Heartbeat(engine, registry, flights, ledger,
                          timeout_s=settings.replica_timeout_s)
    await heartbeat.beat()  # take this replica's shares before the first request
    sampler = MeterSampler(engine, target_meters(devices, {c.name: c for c in configs}), leader,
                           tick_s=settings.meter_sample_s)
    settlement = SettlementJob(settings.database_url, accounts, leader, SettlementConfig(
        replica_timeout_s=settings.replica_timeout_s, margin_s=settings.settlement_margin_s,
        max_hold_s=settings.settlement_max_hold_s))
    jobs: list[tuple[str, Job, float]] = [
        ("heartbeat", heartbeat.beat, settings.replica_heartbeat_s),
        ("keys", KeyRefresh(engine, keys).run_once, settings.keys_refresh_s),
        ("key-usage", KeyUsageSync(engine, usage, heartbeat, interval_s=settings.key_usage_flush_s,
                                   base_refresh_s=settings.key_budget_base_refresh_s).run_once,
         settings.key_usage_flush_s),
        ("models", ModelRediscovery(registry, {c.name: c for c in configured_pools(settings)}
                                    ).run_once, settings.pool_discovery_interval_s),
        ("settlement", settlement.run_once, settings.settlement_interval_s),
        ("reoptimise", reoptimiser.run_once, settings.optimiser_interval_s),
        ("carbon-refresh", CIRecorder(engine, carbon, leader).run_once,
         settings.carbon_refresh_s),
        ("pool-health", HealthChecker(registry, settings.pool_health_timeout_s).check_once,
         settings.pool_health_interval_s)]
    if response_store is not None:
        jobs.append(("responses-retention",
                     ResponsesRetention(response_store, leader).run_once, RETENTION_INTERVAL_S))
    if settings.evaluator_judge_model:
        from proxy.jobs.evaluation import EvaluationJob  # the evaluator package, when enabled

        evaluation = EvaluationJob(
            engine=engine, settings=settings, serving=serving, registry=registry,
            provider=reoptimiser.provider, leader=leader, catalogues=catalogues,
            history=history)
        jobs.append(("evaluate", evaluation.tick, settings.evaluator_interval_s))
    tls_context()  # built now, not in the first job that makes a client (httpclient.py)
    running_jobs: set[str] = set()
    scheduler = start_scheduler(jobs, running_jobs)
    sampler.start()
    watch = LoopWatch(metrics.registry, warn_ms=settings.loop_stall_warn_ms,
                      running_jobs=lambda: sorted(running_jobs))
    watch.start()
    state = AppState(settings, engine, ledger, keys, registry, serving, holder, reoptimiser,
                     carbon, metrics, settlement, heartbeat, usage, watch)
    metrics.watch(state)
    # Everything built so far (litellm alone is ~0.5M objects) lives as long as the process:
    # out of the collector's reach, a full collection takes ~0 ms instead of ~400 ms with the
    # event loop stopped (one happened whenever a job allocated a lot, e.g. an optimiser run).
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield {"sprout": state}
    finally:
        gc.set_threshold(*thresholds)
        watch.stop()
        scheduler.shutdown(wait=False)
        await settlement.aclose()
        await sampler.aclose()
        await registry.aclose()
        await ledger.aclose()  # every row written (or spilled); the journal goes with it
        await asyncio.to_thread(heartbeat.leave)
        await asyncio.to_thread(leader.release)  # another replica may lead at once
        engine.dispose()
        ledger_engine.dispose()
