"""Disaggregated against monolithic serving over Alpaca's lengths: energy and carbon, embodied in.

Each of the judged Alpaca prompts in ../shared/data/sprout/alpaca.csv (input tokens from the
instruction, Llama-2-13B-chat answer lengths at L0, both at 4 characters a token, as
bench/replay_wilkins.py reads them) is costed four ways with the project's own profiles and
cost model (`proxy/energy/estimate.py`, `proxy/routing/disaggregation.py`):

- `all on A100`: the whole request on the A100 profile (Wilkins' measured curve);
- `A100 prefill + V100 decode` and `A100 prefill + T4 decode`: every request split, its KV
  cache (Llama-2-7B fp16, 512 KiB a token) over a 25 Gbit/s link at an ASSUMED 5 J/GB;
- `router`: per request, whichever of the two the cost model predicts cheaper in gCO2e
  (lambda = 1, true lengths): the choice the `disaggregated` pool's routing makes.

Carbon: one grid for all devices (the proxy's static default, 300 g/kWh, PUE 1). Embodied:
the A100 as `a100-instance-share` (318 kgCO2e, 5 years, Chien et al. 2023); the old GPU as
`gpu-board` (60 kgCO2e over 4 years, EcoInfo), or `--old-embodied-zero` for a device whose
manufacturing is already written off (the second-life argument). The V100 profile is measured
(Wilkins); the T4 profile is ASSUMED (estimate.py), so its rows are indicative only.

    .venv/bin/python bench/disaggregation.py
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.carbon.embodied import DEVICES, embodied_g_per_s  # noqa: E402
from proxy.energy.estimate import PROFILES  # noqa: E402
from proxy.pools.config import LLAMA2_7B_KV_BYTES_PER_TOKEN  # noqa: E402
from proxy.routing.disaggregation import KVTransfer, Phase, split_cost  # noqa: E402


def load(path: Path) -> list[tuple[float, float]]:
    """(input tokens, L0 answer tokens) per judged prompt."""
    pairs = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["judged_best_level"] == "" or not row["answer_chars_L0"]:
                continue
            pairs.append((len(row["instruction"]) / 4, float(row["answer_chars_L0"]) / 4))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--ci-g-per-kwh", type=float, default=300.0)
    parser.add_argument("--link-gbps", type=float, default=25.0)
    parser.add_argument("--link-j-per-gb", type=float, default=5.0)
    parser.add_argument("--old-embodied-zero", action="store_true")
    args = parser.parse_args()
    pairs = load(args.data_dir / "sprout" / "alpaca.csv")
    a100_device = DEVICES["a100-instance-share"]
    old_device = DEVICES["gpu-board"]
    a100 = Phase(PROFILES["a100"], args.ci_g_per_kwh, 1.0,
                 embodied_g_per_s(a100_device.kg_co2e, a100_device.lifetime_years))
    old_rate = 0.0 if args.old_embodied_zero else embodied_g_per_s(old_device.kg_co2e,
                                                                   old_device.lifetime_years)
    transfer = KVTransfer(LLAMA2_7B_KV_BYTES_PER_TOKEN, args.link_gbps, args.link_j_per_gb)
    inputs = sorted(p[0] for p in pairs)
    outputs = sorted(p[1] for p in pairs)
    print(f"{len(pairs)} Alpaca prompts; input tokens median {inputs[len(inputs) // 2]:.0f}, "
          f"answer tokens median {outputs[len(outputs) // 2]:.0f} (L0)")
    print(f"grid {args.ci_g_per_kwh:g} g/kWh; old-GPU embodied "
          f"{'0 (written off)' if args.old_embodied_zero else 'gpu-board'}")
    base_j = base_op = base_emb = 0.0
    for _in, _out in pairs:
        call = PROFILES["a100"].predict(_in, _out)
        base_j += call.energy_j
        base_op += call.energy_j / 3.6e6 * args.ci_g_per_kwh
        base_emb += a100.embodied_g_per_s * call.runtime_s
    rows = [("all on A100", base_j, base_op, base_emb, len(pairs))]
    for name in ("v100", "t4"):
        old = Phase(PROFILES[name], args.ci_g_per_kwh, 1.0, old_rate)
        split_j = split_op = split_emb = 0.0
        pick_j = pick_op = pick_emb = 0.0
        chosen = 0
        for _in, _out in pairs:
            cost = split_cost(a100, old, transfer, _in, _out)
            op = cost.energy_j / 3.6e6 * args.ci_g_per_kwh
            emb = cost.carbon_g - op
            split_j, split_op, split_emb = split_j + cost.energy_j, split_op + op, split_emb + emb
            whole = PROFILES["a100"].predict(_in, _out)
            whole_op = whole.energy_j / 3.6e6 * args.ci_g_per_kwh
            whole_emb = a100.embodied_g_per_s * whole.runtime_s
            if cost.carbon_g < whole_op + whole_emb:
                chosen += 1
                pick_j, pick_op, pick_emb = pick_j + cost.energy_j, pick_op + op, pick_emb + emb
            else:
                pick_j, pick_op = pick_j + whole.energy_j, pick_op + whole_op
                pick_emb += whole_emb
        label = name.upper()
        rows.append((f"A100 prefill + {label} decode", split_j, split_op, split_emb, len(pairs)))
        rows.append((f"router: A100 or A100+{label}", pick_j, pick_op, pick_emb, chosen))
    count = len(pairs)
    base_g = base_op + base_emb
    print("| serving | J / request | operational gCO2e | embodied gCO2e | total gCO2e | "
          "vs all on A100 | requests split |")
    print("|---|---|---|---|---|---|---|")
    for name, joules, op, emb, split in rows:
        total = op + emb
        print(f"| {name} | {joules / count:,.0f} | {op / count:.4f} | {emb / count:.4f} | "
              f"{total / count:.4f} | {100 * (total / base_g - 1):+.1f}% | "
              f"{split if name != 'all on A100' else 0} |")


if __name__ == "__main__":
    main()
