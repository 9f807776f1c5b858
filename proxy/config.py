"""Settings: the one typed reader of the environment (prefix ``PROXY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from proxy.directives.catalogue import DEFAULT_LEVELS, DirectiveLevel
from proxy.limits.policy import DEFAULT_BUDGET_STEPS, BudgetStep
from proxy.pools.config import PoolConfig


class Settings(BaseSettings):
    """Every setting of the proxy; `.env.example` lists each one (a test keeps them in sync)."""

    model_config = SettingsConfigDict(
        env_prefix="PROXY_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # `PROXY_MASTER_KEY=` means unset, not an empty key
        extra="ignore",
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = "info"
    # Proxy processes on this host (`serve --workers N`): one socket, one leader among them.
    workers: int = Field(default=1, ge=1, le=64)
    # Slow and idle clients (proxy/server/protocol.py; per process). A request's headers must
    # arrive within header_timeout_s of its first byte (or of the connect) and be at most
    # max_header_bytes (else 408/431 and the connection closes); an idle keep-alive connection
    # closes after keep_alive_timeout_s; a body must arrive within body_timeout_s (408).
    server_header_timeout_s: float = Field(default=10.0, gt=0)
    server_max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    server_keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    server_body_timeout_s: float = Field(default=30.0, gt=0)
    # Open connections per process; a request arriving past it gets a 503 in OpenAI's
    # envelope (with Retry-After) and its connection is closed.
    server_max_connections: int = Field(default=2048, ge=1)
    # SIGTERM: in-flight requests may finish for this long; the rest then end with a 503 in
    # OpenAI's envelope (an error event for a stream) and a row that says so.
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # An event-loop lag this long is logged with the collections and jobs of its moment
    # (`sprout_event_loop_lag_ms` counts every lag; proxy/server/loopwatch.py).
    loop_stall_warn_ms: float = Field(default=100.0, gt=0)
    # How long a thread holding the GIL (the ledger writer formatting a COPY, a job's database
    # call) may keep the event loop waiting before it must let go; CPython's default is 5 ms.
    gil_switch_interval_ms: float = Field(default=1.0, gt=0, le=100)

    # Auth: the master key may call everything; virtual keys live hashed in `api_keys`.
    master_key: SecretStr | None = None
    master_key_file: Path = Path("var/master-key")
    # Scrape token for GET /metrics (`Authorization: Bearer ...`). Unset (the default), the
    # metrics are open like any Prometheus exporter's: set it where the port is reachable.
    metrics_token: SecretStr | None = None

    # Database: embedded SQLite by default, PostgreSQL in production.
    database_url: str = "sqlite:///./var/sprout.db"
    migrate_on_start: bool = True

    # Pools: a YAML file, a JSON list in PROXY_POOLS, and/or one quick-start upstream.
    pools_file: Path | None = None
    pools: list[PoolConfig] = Field(default_factory=list)
    upstream_url: str | None = None
    upstream_api_key: SecretStr | None = None
    upstream_models: list[str] = Field(default_factory=list)
    # The quick-start upstream's estimate profile (proxy/energy/estimate.py) when it has no meter.
    upstream_hardware: str = "a100"

    # Routing across pools (proxy/routing/): `cost` minimises U = lambda * E + (1 - lambda) * R
    # over predicted tokens (E: gCO2e with each pool's own grid intensity, or joules), within
    # pools that meet their SLO and have a free slot; `threshold` is Wilkins et al.'s rule
    # (requests predicted at <= T_in and <= T_out tokens go to `routing_threshold_pool`);
    # `least_loaded` ignores cost; `joint` places by the optimiser's joint directive + placement
    # LP (x[class, level, pool] with pool capacities), falling back to cost for unplanned
    # requests. A key's policy may override lambda.
    routing_policy: Literal["cost", "threshold", "least_loaded", "joint"] = "cost"
    routing_lambda: float = Field(default=0.5, ge=0, le=1)
    routing_objective: Literal["carbon", "energy"] = "carbon"
    routing_threshold_pool: str | None = None
    routing_threshold_input_tokens: int = Field(default=32, ge=0)
    routing_threshold_output_tokens: int = Field(default=32, ge=0)
    # Measured latencies older than this are ignored (the profile's prediction is used again).
    routing_latency_stale_s: float = Field(default=60.0, gt=0)
    routing_output_ewma_alpha: float = Field(default=0.1, gt=0, le=1)

    # Health probes of every backend (GET /models), feeding the circuit breakers.
    pool_health_interval_s: float = Field(default=10.0, gt=0)
    pool_health_timeout_s: float = Field(default=2.0, gt=0)

    # Request limits
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Deadlines across every attempt and pool (504 `timeout_error` past them): a whole
    # non-streaming answer, a stream's first byte. A client may shorten its own with the
    # X-Sprout-Timeout-S header (never lengthen); the row's error_type names the one that fired.
    request_timeout_s: float = Field(default=60.0, gt=0)
    stream_first_byte_timeout_s: float = Field(default=60.0, gt=0)

    # Retries before the first byte (jittered exponential backoff, other backend first).
    retry_max_attempts: int = Field(default=3, ge=1, le=10)
    retry_backoff_base_s: float = Field(default=0.05, ge=0)
    retry_backoff_max_s: float = Field(default=1.0, ge=0)

    # Ledger writer: bounded queue, batches, spill file while the database is down.
    ledger_queue_size: int = Field(default=10_000, ge=1)
    ledger_batch_size: int = Field(default=500, ge=1)
    # How long the writer gathers rows into one batch (one transaction) after the first. The
    # journal already holds each row, so waiting costs no durability and saves a transaction
    # (and a COPY) per few rows.
    ledger_linger_s: float = Field(default=0.25, ge=0)
    ledger_retry_interval_s: float = Field(default=2.0, gt=0)
    # The longest one ledger write (a batch, a replayed chunk) may take before the database
    # counts as hung: the call is cut off, its rows spilled, `database_up` goes false. A
    # stopped server (SIGSTOP) never errors by itself; a healthy batch takes milliseconds.
    ledger_statement_timeout_s: float = Field(default=5.0, gt=0)
    ledger_spill_path: Path = Path("var/ledger-spill.jsonl")
    # Local append-only journal of finished rows (one file set per process): a row is in it
    # before the answer completes, so a killed process loses none; replayed at the next start.
    ledger_journal_dir: Path = Path("var/journal")

    # Fleet: every replica heartbeats (fleet-wide concurrency shares, settlement's horizon),
    # refreshes virtual keys and re-discovers upstream models.
    replica_heartbeat_s: float = Field(default=1.0, gt=0)
    replica_timeout_s: float = Field(default=10.0, gt=0)
    keys_refresh_s: float = Field(default=2.0, gt=0)
    pool_discovery_interval_s: float = Field(default=60.0, gt=0)

    # Per-key limits (a key's `limits` policy), fleet-wide: each replica flushes its counts to
    # `key_usage` and reads the fleet's back every flush; budgets re-read the ledger's settled
    # gCO2e every base refresh. Budget steps: from a spent fraction, at least this level.
    key_usage_flush_s: float = Field(default=1.0, gt=0, le=60)
    key_budget_base_refresh_s: float = Field(default=60.0, gt=0, le=1800)
    key_budget_steps: list[BudgetStep] = Field(
        default_factory=lambda: list(DEFAULT_BUDGET_STEPS))

    # Energy settlement (jobs leader): one sampler reads every meter, windows are split among
    # every replica's rows. A request open longer than max_hold no longer holds windows open.
    meter_sample_s: float = Field(default=0.5, gt=0)
    settlement_interval_s: float = Field(default=2.0, gt=0)
    settlement_margin_s: float = Field(default=1.0, ge=0)
    settlement_max_hold_s: float = Field(default=600.0, gt=0)

    # Directives (Sprout): the catalogue, and what requests get without a header or key policy.
    directive_levels: list[DirectiveLevel] = Field(default_factory=lambda: list(DEFAULT_LEVELS))
    directive_default: str = "auto"  # off | auto | a level id

    # Prompt capture for the evaluator: only keys whose policy opts in (the master key by this
    # flag), a sampled share of their chat/completion requests, kept for the retention period.
    capture_master_key_prompts: bool = False
    prompt_capture_rate: float = Field(default=0.1, ge=0, le=1)
    prompt_retention_days: float = Field(default=7.0, gt=0)

    # Responses API: keep responses (store not false) for previous_response_id, retrieval and
    # input items, in the database, for the retention period. Off: previous_response_id on a
    # chat-only pool is a 400 (a native pool still resolves its own ids).
    responses_store: bool = True
    responses_retention_days: float = Field(default=30.0, gt=0)

    # Evaluator: regenerates captured prompts at every level, a judge model picks the best.
    # The scheduled job is off until a judge model (one the pools serve) is set.
    evaluator_judge_model: str | None = None
    # How the judge's choice is read: `logprobs` (a constrained choice over the answer labels'
    # log-probabilities), `text` ("Best: N" parsed), `auto` (logprobs, else text).
    evaluator_judge_mode: Literal["auto", "logprobs", "text"] = "auto"
    evaluator_interval_s: float = Field(default=3600.0, gt=0)
    evaluator_max_prompts: int = Field(default=50, ge=1)
    evaluator_time_budget_s: float = Field(default=900.0, gt=0)
    evaluator_max_idle_h: float = Field(default=72.0, ge=0)
    evaluator_grace_h: float = Field(default=6.0, ge=0)
    evaluator_staleness_rate_per_h: float = Field(default=0.029, ge=0)
    evaluator_max_pool_utilisation: float = Field(default=0.5, ge=0, le=1)
    # Learned task classes: after each finished run the evaluator fits a predictor on every
    # retained verdict; with fewer than this many, the regex classes stay.
    evaluator_predictor_min_verdicts: int = Field(default=100, ge=2)

    # Optimiser: the LP re-solved on a schedule and published to the request path.
    optimiser_interval_s: float = Field(default=300.0, gt=0)
    optimiser_form: Literal["per_class", "global"] = "per_class"
    optimiser_xi: float = Field(default=0.1, ge=0, le=1)
    optimiser_trailing_days: float = Field(default=30.0, gt=0)
    optimiser_half_life_h: float = Field(default=24.0, gt=0)
    optimiser_prior_strength: float = Field(default=20.0, ge=0)
    optimiser_quality_lower_bound_z: float = Field(default=0.2, ge=0)
    optimiser_min_verdicts: int = Field(default=30, ge=1)
    # Joint LP (routing_policy=joint): the busy share of each pool's slots it may plan for.
    optimiser_max_utilisation: float = Field(default=0.8, gt=0, le=1)

    # Grid carbon intensity for the optimiser until per-pool providers land: a fixed value, or
    # an Electricity Maps hourly CSV export replayed with its year shifted to now.
    carbon_static_g_per_kwh: float = Field(default=300.0, gt=0)
    carbon_trace_file: Path | None = None
    carbon_trace_column: Literal["direct", "LCA"] = "direct"
    carbon_trace_offset_hours: float = 0.0
    carbon_refresh_s: float = Field(default=300.0, gt=0)
    # A live provider, asked first (each pool's `accounting.region`, else `carbon_zone`); on
    # failure its last value is served while fresher than the staleness limit, then the trace
    # and static values take over. Every row records which source it used.
    carbon_live_provider: Literal["none", "electricitymaps", "watttime", "ukgrid"] = "none"
    carbon_zone: str | None = None
    carbon_timeout_s: float = Field(default=5.0, gt=0)
    carbon_max_staleness_s: float = Field(default=3 * 3600.0, gt=0)
    electricitymaps_token: SecretStr | None = None
    electricitymaps_base_url: str = "https://api.electricitymap.org/v3"
    watttime_username: str | None = None
    watttime_password: SecretStr | None = None
    watttime_base_url: str = "https://api.watttime.org"
    ukgrid_base_url: str = "https://api.carbonintensity.org.uk"

    # Energy estimate for the optimiser until metered joules land in the ledger: joules per
    # output token. Default: Sprout's Llama-2-13B-chat measurements (../shared/data/sprout,
    # GPU only, one request at a time): sum of energy_j_L1+L2 over sum of answer_chars / 4.
    estimate_j_per_output_token: float = Field(default=7.4, gt=0)
