"""What an optimiser solve costs requests, with a big ledger: before and after, in one run.

    .venv/bin/python bench/optimiser_load.py [--rows 1000000] [--rate 100] [--duration 30]

A throwaway PostgreSQL gets `--rows` synthetic ledger rows spread over the last 192 h (8 half
lives, what the optimiser reads), loaded with COPY, and enough judge verdicts for a real LP.
Then, for each reader, a proxy (one process, ledger on) serves paced load at `--rate` req/s
from a scripted upstream: first with no solve, then while POST /admin/optimiser/solve runs
back to back. The figure is the p99 added during solves, and the solve's wall time.

- `raw rows (before)`: the reader this proxy shipped until issue #14: the newest 100,000 raw
  rows, each made a Python object in a worker thread (it holds the interpreter lock).
- `hourly sums (after)`: `repository.decayed_usage`: the database sums the hourly rollups
  (`usage_hourly`, kept by triggers) into one row per (class, level).
All processes share this machine: compare the two readers, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Connection, build_request, percentile_ms  # noqa: E402
from proxy.classify.classifier import CLASSES  # noqa: E402
from tests.support.postgres import PostgresServer, free_port  # noqa: E402
from tests.support.servers import ChildProcess  # noqa: E402

KEY = "sk-bench-0123456789abcdef0123456789abcdef"
BODY = json.dumps({"model": "fake-model", "max_tokens": 5, "messages": [
    {"role": "user", "content": "Say five words about the grid."}]}).encode()
LEVELS = ("L0", "L1", "L2")
READERS = {"raw rows (before)": "raw", "hourly sums (after)": "buckets"}


def load_rows(dsn: str, count: int) -> float:
    """COPY `count` ledger rows over the last 192 h; returns the seconds it took."""
    draw = random.Random(14)
    now = datetime.now(UTC)
    started = time.perf_counter()
    columns = ("request_id, created_at, endpoint, stream, usage_estimated, usage_source, "
               "latency_ms, http_status, status, retries, is_evaluator, task_class, "
               "directive_level, completion_tokens, energy_j")
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY requests ({columns}) FROM STDIN") as copy:
            for index in range(count):
                tokens = draw.randint(5, 600)
                copy.write_row((
                    f"bench-{index}", now - timedelta(seconds=draw.uniform(0, 192 * 3600)),
                    "chat", False, False, "upstream", draw.uniform(50, 5000), 200, "ok", 0,
                    False, draw.choice(CLASSES), draw.choice(LEVELS), tokens,
                    tokens * 0.3 if draw.random() < 0.5 else None))
        cursor.execute(
            "INSERT INTO judgments (judgment_id, judged_at, task_class, levels, winner_level) "
            "SELECT 'j-' || n, now() - n * interval '1 minute', (%s::text[])[1 + n %% %s], "
            "'L0,L1,L2', (ARRAY['L0','L1','L2'])[1 + n %% 3] FROM generate_series(1, 600) AS n",
            (list(CLASSES), len(CLASSES)))
        cursor.execute("ANALYZE requests")
    return time.perf_counter() - started


def serve_child(reader: str, argv: list[str]) -> int:
    """Run the proxy in this process, with the optimiser reading through `reader`."""
    from proxy import cli
    from proxy.accounting import repository
    if reader == "raw":
        repository.decayed_usage = (  # type: ignore[assignment]
            lambda connection, now, since, _half_life_h: raw_usage(connection, now, since))
    return cli.main(argv)


def raw_usage(connection: Any, now: datetime, since: datetime) -> list[Any]:
    """The reader before issue #14, unchanged: the newest 100,000 raw rows."""
    from sqlalchemy import desc, select

    from proxy.accounting.tables import requests
    from proxy.optimiser.inputs import Usage
    columns = requests.c
    query = (select(columns.created_at, columns.task_class, columns.directive_level,
                    columns.completion_tokens, columns.latency_ms, columns.energy_j,
                    columns.is_evaluator)
             .where(columns.created_at >= since, columns.status == "ok",
                    columns.task_class.is_not(None), columns.directive_level.is_not(None))
             .order_by(desc(columns.created_at)).limit(100_000))
    return [Usage(task_class=row.task_class, level=row.directive_level,
                  completion_tokens=row.completion_tokens or 0,
                  latency_s=row.latency_ms / 1000.0, energy_j=row.energy_j,
                  is_evaluator=bool(row.is_evaluator),
                  age_h=(now - row.created_at).total_seconds() / 3600)
            for row in connection.execute(query)]


async def paced(url: str, rate: float, duration_s: float, connections: int = 8) -> list[float]:
    """Requests at `rate` per second in all (spread over keep-alive connections): latencies."""
    raw = build_request(url, BODY, KEY)
    latencies: list[float] = []
    interval_s = connections / rate
    deadline = time.perf_counter() + duration_s

    async def client(offset_s: float) -> None:
        connection = await Connection.open(url)
        try:
            await connection.request(raw, stream=False)
            due = time.perf_counter() + offset_s
            while due < deadline:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sample = await connection.request(raw, stream=False)
                if sample.status != 200:
                    raise RuntimeError(f"request failed with {sample.status}")
                latencies.append(sample.total_s)
                due += interval_s
        finally:
            connection.close()

    await asyncio.gather(*(client(i * interval_s / connections) for i in range(connections)))
    return latencies


async def solving(root: str, stop: asyncio.Event) -> tuple[list[float], set[str]]:
    """POST /admin/optimiser/solve back to back until `stop`: wall seconds, statuses."""
    seconds: list[float] = []
    statuses: set[str] = set()
    async with httpx.AsyncClient(timeout=120) as client:
        while not stop.is_set():
            started = time.perf_counter()
            answer = await client.post(root + "/admin/optimiser/solve",
                                       headers={"authorization": f"Bearer {KEY}"})
            answer.raise_for_status()
            seconds.append(time.perf_counter() - started)
            statuses.add(answer.json()["status"])
            await asyncio.sleep(0.2)
    return seconds, statuses


async def measure(root: str, rate: float, duration_s: float, rounds: int) -> dict[str, Any]:
    """p99 without solves and during back-to-back solves, in alternating rounds.

    Alternating spreads whatever else the machine is doing over both phases alike.
    """
    quiet: list[float] = []
    busy: list[float] = []
    solve_s: list[float] = []
    statuses: set[str] = set()
    url = root + "/v1/chat/completions"
    for _ in range(rounds):
        quiet += await paced(url, rate, duration_s / rounds)
        stop = asyncio.Event()
        solves = asyncio.create_task(solving(root, stop))
        busy += await paced(url, rate, duration_s / rounds)
        stop.set()
        seconds, seen = await solves
        solve_s += seconds
        statuses |= seen
    return {"p99_quiet_ms": percentile_ms(quiet, 99), "p99_solving_ms": percentile_ms(busy, 99),
            "p50_quiet_ms": percentile_ms(quiet, 50), "p50_solving_ms": percentile_ms(busy, 50),
            "solves": len(solve_s), "solve_ms": 1000 * sorted(solve_s)[len(solve_s) // 2],
            "status": ",".join(sorted(statuses)), "requests": len(quiet) + len(busy)}


def main() -> int:
    """Run the benchmark; write a JSON summary next to the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of load per phase (quiet, solving), over all rounds")
    parser.add_argument("--rounds", type=int, default=6, help="alternations of the phases")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sprout-bench-"))
    postgres = PostgresServer()
    postgres.init()
    postgres.start()
    processes: list[ChildProcess] = []
    try:
        database_url = postgres.create_database()
        from proxy.accounting.migrate import upgrade_to_head
        upgrade_to_head(database_url)
        dsn = postgres.dsn(database_url.rsplit("/", 1)[1])
        copy_s = load_rows(dsn, args.rows)
        print(f"loaded {args.rows:,} ledger rows with COPY in {copy_s:.1f} s")
        stub_port = free_port()
        stub = ChildProcess(["-m", "proxy.fakes.responses_upstream", "--port", str(stub_port)],
                            f"http://127.0.0.1:{stub_port}/v1/models").start()
        processes.append(stub)
        results: dict[str, dict[str, Any]] = {}
        for label, reader in READERS.items():
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
            env |= {"PROXY_MASTER_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "PROXY_LEDGER_SPILL_PATH": str(work / f"{reader}-spill.jsonl"),
                    "PROXY_LEDGER_JOURNAL_DIR": str(work / f"{reader}-journal"),
                    "PROXY_OPTIMISER_INTERVAL_S": "86400"}  # solves only when the bench asks
            proxy = ChildProcess(
                [str(Path(__file__).resolve()), "--child", reader, "serve", "--upstream",
                 f"http://127.0.0.1:{stub_port}/v1", "--model", "fake-model", "--port",
                 str(port), "--database-url", database_url, "--log-level", "warning"],
                f"http://127.0.0.1:{port}/health", env=env, log_path=work / f"{reader}.log",
            ).start()
            processes.append(proxy)
            results[label] = asyncio.run(measure(f"http://127.0.0.1:{port}", args.rate,
                                                 args.duration, args.rounds))
            proxy.stop()
        lines = [f"ledger: {args.rows:,} rows over 192 h; load {args.rate:g} req/s, "
                 f"{args.duration:g} s per phase in {args.rounds} alternating rounds; "
                 f"{os.cpu_count()} cores shared, load average {os.getloadavg()[0]:.1f}",
                 "| optimiser reads | solve (median) | p99, no solve | p99 during solves | "
                 "added p99 | solves |", "|---|---|---|---|---|---|"]
        for label, r in results.items():
            lines.append(f"| {label} | {r['solve_ms']:.0f} ms | {r['p99_quiet_ms']:.1f} ms | "
                         f"{r['p99_solving_ms']:.1f} ms | "
                         f"{r['p99_solving_ms'] - r['p99_quiet_ms']:+.1f} ms | "
                         f"{r['solves']} ({r['status']}) |")
        print("\n".join(lines))
        if args.out:
            args.out.write_text(json.dumps({"rows": args.rows, "copy_s": copy_s,
                                            "results": results}, indent=2))
        return 0
    finally:
        for process in reversed(processes):
            process.stop()
        postgres.destroy()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(serve_child(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
