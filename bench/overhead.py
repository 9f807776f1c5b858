"""Proxy overhead, side by side in one run: a stub upstream called directly, through
sprout-proxy (ledger on, PostgreSQL), and through the LiteLLM proxy (one worker, no database).

Scenarios: `chat` (chat completions, all three); `responses` (the Responses API through
sprout's translation to the stub's chat completions, against the stub's chat called
directly); `responses-native` (passed through to the stub's own /v1/responses, against that
called directly). Responses requests store their answer (the default), so that write counts.

    .venv/bin/python bench/overhead.py [--requests 1000] [--duration 8] [--concurrency 32]

The LiteLLM proxy runs from its own virtualenv (`--litellm-venv`, default .venv-bench; made with
`python3 -m venv .venv-bench && .venv-bench/bin/pip install 'litellm[proxy]'`) so its pins do not
touch the project's. All servers and the load generator share this machine: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import (  # noqa: E402
    CHAT_TOKEN,
    RESPONSES_TOKEN,
    build_request,
    closed_loop,
    median_ms,
    percentile_ms,
    sequential,
)
from tests.support.ledger import wait_rows  # noqa: E402
from tests.support.postgres import PostgresServer, free_port  # noqa: E402
from tests.support.servers import ChildProcess  # noqa: E402

KEY = "sk-bench-0123456789abcdef0123456789abcdef"
BODY = {"model": "fake-model", "max_tokens": 5,
        "messages": [{"role": "user", "content": "Say five words about the grid."}]}
RESPONSES_BODY = {"model": "fake-model", "max_output_tokens": 5,
                  "input": "Say five words about the grid."}
# (scenario, target, path, body, what marks the first token); the first run of a scenario's
# "direct" target is its baseline (`responses` compares with the stub's chat, the same work).
RUNS: list[tuple[str, str, str, dict[str, object], tuple[bytes, ...]]] = [
    ("chat", "direct", "/chat/completions", BODY, CHAT_TOKEN),
    ("chat", "sprout", "/chat/completions", BODY, CHAT_TOKEN),
    ("chat", "litellm", "/chat/completions", BODY, CHAT_TOKEN),
    ("responses", "sprout", "/responses", RESPONSES_BODY, RESPONSES_TOKEN),
    ("responses-native", "direct", "/responses", RESPONSES_BODY, RESPONSES_TOKEN),
    ("responses-native", "sprout", "/responses", RESPONSES_BODY | {"model": "fake-native"},
     RESPONSES_TOKEN),
]
BASELINES = {"chat": ("chat", "direct"), "responses": ("chat", "direct"),
             "responses-native": ("responses-native", "direct")}


def start_litellm(venv: Path, stub_url: str, work: Path) -> subprocess.Popen[bytes] | None:
    """The LiteLLM proxy in front of the stub, or None if its venv is missing."""
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        print(f"LiteLLM proxy not found at {binary}; skipping it", file=sys.stderr)
        return None
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: fake-model\n    litellm_params:\n"
        f"      model: openai/fake-model\n      api_base: {stub_url}\n      api_key: x\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "DATABASE_URL"))}
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
            "LITELLM_MASTER_KEY": KEY}
    log = (work / "litellm.log").open("wb")
    process = subprocess.Popen([str(binary), "--config", str(config), "--port", str(port),
                                "--num_workers", "1"], stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/liveliness", timeout=1).status_code == 200:
                process.url = url + "/v1"  # type: ignore[attr-defined]
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("LiteLLM proxy did not start: " + (work / "litellm.log").read_text()[-2000:])


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and every live descendant, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    family, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grew = True
    return sum(times.get(member, 0.0) for member in family)


async def measure(targets: dict[str, str], args: argparse.Namespace,
                  pids: dict[str, int] | None = None) -> list[dict[str, object]]:
    """Each target at c=1 and c=N; CPU per request of the proxy's processes (from /proc)."""
    pids = pids or {}
    results: list[dict[str, object]] = []
    for stream in (False, True):
        for scenario, name, path, document, token in RUNS:
            if name not in targets:
                continue
            body = json.dumps(document | ({"stream": True} if stream else {})).encode()
            url = targets[name] + path
            raw = build_request(url, body, KEY)
            one = await sequential(url, raw, args.requests, stream=stream, token=token)
            pid = pids.get(name)
            cpu_before = cpu_s(pid) if pid else 0.0
            rps, many = await closed_loop(url, raw, args.concurrency, args.duration,
                                          stream=stream, token=token)
            cpu_ms = (cpu_s(pid) - cpu_before) * 1000 / max(len(many), 1) if pid else None
            results.append({
                "scenario": scenario, "target": name, "mode": "stream" if stream else "plain",
                "c1_ttft_p50_ms": median_ms([s.ttfb_s for s in one]),
                "c1_ttft_p99_ms": percentile_ms([s.ttfb_s for s in one], 99),
                "c1_total_p50_ms": median_ms([s.total_s for s in one]),
                "c1_total_p99_ms": percentile_ms([s.total_s for s in one], 99),
                f"c{args.concurrency}_rps": rps,
                f"c{args.concurrency}_p50_ms": median_ms([s.total_s for s in many]),
                "requests": len(one) + len(many) + 20 + args.concurrency,
                "cpu_ms_per_request": cpu_ms,
            })
            print(f"  {scenario:16s} {name:8s} {results[-1]['mode']:6s} p50 "
                  f"{results[-1]['c1_total_p50_ms']:.3f} ms, {rps:.0f} req/s", flush=True)
    return results


def report(results: list[dict[str, object]], concurrency: int) -> str:
    rps_key = f"c{concurrency}_rps"
    lines = []
    for mode in ("plain", "stream"):
        rows = {(str(r["scenario"]), str(r["target"])): r for r in results if r["mode"] == mode}
        lines.append(f"\n{mode} (c=1: {'TTFT' if mode == 'stream' else 'latency'}; "
                     f"c={concurrency}: throughput)")
        lines.append(f"{'scenario':17s} {'target':8s} {'p50 ms':>8s} {'p99 ms':>8s} "
                     f"{'+p50 ms':>8s} {'+p99 ms':>8s} {'req/s':>8s} {'vs litellm':>10s} "
                     f"{'CPU ms/req':>10s}")
        for (scenario, name), row in rows.items():
            direct = rows[BASELINES[scenario]]
            p50, p99 = float(row["c1_ttft_p50_ms"]), float(row["c1_ttft_p99_ms"])  # type: ignore[arg-type]
            added50 = p50 - float(direct["c1_ttft_p50_ms"])  # type: ignore[arg-type]
            added99 = p99 - float(direct["c1_ttft_p99_ms"])  # type: ignore[arg-type]
            ratio = ""
            if ("chat", "litellm") in rows:
                ratio = f"{float(row[rps_key]) / float(rows['chat', 'litellm'][rps_key]):.1f}x"  # type: ignore[arg-type]
            cpu = row.get("cpu_ms_per_request")
            cpu_text = f"{float(cpu):10.3f}" if cpu is not None else f"{'':>10s}"  # type: ignore[arg-type]
            lines.append(f"{scenario:17s} {name:8s} {p50:8.3f} {p99:8.3f} {added50:8.3f} "
                         f"{added99:8.3f} "
                         f"{float(row[rps_key]):8.0f} {ratio:>10s} {cpu_text}")  # type: ignore[arg-type]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="sequential requests (c=1)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per c=N run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--litellm-venv", type=Path, default=ROOT / ".venv-bench")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--proxy-setting", action="append", default=[], metavar="PROXY_X=V",
                        help="an environment setting for sprout-proxy (repeatable), e.g. "
                             "PROXY_SETTLEMENT_INTERVAL_S=3600 to see what settlement costs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sprout-bench-"))
    postgres = PostgresServer()
    postgres.init()
    postgres.start()
    processes: list[object] = []
    try:
        stub_port = free_port()
        # The scripted upstream that also serves /v1/responses itself.
        stub = ChildProcess(["-m", "proxy.fakes.responses_upstream", "--port", str(stub_port)],
                            f"http://127.0.0.1:{stub_port}/v1/models").start()
        processes.append(stub)
        stub_url = f"http://127.0.0.1:{stub_port}/v1"
        database_url = postgres.create_database()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        env |= {"PROXY_MASTER_KEY": KEY, "PROXY_LEDGER_SPILL_PATH": str(work / "spill.jsonl"),
                "PROXY_LEDGER_JOURNAL_DIR": str(work / "journal"),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                # A second pool over the same stub that serves /v1/responses natively.
                "PROXY_POOLS": json.dumps([{
                    "name": "native", "kind": "openai", "base_urls": [stub_url],
                    "endpoints": ["responses"],
                    "models": [{"name": "fake-native", "upstream_name": "fake-model"}]}])}
        env |= dict(setting.split("=", 1) for setting in args.proxy_setting)
        sprout = ChildProcess(
            ["-m", "proxy", "serve", "--upstream", stub_url, "--model", "fake-model",
             "--port", str(port), "--database-url", database_url, "--log-level", "warning"],
            f"http://127.0.0.1:{port}/health", env=env, log_path=work / "sprout.log",
        ).start()
        processes.append(sprout)
        targets = {"direct": stub_url, "sprout": f"http://127.0.0.1:{port}/v1"}
        litellm = None if args.skip_litellm else start_litellm(args.litellm_venv, stub_url, work)
        if litellm is not None:
            targets["litellm"] = litellm.url  # type: ignore[attr-defined]
        print(f"measuring {', '.join(targets)} (this machine: {os.cpu_count()} cores)")
        pids = {"sprout": sprout.process.pid} if sprout.process else {}
        if litellm is not None:
            pids["litellm"] = litellm.pid
        results = asyncio.run(measure(targets, args, pids))

        sent = sum(int(r["requests"]) for r in results if r["target"] == "sprout")  # type: ignore[call-overload]
        rows = len(wait_rows(database_url, sent, timeout_s=60))
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()["ledger"]
        table = report(results, args.concurrency)
        summary = (f"{table}\n\nsprout ledger: {rows} rows for {sent} requests, "
                   f"dropped_rows={health['dropped_rows']}")
        print(summary)
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "overhead.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for r in results for k in r}))
            writer.writeheader()
            writer.writerows(results)
        (args.out / "overhead.txt").write_text(summary + "\n")
    finally:
        for process in processes:
            process.stop()  # type: ignore[attr-defined]
        if "litellm" in locals() and litellm is not None:
            litellm.terminate()
            litellm.wait(timeout=20)
        postgres.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
