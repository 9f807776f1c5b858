"""What a request costs split across two devices: prefill on one, KV over a link, decode (pure).

GreenLLM's (2024) second life for old GPUs: the compute-bound prefill runs on a new GPU, the
memory-bound decode on an old one, the prompt's KV cache moved between them. Per request, with
the prefill device P, the decode device D and forecast (input, output) tokens:

- prefill: P's profile for the prompt and one token, `P(in, 1)`;
- transfer: `in x kv_bytes_per_token` bytes over the link, `bytes / bandwidth` seconds and
  `bytes x link_j_per_gb` joules (charged to D's grid: D waits for it);
- decode: what `out` decode steps add on D over a one-token call, `D(in, out + 1) - D(in, 1)`
  (the prompt's context still weighs on every step of D's measured curve).

Carbon is each phase on its own device: operational with that device's grid intensity and PUE,
embodied at that device's rate for the seconds it is busy. If P and D were the same device the
split would cost the transfer more than serving it whole, so the router picks it only where
the decode device is cheaper by more than the transfer: long prompts with long answers on an
efficient old device, never short requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from proxy.energy.curves import CallCost
from proxy.energy.estimate import HardwareProfile


@dataclasses.dataclass(frozen=True, slots=True)
class KVTransfer:
    """The link between the prefill and decode pools, and the cache size per prompt token."""

    bytes_per_token: float
    link_gbps: float
    link_j_per_gb: float

    def seconds(self, input_tokens: float) -> float:
        """Time to move the prompt's cache."""
        return input_tokens * self.bytes_per_token * 8.0 / (self.link_gbps * 1e9)

    def joules(self, input_tokens: float) -> float:
        """Energy the link spends moving it."""
        return input_tokens * self.bytes_per_token / 1e9 * self.link_j_per_gb


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    """A device doing one phase: its profile and carbon figures."""

    profile: HardwareProfile
    ci_g_per_kwh: float
    pue: float = 1.0
    embodied_g_per_s: float = 0.0
    params_b: float | None = None

    def carbon_g(self, energy_j: float, busy_s: float) -> float:
        """Operational plus embodied gCO2e of `energy_j` over `busy_s` on this device."""
        return (energy_j / 3.6e6 * self.ci_g_per_kwh * self.pue
                + self.embodied_g_per_s * busy_s)


@dataclasses.dataclass(frozen=True, slots=True)
class SplitCost:
    """The predicted cost of one request served disaggregated, per phase and in total."""

    prefill_j: float
    transfer_j: float
    decode_j: float
    prefill_s: float
    transfer_s: float
    decode_s: float
    carbon_g: float
    prefill_carbon_g: float

    @property
    def energy_j(self) -> float:
        """Both devices and the link."""
        return self.prefill_j + self.transfer_j + self.decode_j

    @property
    def runtime_s(self) -> float:
        """Prefill, transfer and decode, one after the other."""
        return self.prefill_s + self.transfer_s + self.decode_s

    def call(self, output_tokens: float) -> CallCost:
        """As a `CallCost`: the first token arrives after the transfer and one decode step."""
        first_step_s = self.decode_s / max(output_tokens, 1.0)
        return CallCost(self.energy_j, self.runtime_s,
                        self.prefill_s + self.transfer_s + first_step_s)


def split_cost(prefill: Phase, decode: Phase, transfer: KVTransfer, input_tokens: float,
               output_tokens: float) -> SplitCost:
    """One request's predicted cost served disaggregated."""
    first = prefill.profile.predict(input_tokens, 1.0, prefill.params_b)
    one = decode.profile.predict(input_tokens, 1.0, decode.params_b)
    full = decode.profile.predict(input_tokens, output_tokens + 1.0, decode.params_b)
    decode_j = max(0.0, full.energy_j - one.energy_j)
    decode_s = max(0.0, full.runtime_s - one.runtime_s)
    transfer_s, transfer_j = transfer.seconds(input_tokens), transfer.joules(input_tokens)
    prefill_carbon = prefill.carbon_g(first.energy_j, first.runtime_s)
    carbon = (prefill_carbon + decode.carbon_g(decode_j + transfer_j, decode_s + transfer_s))
    return SplitCost(first.energy_j, transfer_j, decode_j, first.runtime_s, transfer_s,
                     decode_s, carbon, prefill_carbon)


def expected_split(prefill: Phase, decode: Phase, transfer: KVTransfer, input_tokens: float,
                   outputs: Sequence[float]) -> tuple[CallCost, float]:
    """Mean cost and gCO2e over representative output lengths (costs are convex in them)."""
    costs = [split_cost(prefill, decode, transfer, input_tokens, out) for out in outputs]
    count = len(costs)
    calls = [cost.call(out) for cost, out in zip(costs, outputs, strict=True)]
    return (CallCost(sum(c.energy_j for c in calls) / count,
                     sum(c.runtime_s for c in calls) / count,
                     sum(c.ttft_s for c in calls) / count),
            sum(c.carbon_g for c in costs) / count)
