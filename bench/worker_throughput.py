"""Worker throughput: continuous batching against one generation at a time, in one run.

    .venv/bin/python bench/worker_throughput.py [--model smollm2] [--max-tokens 48]

Starts two workers on the same model, one with `--batching on` and one with `--batching off`,
and measures completion tokens per second at concurrency 1, 4 and 16 (greedy, every request
its own prompt), alternating the two workers at each level. Both share this machine's cores,
and only one is loaded at a time: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.postgres import free_port  # noqa: E402
from tests.support.servers import ChildProcess  # noqa: E402

QUESTIONS = [
    "Describe the water cycle.", "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?", "Name a mammal that can fly.",
    "Explain what a computer network is.", "What causes the seasons on Earth?",
    "Give me a synonym for happy.", "What is the largest planet?",
    "Describe how a bicycle works.", "What are the benefits of regular exercise?",
    "Explain how photosynthesis works.", "What is a haiku?",
    "Why do leaves change color in autumn?", "What does DNA stand for?",
    "Name three primary colors.", "How do vaccines work?",
]


async def load(url: str, model: str, concurrency: int, requests: int,
               max_tokens: int) -> dict[str, float]:
    """`requests` chat completions, `concurrency` at a time; tokens per second over the run."""
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", timeout=600)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> int:
        async with gate:
            started = time.perf_counter()
            reply = await client.chat.completions.create(
                model=model, max_tokens=max_tokens, temperature=0,
                messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}])
            latencies.append(time.perf_counter() - started)
            return reply.usage.completion_tokens if reply.usage else 0

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i) for i in range(requests))))
    elapsed = time.perf_counter() - started
    await client.close()
    return {"tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed,
            "mean_latency_s": sum(latencies) / len(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2",
                        help="the workers' --model (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sprout-throughput-"))
    workers: dict[str, tuple[ChildProcess, str]] = {}
    try:
        for mode in ("on", "off"):
            port = free_port()
            process = ChildProcess(
                ["-m", "worker", "--model", args.model, "--served-name", "bench",
                 "--batching", mode, "--port", str(port), "--log-level", "warning"],
                f"http://127.0.0.1:{port}/health", log_path=work / f"worker-{mode}.log",
                cwd=ROOT).start(timeout_s=300)
            workers[mode] = (process, f"http://127.0.0.1:{port}/v1")
        print(f"model {args.model}, {args.max_tokens} tokens at most, greedy; "
              f"this machine: {os.cpu_count()} cores")
        results: list[dict[str, object]] = []
        for concurrency in args.concurrency:
            requests = max(4, 2 * concurrency)
            for mode in ("on", "off"):
                url = workers[mode][1]
                asyncio.run(load(url, "bench", 1, 1, 4))  # warm: first-request costs
                measured = asyncio.run(load(url, "bench", concurrency, requests,
                                            args.max_tokens))
                results.append({"batching": mode, "concurrency": concurrency,
                                "requests": requests} | measured)
                print(f"  c={concurrency:<3} batching {mode:<3} {measured['tokens_per_s']:6.1f} "
                      f"tok/s ({measured['tokens']:.0f} tokens in {measured['seconds']:.1f} s, "
                      f"mean latency {measured['mean_latency_s']:.1f} s)", flush=True)
        lines = ["| concurrency | batched tok/s | one at a time tok/s | ratio |",
                 "|---|---|---|---|"]
        for concurrency in args.concurrency:
            on, off = (next(r for r in results if r["concurrency"] == concurrency
                            and r["batching"] == mode) for mode in ("on", "off"))
            lines.append(f"| {concurrency} | {on['tokens_per_s']:.1f} | "
                         f"{off['tokens_per_s']:.1f} | "
                         f"{float(on['tokens_per_s']) / float(off['tokens_per_s']):.2f}x |")  # type: ignore[arg-type]
        table = "\n".join(lines)
        print(table)
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "worker_throughput.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(results[0]))
            writer.writeheader()
            writer.writerows(results)
        (args.out / "worker_throughput.txt").write_text(table + "\n")
    finally:
        for process, _ in workers.values():
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
