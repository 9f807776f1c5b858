"""Sprout's directives live: the same prompts through the proxy at L0, L1 and L2.

    .venv/bin/python bench/live_directives.py [--prompts 200] [--max-tokens 128]

Starts the worker on the real default model (SmolLM2-135M-Instruct; `--model` for another,
or `--upstream URL` for a running OpenAI-compatible server) and sprout-proxy with a SQLite
ledger, then sends every prompt at each level (`X-Sprout-Directive`), levels interleaved,
`--concurrency` at a time, greedy. Prompts are the instructions of Sprout's four developer
datasets (../shared/data/sprout: alpaca, math, mmlu, naturalqa), an equal share of each.

Per level it reports mean completion tokens, joules and seconds per request, from the proxy's
own ledger after settlement. Joules are measured where the worker's device has a meter (NVML,
RAPL, Apple) and estimated from the `cpu` hardware profile otherwise; the table says which.
Beside them: Sprout's published Llama-2-13B measurements of the same prompts, as ratios to L0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.ledger import wait_settled  # noqa: E402
from tests.support.postgres import free_port  # noqa: E402
from tests.support.servers import ChildProcess  # noqa: E402

KEY = "sk-bench-0123456789abcdef0123456789abcdef"
LEVELS = ("L0", "L1", "L2")
DATASETS = ("alpaca", "math", "mmlu", "naturalqa")


def load_prompts(data_dir: Path, count: int, seed: int) -> list[dict[str, str]]:
    """`count` rows, an equal share of each dataset, drawn from the rows Sprout measured."""
    chosen: list[dict[str, str]] = []
    rng = random.Random(seed)
    for name in DATASETS:
        with (data_dir / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
            rows = [r | {"dataset": name} for r in csv.DictReader(handle)
                    if all(r[f"energy_j_{lvl}"] for lvl in LEVELS)]
        chosen += rng.sample(rows, count // len(DATASETS))
    return chosen


async def send_all(url: str, model: str, prompts: list[dict[str, str]], max_tokens: int,
                   concurrency: int, seed: int) -> dict[str, str]:
    """Every prompt at every level, shuffled; the ledger's request id of each -> level."""
    client = openai.AsyncOpenAI(base_url=url, api_key=KEY, timeout=900)
    gate = asyncio.Semaphore(concurrency)
    jobs = [(p, level) for p in prompts for level in LEVELS]
    random.Random(seed).shuffle(jobs)
    ids: dict[str, str] = {}
    done = 0

    async def one(prompt: dict[str, str], level: str) -> None:
        nonlocal done
        async with gate:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, max_tokens=max_tokens, temperature=0,
                messages=[{"role": "user", "content": prompt["instruction"]}],
                extra_headers={"x-sprout-directive": level})
            ids[raw.headers["x-request-id"]] = level
            done += 1
            if done % 30 == 0:
                print(f"  {done}/{len(jobs)} requests", flush=True)

    await asyncio.gather(*(one(p, level) for p, level in jobs))
    await client.close()
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--model", default="smollm2", help="the worker's --model")
    parser.add_argument("--upstream", default=None,
                        help="a running OpenAI-compatible /v1 URL instead of a local worker")
    parser.add_argument("--served-model", default=None,
                        help="the model name to ask for (default: the upstream's first)")
    parser.add_argument("--hardware", default="cpu",
                        help="the proxy's PROXY_UPSTREAM_HARDWARE profile for estimates")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "sprout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    prompts = load_prompts(args.data_dir, args.prompts, args.seed)
    work = Path(tempfile.mkdtemp(prefix="sprout-live-"))
    processes: list[ChildProcess] = []
    try:
        upstream = args.upstream
        if upstream is None:
            port = free_port()
            processes.append(ChildProcess(
                ["-m", "worker", "--model", args.model, "--port", str(port),
                 "--log-level", "warning"], f"http://127.0.0.1:{port}/health",
                log_path=work / "worker.log", cwd=ROOT).start(timeout_s=300))
            upstream = f"http://127.0.0.1:{port}/v1"
        database_url = f"sqlite:///{work}/ledger.db"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        env |= {"PROXY_MASTER_KEY": KEY, "PROXY_LEDGER_SPILL_PATH": str(work / "spill.jsonl"),
                "PROXY_LEDGER_JOURNAL_DIR": str(work / "journal"),
                "PROXY_UPSTREAM_HARDWARE": args.hardware,
                "PROXY_REQUEST_TIMEOUT_S": "1800",  # long answers, many at once, on a CPU
                "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        # One pool, read timeout long enough for a CPU answering `--concurrency` long answers
        # at once (the default 120 s would open the circuit on a busy 2-core machine).
        pools = work / "pools.yaml"
        pools.write_text(
            "pools:\n  - name: live\n    kind: openai\n"
            f"    base_urls: [\"{upstream}\"]\n    read_timeout_s: 1800\n"
            f"    max_concurrency: {args.concurrency}\n    max_queue: 100000\n"
            f"    accounting: {{hardware: {args.hardware}}}\n")
        processes.append(ChildProcess(
            ["-m", "proxy", "serve", "--config", str(pools), "--port", str(port),
             "--database-url", database_url, "--log-level", "warning"],
            f"http://127.0.0.1:{port}/health", env=env, log_path=work / "proxy.log").start())
        url = f"http://127.0.0.1:{port}/v1"
        model = args.served_model or openai.OpenAI(base_url=url, api_key=KEY).models.list() \
            .data[0].id
        print(f"{len(prompts)} prompts x {len(LEVELS)} levels through sprout-proxy to {model}, "
              f"{args.max_tokens} tokens at most, concurrency {args.concurrency}")
        started = time.perf_counter()
        ids = asyncio.run(send_all(url, model, prompts, args.max_tokens, args.concurrency,
                                   args.seed))
        wall = time.perf_counter() - started
        ledger = {r["request_id"]: r for r in wait_settled(database_url, len(ids), 120)}
        table = report(ledger, ids, prompts, args.max_tokens)
        summary = (f"{table}\n\n{len(ids)} requests in {wall:.0f} s; model {model}; "
                   f"prompts: {collections.Counter(p['dataset'] for p in prompts)}")
        print(summary)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "live_directives.txt").write_text(summary + "\n")
    finally:
        for process in reversed(processes):
            process.stop()
    return 0


def report(ledger: dict[str, dict[str, object]], ids: dict[str, str],
           prompts: list[dict[str, str]], max_tokens: int) -> str:
    """Per level: tokens, joules, seconds (live), and Sprout's 13B ratios (published)."""
    by_level: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for request_id, level in ids.items():
        by_level[level].append(ledger[request_id])

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    live = {level: {
        "tokens": mean([float(r["completion_tokens"] or 0) for r in rows]),  # type: ignore[arg-type]
        # rows without joules (a failed request) are left out, never counted as 0 J
        "joules": mean([float(r["energy_j"]) for r in rows if r["energy_j"] is not None]),  # type: ignore[arg-type]
        "seconds": mean([float(r["latency_ms"] or 0) / 1000 for r in rows]),  # type: ignore[arg-type]
        "capped": sum(int(r["completion_tokens"] or 0) >= max_tokens for r in rows)  # type: ignore[call-overload]
        / len(rows),
        "methods": collections.Counter(str(r["energy_method"]) for r in rows),
    } for level, rows in by_level.items()}
    sprout = {level: {
        "joules": mean([float(p[f"energy_j_{level}"]) for p in prompts]),
        "seconds": mean([float(p[f"time_s_{level}"]) for p in prompts]),
    } for level in LEVELS}
    lines = ["| level | completion tokens | J / request | s / request | answers at the cap "
             "| J vs L0 | Sprout 13B J vs L0 | Sprout 13B s vs L0 |",
             "|---|---|---|---|---|---|---|---|"]
    for level in LEVELS:
        here = live[level]
        lines.append(
            f"| {level} | {here['tokens']:.1f} | {here['joules']:.1f} | {here['seconds']:.2f} "
            f"| {here['capped']:.0%} | {here['joules'] / live['L0']['joules']:.2f} "
            f"| {sprout[level]['joules'] / sprout['L0']['joules']:.2f} "
            f"| {sprout[level]['seconds'] / sprout['L0']['seconds']:.2f} |")
    methods = ", ".join(f"{level}: {dict(live[level]['methods'])}" for level in LEVELS)
    return "\n".join(lines) + f"\n\nenergy labels: {methods}"


if __name__ == "__main__":
    raise SystemExit(main())
