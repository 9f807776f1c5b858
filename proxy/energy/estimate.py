"""Hardware profiles for estimated energy (when a pool has no working meter).

An estimate synthesises the device's energy as active_w x busy seconds + idle_w x idle seconds
per window, and the same attribution then splits it among requests; rows say `estimated`.
The per-token figures predict energy before a request runs (routing). Sources: figures fitted
by bench/calibrate.py on ../shared/data (run it to reproduce them):

- `sprout-13b`: Sprout (Li et al., EMNLP 2024), Llama-2-13B-chat on one GPU (model not
  recorded), GPU energy only: 248.8 W active reproduces the held-out mean energy per request
  of every level and dataset within 0.5%; 5.3 J per output token (answer length from a
  separate generation run, so only indicative).
- `a100`, `v100`, `m1-pro`: Wilkins et al. 2024, 7B models, CPU + GPU energy per call: mean
  power over the calls, and J per input / output token fitted on calls up to 256 output tokens
  (held-out error of the mean <= 2.4%). A100 is the mean of the two A100 hosts.
- `h100`, `t4`, `rtx-6000-ada`, `cpu`: no measurement in the shared data. ASSUMED: 0.55 x the
  vendor's board power (the ratio the A100 hosts showed, 219 W of 400 W), and per-token figures
  scaled from A100 by that power ratio. Replace them with `bench/calibrate.py`-style fits of
  your own measurements where you can.
- `m1`: ASSUMED: half the M1 Pro's figures (8 GPU cores against 16).
Seconds per input / output token (routing's runtime prediction) come from the same fits where
measured (`a100`, `v100`, `m1-pro`; Sprout's 13B: 7.99 s for ~272 answer tokens on alpaca); the
assumed profiles scale A100's by an ASSUMED speed factor (H100 0.5, T4 3, RTX 6000 Ada 1,
CPU 20; M1 twice the M1 Pro). Measured hosts also carry their full Wilkins token curves
(proxy/energy/curves.py), which routing prefers: they capture the fixed cost that makes an M1
cheaper than an A100 for short calls, which linear fits (negative intercepts) cannot.
Per-token figures scale with model size as (params / reference params) ** 0.894: Sprout's
Llama-2-7B used 0.575 of the 13B's energy for the same prompts (no directive), which is
(7/13) ** 0.894. Idle power is not in the shared data; profiles leave it at 0 (idle energy is
then neither estimated nor attributed) unless a pool sets it.
"""

from __future__ import annotations

import dataclasses

from proxy.energy.curves import WILKINS_CURVES, CallCost, TokenCurve

# Energy ~ params ** 0.894: Sprout's 7B / 13B energy ratio, 0.575 (bench/calibrate.py notes).
SIZE_EXPONENT = 0.894


@dataclasses.dataclass(frozen=True, slots=True, eq=False)  # identity hash: cheap cache keys
class HardwareProfile:
    """Estimated power and per-token energy of one device class."""

    name: str
    active_w: float
    idle_w: float
    j_per_input_token: float
    j_per_output_token: float
    source: str
    reference_params_b: float = 7.0  # the model size the per-token figures were measured on
    s_per_input_token: float = 0.0018
    s_per_output_token: float = 0.032
    curve: TokenCurve | None = None  # measured sweeps; preferred by `predict`

    def _scale(self, params_b: float | None) -> float:
        if params_b is None:
            return 1.0
        return float((params_b / self.reference_params_b) ** SIZE_EXPONENT)

    def predict_j(self, input_tokens: int, output_tokens: int,
                  params_b: float | None = None) -> float:
        """Energy of a request from its token counts (before it runs), for a model size."""
        return self._scale(params_b) * (self.j_per_input_token * input_tokens
                                        + self.j_per_output_token * output_tokens)

    def predict(self, input_tokens: float, output_tokens: float,
                params_b: float | None = None) -> CallCost:
        """Energy, runtime and time to first token of one call (the curve where measured)."""
        scale = self._scale(params_b)
        if self.curve is not None:
            cost = self.curve.predict(input_tokens, output_tokens)
        else:
            prefill_s = self.s_per_input_token * input_tokens
            cost = CallCost(
                energy_j=self.j_per_input_token * input_tokens
                + self.j_per_output_token * output_tokens,
                runtime_s=prefill_s + self.s_per_output_token * max(output_tokens, 1.0),
                ttft_s=prefill_s + self.s_per_output_token)
        return CallCost(cost.energy_j * scale, cost.runtime_s * scale, cost.ttft_s * scale)


def _assumed(name: str, board_w: float, slowdown: float) -> HardwareProfile:
    scale = board_w / 400.0
    return HardwareProfile(name, 0.55 * board_w, 0.0, 0.92 * scale, 7.9 * scale,
                           f"assumed: 0.55 x {board_w:g} W board power, tokens scaled from A100, "
                           f"{slowdown:g} x A100's seconds per token",
                           s_per_input_token=0.0018 * slowdown,
                           s_per_output_token=0.032 * slowdown)


PROFILES: dict[str, HardwareProfile] = {
    profile.name: profile for profile in [
        HardwareProfile("sprout-13b", 248.8, 0.0, 0.0, 5.3,
                        "Sprout 13B GPU-only measurements (bench/calibrate.py)",
                        reference_params_b=13.0, s_per_input_token=0.002,
                        s_per_output_token=0.029),
        HardwareProfile("a100", 219.0, 0.0, 0.92, 7.9,
                        "Wilkins et al. 2024 A100 hosts, 7B (bench/calibrate.py)",
                        curve=WILKINS_CURVES["a100"]),
        HardwareProfile("v100", 154.0, 0.0, 10.9, 75.2,
                        "Wilkins et al. 2024 V100 host, 7B (bench/calibrate.py)",
                        s_per_input_token=0.040, s_per_output_token=0.44,
                        curve=WILKINS_CURVES["v100"]),
        HardwareProfile("m1-pro", 16.0, 0.0, 2.75, 14.4,
                        "Wilkins et al. 2024 M1 Pro, 7B (bench/calibrate.py)",
                        s_per_input_token=0.143, s_per_output_token=0.824,
                        curve=WILKINS_CURVES["m1-pro"]),
        HardwareProfile("m1", 8.0, 0.0, 1.38, 7.2,
                        "assumed: half the M1 Pro's power and energy figures (8 GPU cores "
                        "against 16), twice its seconds per token",
                        s_per_input_token=0.286, s_per_output_token=1.648),
        _assumed("h100", 700.0, 0.5),
        _assumed("t4", 70.0, 3.0),
        _assumed("rtx-6000-ada", 300.0, 1.0),
        _assumed("cpu", 65.0, 20.0),
    ]
}
