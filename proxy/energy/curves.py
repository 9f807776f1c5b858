"""Measured token curves: energy and runtime of one call as functions of its token counts.

Wilkins et al. 2024 swept input tokens (8..2048, 32 output tokens) and output tokens (8..4096,
32 input tokens) separately on each host; `TokenCurve` combines the two sweeps into a prediction
for any (input, output) pair. Those runs had no KV-cache reuse, so every decode step re-reads the
prompt: an input's extra cost over the 32-token reference is charged per 32 output tokens,

    E(in, out) = E_out(out) + (E_in(in) - E_in(32)) * out / 32

and likewise for seconds. Points are piecewise-linear in tokens; below the first point an output
curve scales to zero (no tokens, no decode) and an input curve holds its first value; beyond the
last point both extend the last segment. The tables are derived figures (per-host means of the
measured calls; the A100 row is the mean of the Palmetto and Swing hosts), reproduced by
`bench/calibrate.py --curves` from ../shared/data/wilkins.
"""

from __future__ import annotations

import bisect
import dataclasses

REFERENCE_TOKENS = 32  # the fixed side of each Wilkins sweep

Point = tuple[int, float, float]  # tokens, joules, seconds


@dataclasses.dataclass(frozen=True, slots=True)
class CallCost:
    """Predicted cost of one call: energy, total runtime and time to first token."""

    energy_j: float
    runtime_s: float
    ttft_s: float

    @property
    def decode_s(self) -> float:
        """Seconds after the first token (0 for single-token answers)."""
        return max(0.0, self.runtime_s - self.ttft_s)


def _interpolate(points: tuple[Point, ...], keys: tuple[int, ...], tokens: float, column: int,
                 *, through_zero: bool) -> float:
    first, last = points[0], points[-1]
    if tokens <= first[0]:
        return first[column] * tokens / first[0] if through_zero else float(first[column])
    index = bisect.bisect_left(keys, tokens)
    if index >= len(points):  # beyond the sweep: extend the last segment
        left, right = points[-2], last
    else:
        left, right = points[index - 1], points[index]
    slope = (right[column] - left[column]) / (right[0] - left[0])
    return left[column] + slope * (tokens - left[0])


@dataclasses.dataclass(frozen=True, slots=True)
class TokenCurve:
    """Two one-dimensional sweeps crossing at (32, 32); see the module docstring."""

    input_sweep: tuple[Point, ...]
    output_sweep: tuple[Point, ...]
    source: str
    _input_keys: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _output_keys: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_input_keys", tuple(p[0] for p in self.input_sweep))
        object.__setattr__(self, "_output_keys", tuple(p[0] for p in self.output_sweep))

    def _column(self, input_tokens: float, output_tokens: float, column: int) -> float:
        decode = _interpolate(self.output_sweep, self._output_keys, output_tokens, column,
                              through_zero=True)
        extra_input = (
            _interpolate(self.input_sweep, self._input_keys, input_tokens, column,
                         through_zero=False)
            - _interpolate(self.input_sweep, self._input_keys, REFERENCE_TOKENS, column,
                           through_zero=False))
        value = decode + extra_input * max(output_tokens, 1.0) / REFERENCE_TOKENS
        return max(value, 0.1 * decode, 1e-6)  # short prompts never make a call free

    def predict(self, input_tokens: float, output_tokens: float) -> CallCost:
        """Energy, runtime and time to first token of one call."""
        runtime = self._column(input_tokens, output_tokens, 2)
        return CallCost(
            energy_j=self._column(input_tokens, output_tokens, 1),
            runtime_s=runtime,
            ttft_s=min(runtime, self._column(input_tokens, 1.0, 2)),
        )


_WILKINS = "Wilkins et al. 2024 (../shared/data/wilkins, per-host means; bench/calibrate.py)"

WILKINS_CURVES: dict[str, TokenCurve] = {
    "a100": TokenCurve(
        input_sweep=((8, 157.4, 1.304), (16, 147.0, 0.905), (32, 154.2, 0.903),
                     (64, 186.8, 0.937), (128, 253.5, 1.036), (256, 356.3, 1.263),
                     (512, 611.2, 1.978), (1024, 1133.2, 3.612), (2048, 2549.5, 8.08)),
        output_sweep=((8, 50.3, 0.559), (16, 75.6, 0.459), (32, 152.6, 0.907),
                      (64, 341.3, 1.846), (128, 797.4, 3.827), (256, 2019.5, 8.29),
                      (512, 5783.7, 20.655), (1024, 18874.9, 61.839),
                      (2048, 75581.4, 237.867), (4096, 384867.5, 1332.414)),
        source=_WILKINS + ", A100 hosts"),
    "v100": TokenCurve(
        input_sweep=((8, 916.0, 9.978), (16, 897.4, 8.852), (32, 955.7, 8.922),
                     (64, 1453.0, 10.905), (128, 2096.0, 12.985), (256, 3455.0, 18.465),
                     (512, 6341.4, 29.504), (1024, 11882.5, 53.588), (2048, 26092.0, 115.024)),
        output_sweep=((8, 265.2, 2.722), (16, 504.2, 4.753), (32, 1053.4, 9.578),
                      (64, 2639.7, 21.147), (128, 6609.7, 46.922), (256, 18676.2, 112.15),
                      (512, 58872.2, 300.46), (1024, 214574.9, 1007.277),
                      (2048, 845218.9, 3608.158)),
        source=_WILKINS + ", V100 host"),
    "m1-pro": TokenCurve(
        input_sweep=((8, 105.0, 11.166), (16, 125.0, 10.826), (32, 159.9, 12.568),
                     (64, 262.0, 19.001), (128, 434.9, 28.461), (256, 746.7, 44.74),
                     (512, 1444.2, 79.092), (1024, 2620.0, 136.8), (2048, 6042.5, 359.529)),
        output_sweep=((8, 29.1, 4.863), (16, 66.6, 6.869), (32, 158.7, 12.178),
                      (64, 401.6, 26.775), (128, 1113.9, 66.97), (256, 3561.0, 209.266),
                      (512, 12615.9, 845.303)),
        source=_WILKINS + ", M1 Pro"),
}
