"""SQLAlchemy tables; Alembic migrations are the only way they change."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per inference request, success or failure, written when the request ends. Only
# settlement updates a row afterwards: its provisional energy becomes a metered share (the
# `settled_*` columns accumulate window by window until the row is final).
requests = Table(
    "requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("api_key_id", String(64), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("requested_model", String(256), nullable=True),
    Column("upstream_model", String(256), nullable=True),
    Column("pool", String(128), nullable=True),
    Column("backend", String(32), nullable=True),
    Column("backend_url", String(512), nullable=True),
    Column("stream", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    # none = upstream `usage`; otherwise how the fallback estimate was made.
    Column("usage_estimated", Boolean, nullable=False),
    Column("usage_source", String(32), nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("overhead_ms", Float, nullable=True),
    Column("http_status", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("finish_reason", String(32), nullable=True),
    Column("retries", Integer, nullable=False),
    Column("is_evaluator", Boolean, nullable=False),
    # How the upstream decoded: standard | speculative | disaggregated (a worker's header).
    Column("decoding", String(32), nullable=True),
    # The router's decision and its forecasts (proxy/routing/router.py), to check them later.
    Column("route_policy", String(96), nullable=True),
    Column("predicted_output_tokens", Float, nullable=True),
    Column("predicted_energy_j", Float, nullable=True),
    # Filled by later stages (directives, classifier, energy and carbon accounting).
    Column("directive_level", String(16), nullable=True),
    Column("directive_hash", String(64), nullable=True),
    Column("task_class", String(64), nullable=True),
    Column("energy_j", Float, nullable=True),
    Column("energy_method", String(32), nullable=True),
    Column("ci_g_per_kwh", Float, nullable=True),
    Column("ci_source", String(64), nullable=True),
    Column("operational_g_co2e", Float, nullable=True),
    Column("embodied_g_co2e", Float, nullable=True),
    Column("pue", Float, nullable=True),
    # What settlement needs: the device that served it, and when it held the device (UTC).
    Column("device_id", String(256), nullable=True),
    Column("served_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("settled_j", Float, nullable=True),
    Column("settled_busy_s", Float, nullable=True),
    Column("settled_shared", Boolean, nullable=True),
    Column("settled_estimated", Boolean, nullable=True),  # some window of it was synthesised
    Column("settled_at", DateTime(timezone=True), nullable=True),
    # A disaggregated request's prefill phase, on its own device (served_at to
    # prefill_ended_at; the decode phase is on device_id until ended_at). Its joules and
    # gCO2e are part of the row's totals; settlement settles the phase on its device.
    Column("prefill_pool", String(128), nullable=True),
    Column("prefill_device_id", String(256), nullable=True),
    Column("prefill_backend_url", String(512), nullable=True),
    Column("prefill_ended_at", DateTime(timezone=True), nullable=True),
    Column("kv_transfer_bytes", BigInteger, nullable=True),
    Column("prefill_energy_j", Float, nullable=True),
    Column("prefill_operational_g_co2e", Float, nullable=True),
    Column("prefill_embodied_g_co2e", Float, nullable=True),
    Column("prefill_energy_method", String(32), nullable=True),
    Column("prefill_settled_j", Float, nullable=True),
    Column("prefill_settled_busy_s", Float, nullable=True),
    Column("prefill_settled_shared", Boolean, nullable=True),
    Column("prefill_settled_estimated", Boolean, nullable=True),
    # A disaggregated pool's fallback: the member pool that served the request whole (its
    # profile, grid, PUE and embodied rate are charged; `pool` stays the pool routed to).
    Column("served_pool", String(128), nullable=True),
    Index("ix_requests_created_at", "created_at"),
    # Settlement reads only rows not yet settled: a partial index keeps that set small however
    # long the ledger grows (settled rows leave it).
    Index("ix_requests_unsettled", "device_id", "served_at",
          postgresql_where=text("settled_at IS NULL"), sqlite_where=text("settled_at IS NULL")),
    Index("ix_requests_prefill_unsettled", "prefill_device_id", "served_at",
          postgresql_where=text("prefill_energy_method = 'provisional'"),
          sqlite_where=text("prefill_energy_method = 'provisional'")),
    Index("ix_requests_api_key_id_created_at", "api_key_id", "created_at"),
    Index("ix_requests_pool_created_at", "pool", "created_at"),
)

# Hourly sums of the ledger's successful, classified requests, which the optimiser reads instead
# of raw rows. Database triggers on `requests` keep them (migration 0010): every insert (COPY and
# INSERT ... SELECT included; duplicates skipped by ON CONFLICT add nothing), every update
# (settlement's measured joules replace the provisional ones) and every delete, in the same
# transaction.
usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("hour", BigInteger, primary_key=True),  # whole hours since 1970-01-01 UTC
    Column("task_class", String(64), primary_key=True),
    Column("directive_level", String(16), primary_key=True),
    Column("is_evaluator", Boolean, primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("offset_s", Float, nullable=False),  # summed seconds past the hour (mean age)
    Column("latency_ms", Float, nullable=False),  # summed
    Column("metered_j", Float, nullable=False),  # summed energy_j of rows that have one
    Column("unmetered_output_tokens", BigInteger, nullable=False),  # of rows without
)

# Virtual API keys, stored as SHA-256 hashes; the plain key is shown once at creation.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("name", String(256), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("policy_json", Text, nullable=True),
)


# One row per judge verdict from the offline evaluator: which level's answer won for a prompt of
# a task class. The optimiser turns recent verdicts into quality scores q(class, level).
judgments = Table(
    "judgments",
    metadata,
    Column("judgment_id", String(64), primary_key=True),
    Column("evaluation_id", String(64), nullable=True),
    Column("sample_id", String(64), nullable=True),
    Column("judged_at", DateTime(timezone=True), nullable=False),
    Column("task_class", String(64), nullable=False),
    Column("levels", String(128), nullable=False),  # comma-separated levels compared
    Column("winner_level", String(16), nullable=True),  # null: the judge failed (recorded)
    Column("judge_model", String(256), nullable=True),
    Column("position_order", String(128), nullable=True),
    Column("answer_chars_json", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_judgments_judged_at", "judged_at"),
)

# One row per optimiser solve: its inputs, the published allocation and how it was obtained.
optimiser_runs = Table(
    "optimiser_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("ran_at", DateTime(timezone=True), nullable=False),
    Column("form", String(16), nullable=False),
    Column("status", String(32), nullable=False),  # optimal | cold_start | fallback
    Column("reason", Text, nullable=True),
    Column("xi", Float, nullable=False),
    Column("ci_g_per_kwh", Float, nullable=False),
    Column("ci_source", String(64), nullable=False),
    Column("ci_min_g_per_kwh", Float, nullable=False),
    Column("ci_max_g_per_kwh", Float, nullable=False),
    Column("tolerance_used", Float, nullable=True),
    Column("expected_g_co2e", Float, nullable=True),
    Column("baseline_g_co2e", Float, nullable=True),
    Column("expected_quality", Float, nullable=True),
    Column("quality_floor", Float, nullable=True),
    Column("solve_ms", Float, nullable=True),
    Column("inputs_json", Text, nullable=False),
    Column("allocation_json", Text, nullable=False),
    Index("ix_optimiser_runs_ran_at", "ran_at"),
)


# The directive catalogue operators set through the admin API (newest row wins).
directive_catalogues = Table(
    "directive_catalogues",
    metadata,
    Column("catalogue_id", Integer, primary_key=True, autoincrement=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("levels_json", Text, nullable=False),
)

# Prompts captured for the evaluator, only from keys whose policy opts in; deleted after the
# retention period. Nothing else of a prompt is stored anywhere.
prompt_samples = Table(
    "prompt_samples",
    metadata,
    Column("sample_id", String(64), primary_key=True),  # the request id it was captured from
    Column("captured_at", DateTime(timezone=True), nullable=False),
    Column("api_key_id", String(64), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(256), nullable=False),
    Column("task_class", String(64), nullable=True),
    Column("request_json", Text, nullable=False),  # the client's request, before any directive
    Index("ix_prompt_samples_captured_at", "captured_at"),
)

# One row per evaluator run (bounded, resumable).
evaluations = Table(
    "evaluations",
    metadata,
    Column("evaluation_id", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("status", String(32), nullable=False),  # running | done | stopped | failed
    Column("trigger", String(64), nullable=False),  # schedule | run-once | admin
    Column("judge_model", String(256), nullable=False),
    Column("levels", String(128), nullable=False),
    Column("planned_prompts", Integer, nullable=False),
    Column("judged_prompts", Integer, nullable=False),
    Column("failed_prompts", Integer, nullable=False),
    Column("ci_g_per_kwh", Float, nullable=True),
    Column("sample_ids_json", Text, nullable=False),  # the plan, so a stopped run resumes
    Column("note", Text, nullable=True),
    Index("ix_evaluations_started_at", "started_at"),
)

# Regenerated answers, kept until judged (so a stopped run resumes without asking again).
evaluation_answers = Table(
    "evaluation_answers",
    metadata,
    Column("evaluation_id", String(64), primary_key=True),
    Column("sample_id", String(64), primary_key=True),
    Column("level", String(16), primary_key=True),
    Column("request_id", String(64), nullable=True),
    Column("answer_text", Text, nullable=True),
    Column("answer_chars", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# q(class, level) per evaluation: win share with counts and a 95% Wilson interval.
quality_scores = Table(
    "quality_scores",
    metadata,
    Column("evaluation_id", String(64), primary_key=True),
    Column("task_class", String(64), primary_key=True),  # "*" = all classes together
    Column("level", String(16), primary_key=True),
    Column("wins", Integer, nullable=False),
    Column("judged", Integer, nullable=False),
    Column("q", Float, nullable=False),
    Column("q_low", Float, nullable=False),
    Column("q_high", Float, nullable=False),
)


# The learned-class predictor the evaluator fits at the end of each run (newest wins; the
# proxy replicas pick it up on their next optimiser tick). heldout_json: every verdict it was
# fitted from, with the learned class its held-out (cross-fitted) model gave it, for q.
predictors = Table(
    "predictors",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("fitted_at", DateTime(timezone=True), nullable=False),
    Column("evaluation_id", String(64), nullable=True),
    Column("levels", String(256), nullable=False),
    Column("verdicts", Integer, nullable=False),
    Column("heldout_accuracy", Float, nullable=False),
    Column("heldout_log_loss", Float, nullable=False),
    Column("regex_accuracy", Float, nullable=False),  # the regex classes, held out alike
    Column("model_json", Text, nullable=False),
    Column("heldout_json", Text, nullable=False),
    Index("ix_predictors_fitted_at", "fitted_at"),
)

# Cumulative meter readings, one per device per sampling tick, taken by the jobs leader only.
energy_samples = Table(
    "energy_samples",
    metadata,
    Column("sample_id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(256), nullable=False),
    Column("sampled_at", DateTime(timezone=True), nullable=False),
    Column("energy_j", Float, nullable=False),
    Column("meter", String(256), nullable=False),
    Index("ix_energy_samples_device_id_sampled_at", "device_id", "sampled_at"),
)

# Each device's settlement state: the meter behind it and how far its windows are closed.
energy_devices = Table(
    "energy_devices",
    metadata,
    Column("device_id", String(256), primary_key=True),
    Column("meter", String(256), nullable=True),
    Column("pools", String(512), nullable=True),  # comma-separated pools it serves
    Column("available", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Column("last_sample_at", DateTime(timezone=True), nullable=True),
    Column("settled_through", DateTime(timezone=True), nullable=True),
)

# One row per closed window: metered = attributed + idle joules (conservation, checkable in SQL).
energy_windows = Table(
    "energy_windows",
    metadata,
    Column("window_id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(256), nullable=False),
    Column("start_at", DateTime(timezone=True), nullable=False),
    Column("end_at", DateTime(timezone=True), nullable=False),
    Column("metered_j", Float, nullable=False),
    Column("attributed_j", Float, nullable=False),
    Column("idle_j", Float, nullable=False),
    Column("rows", Integer, nullable=False),
    # measured: a counter delta; estimated: synthesised from the hardware profile (no meter, or
    # the counter went backwards: a reset).
    Column("method", String(32), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=False),
    Index("ix_energy_windows_device_id_end_at", "device_id", "end_at"),
    Index("ix_energy_windows_end_at", "end_at"),
)

# Live proxy processes: heartbeats for fleet-wide limits and for settlement's horizon.
replicas = Table(
    "replicas",
    metadata,
    Column("replica_id", String(64), primary_key=True),
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    # {pool: ISO time the oldest request in flight there started}
    Column("in_flight_json", Text, nullable=False),
    # When the oldest row this replica has not yet written to the database started.
    Column("pending_since", DateTime(timezone=True), nullable=True),
)

# Grid intensity per region as the leader read it each interval: the one history the
# optimiser, the evaluator's clean-hour rule, the admin API and the dashboard read.
ci_readings = Table(
    "ci_readings",
    metadata,
    Column("reading_id", Integer, primary_key=True, autoincrement=True),
    Column("region", String(64), nullable=False),  # "" = the proxy's default zone
    Column("read_at", DateTime(timezone=True), nullable=False),
    Column("g_per_kwh", Float, nullable=False),
    Column("source", String(64), nullable=False),
    Index("ix_ci_readings_region_read_at", "region", "read_at"),
)

# Per-key usage per minute, one row per replica (proxy/limits/sync.py): each replica upserts
# its own absolute totals about once a second, reads the fleet's back and takes a lease of
# what is left, so per-key limits are fleet-wide without a database round trip per request.
# Kept for an hour.
key_usage = Table(
    "key_usage",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("minute_at", DateTime(timezone=True), primary_key=True),
    Column("replica_id", String(64), primary_key=True),
    Column("requests", Integer, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("g_co2e", Float, nullable=False),
    # The replica's lease: how many requests / tokens it may use in this minute (>= its use).
    Column("granted_requests", Integer, nullable=False),
    Column("granted_tokens", Integer, nullable=False),
    Index("ix_key_usage_minute_at", "minute_at"),
)

# Responses the proxy keeps for `previous_response_id`, `GET /v1/responses/{id}` and its input
# items (requests with `store` not false; PROXY_RESPONSES_STORE). Deleted after the retention
# period (`expires_at`); a row past it is never served even before the clean-up removes it.
stored_responses = Table(
    "stored_responses",
    metadata,
    Column("response_id", String(128), primary_key=True),
    Column("request_id", String(64), nullable=False),  # its ledger row
    Column("api_key_id", String(64), nullable=True),  # only this key may read or continue it
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("model", String(256), nullable=False),
    Column("pool", String(128), nullable=True),
    Column("native", Boolean, nullable=False),  # served by a pool's own /v1/responses
    Column("history_json", Text, nullable=False),  # earlier turns' items (client's own input)
    Column("input_json", Text, nullable=False),  # this request's input items, with ids
    Column("response_json", Text, nullable=False),  # the response object as the client got it
    Index("ix_stored_responses_expires_at", "expires_at"),
)
