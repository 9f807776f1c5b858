"""Pool configuration as operators write it (YAML file, JSON env var or CLI quick start)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# responses: the pool serves /v1/responses itself (passed through); a pool without it but with
# chat answers Responses requests through the proxy's translation (protocol/responses_chat.py).
Endpoint = Literal["chat", "completions", "embeddings", "responses"]
# openai: any OpenAI-compatible server; worker: a sprout worker (the same wire protocol, and
# its /metrics/energy is read for measured joules); litellm: any provider litellm supports;
# disaggregated: prefill on one pool, decode on another, with vLLM's P/D protocol
# (proxy/backends/disaggregated.py).
PoolKind = Literal["openai", "worker", "litellm", "disaggregated"]
# Kinds reached over HTTP at their own base URLs (probed, metered per backend, discovered).
HTTP_KINDS = frozenset({"openai", "worker"})
# Llama-2-7B in float16: K and V x 32 layers x 4096 hidden x 2 bytes per prompt token.
LLAMA2_7B_KV_BYTES_PER_TOKEN = 2 * 32 * 4096 * 2


def _default_endpoints() -> list[Endpoint]:
    return ["chat", "completions"]


class ModelRoute(BaseModel):
    """A model name clients use, and the name the pool's upstream knows it by."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    upstream_name: str | None = None

    @property
    def target(self) -> str:
        """The model name sent upstream."""
        return self.upstream_name or self.name


class PoolAccounting(BaseModel):
    """How a pool's energy and carbon are accounted."""

    model_config = ConfigDict(extra="forbid")

    # auto: the upstream's /metrics/energy (a sprout worker, or one in meter-only mode beside
    # vLLM/llama.cpp), else estimates. remote: meter_url. nvml/rapl/apple: this host's device.
    # dcgm/kepler: the Prometheus exporter at meter_url (NVIDIA's DCGM exporter, per GPU;
    # Kepler, per container), summing the series that meter_labels selects.
    meter: Literal["auto", "remote", "nvml", "rapl", "apple", "dcgm", "kepler",
                   "estimate"] = "auto"
    meter_url: str | None = None
    # dcgm/kepler: exact label matches, e.g. {UUID: GPU-...} or {pod: ..., namespace: ...};
    # empty sums every series the exporter reports.
    meter_labels: dict[str, str] = Field(default_factory=dict)
    # The device id of a pool-level meter (default `<pool>:<meter>`): rows and samples meet on
    # it. Per-backend meters (auto) name devices themselves (proxy/energy/devices.py).
    device: str | None = Field(default=None, min_length=1, max_length=256)
    hardware: str = "a100"  # estimate profile (proxy/energy/estimate.py)
    active_w: float | None = Field(default=None, gt=0)  # override the profile's figures
    idle_w: float | None = Field(default=None, ge=0)
    region: str | None = None  # grid zone for carbon intensity (default: the proxy's provider)
    pue: float = Field(default=1.0, ge=1.0)  # facility overhead; 1.0 counts the device only
    # A device from proxy/carbon/embodied.py DEVICES, or explicit figures (which win).
    embodied_device: str = "sprout-server"
    embodied_kg_co2e: float | None = Field(default=None, ge=0)
    lifetime_years: float | None = Field(default=None, gt=0)
    # Ignored since settlement became fleet-wide (the leader samples every meter each
    # PROXY_METER_SAMPLE_S); still accepted so existing pool files load.
    tick_s: float = Field(default=0.5, gt=0)
    # How a window's joules are weighted between a request's prompt and answer tokens.
    prefill_weight: float = Field(default=1.0, ge=0)
    decode_weight: float = Field(default=4.0, ge=0)


class PoolSLO(BaseModel):
    """Latency targets; routing prefers pools predicted (or measured) to meet them."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(default=None, gt=0)
    per_token_ms: float | None = Field(default=None, gt=0)


class PoolConfig(BaseModel):
    """One pool: a kind, its backends, the models it serves and its limits."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: PoolKind = "openai"
    # openai: base URLs ending in /v1; litellm: optional api_base values (empty = provider default).
    base_urls: list[str] = Field(default_factory=list)
    models: list[ModelRoute] = Field(default_factory=list)
    api_key: SecretStr | None = None
    endpoints: list[Endpoint] = Field(default_factory=_default_endpoints)
    max_concurrency: int = Field(default=64, ge=1)
    max_queue: int = Field(default=256, ge=0)
    # At most this many requests on one backend at once (None: only the pool's limit). The
    # pool then admits at most min(max_concurrency, this x backends), the rest queue.
    max_concurrency_per_backend: int | None = Field(default=None, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=120.0, gt=0)
    accounting: PoolAccounting = Field(default_factory=PoolAccounting)
    slo: PoolSLO = Field(default_factory=PoolSLO)
    # Size of the model the pool serves, in billions of parameters: scales the profile's
    # per-token energy and time for routing (profiles are measured on 7B models).
    model_params_b: float | None = Field(default=None, gt=0)
    # Circuit breaker per backend: consecutive failures before it opens, and the cooldown.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=10.0, gt=0)
    # kind `disaggregated`: the pools that prefill and decode (both must serve the model
    # whole too: either is the fallback when the other leg fails), and the link between them.
    prefill_pool: str | None = None
    decode_pool: str | None = None
    kv_bytes_per_token: int = Field(default=LLAMA2_7B_KV_BYTES_PER_TOKEN, ge=1)
    link_gbps: float = Field(default=25.0, gt=0)  # prefill -> decode bandwidth, Gbit/s
    # ASSUMED (no measurement in ../shared/data): two NICs and a switch port, about 5 J/GB
    # (a 25 GbE NIC draws ~10 W at line rate: 10 W / 3.1 GB/s ~ 3 J/GB, doubled for the pair
    # and the switch, rounded down for idle-shared power).
    link_j_per_gb: float = Field(default=5.0, ge=0)

    def auth_headers(self) -> dict[str, str]:
        """The upstream's authorization header, if the pool has a key (requests and probes)."""
        if self.api_key is None:
            return {}
        return {"authorization": f"Bearer {self.api_key.get_secret_value()}"}

    @field_validator("models", mode="before")
    @classmethod
    def _names_as_routes(cls, value: object) -> object:
        # Operators mostly write plain names; `{name, upstream_name}` renames.
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("base_urls")
    @classmethod
    def _strip_slash(cls, value: list[str]) -> list[str]:
        return [url.rstrip("/") for url in value]

    @model_validator(mode="after")
    def _needs_backend(self) -> PoolConfig:
        if self.kind == "disaggregated":
            if not self.prefill_pool or not self.decode_pool:
                raise ValueError(f"pool {self.name!r}: a disaggregated pool names a "
                                 "prefill_pool and a decode_pool")
            if self.base_urls:
                raise ValueError(f"pool {self.name!r}: a disaggregated pool has no base_urls "
                                 "of its own (its legs go to prefill_pool and decode_pool)")
            if set(self.endpoints) - {"chat", "completions"}:
                raise ValueError(f"pool {self.name!r}: a disaggregated pool serves chat and "
                                 "completions only")
            return self
        if self.prefill_pool or self.decode_pool:
            raise ValueError(f"pool {self.name!r}: prefill_pool and decode_pool belong to "
                             "kind disaggregated")
        if self.kind != "litellm" and not self.base_urls:
            raise ValueError(f"pool {self.name!r}: an {self.kind} pool needs at least one "
                             "base_url")
        return self


def load_pools_file(path: Path) -> list[PoolConfig]:
    """Read ``pools:`` from a YAML file; errors name the file and the offending pool."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict) or not isinstance(document.get("pools", []), list):
        raise ValueError(f"{path}: expected a mapping with a 'pools' list")
    return [PoolConfig.model_validate(item) for item in document.get("pools", [])]
