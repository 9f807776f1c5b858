"""The ledger writer's cost per row on PostgreSQL: the JSON path against COPY, side by side.

Each round writes the same number of fully populated rows through a `LedgerWriter` with its
journal, once per path, each in a fresh interpreter against a fresh database of one
PostgreSQL server, and reads the process's CPU time (`submit` on the loop and the batch
inserts in the worker thread: what competes with the event loop for the GIL).

    .venv/bin/python bench/ledger_writer.py [--rows 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.accounting.db import make_engine  # noqa: E402
from proxy.accounting.journal import Journal  # noqa: E402
from proxy.accounting.ledger_writer import LedgerWriter  # noqa: E402
from proxy.accounting.migrate import upgrade_to_head  # noqa: E402
from proxy.accounting.spill import SpillFile  # noqa: E402
from tests.support.ledger import full_row  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

PATHS = ("copy", "json")


def measure(url: str, path: str, count: int) -> dict[str, float]:
    """In the child: CPU and wall time to submit and write `count` rows through `path`."""
    upgrade_to_head(url)
    engine = make_engine(url)
    work = Path(tempfile.mkdtemp(prefix="sprout-ledger-bench-"))
    journal = Journal(work / "journal")
    journal.open()
    rows = [full_row(f"{path}-{uuid.uuid4().hex}", captured_request=None)
            for _ in range(count)]

    async def run() -> dict[str, float]:
        writer = LedgerWriter(engine, SpillFile(work / "spill.jsonl"), journal,
                              queue_size=count + 1, batch_size=500, retry_interval_s=1.0)
        if path == "copy":
            writer._json_append = None  # the path every batch took before
        writer.start()
        cpu, wall = time.process_time(), time.perf_counter()
        for row in rows:
            writer.submit(row)
        await writer.flush()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert writer.stats.written_rows == count and writer.stats.sanitised_batches == 0
        await writer.aclose()
        return {"cpu_us_per_row": cpu / count * 1e6, "wall_s": wall}

    try:
        return asyncio.run(run())
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("URL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.rows)))
        return 0
    postgres = PostgresServer()
    postgres.init()
    postgres.start()
    found: dict[str, list[float]] = {path: [] for path in PATHS}
    try:
        for _ in range(args.rounds):
            for path in PATHS:
                result = subprocess.run(
                    [sys.executable, __file__, "--rows", str(args.rows), "--child",
                     postgres.create_database(), path],
                    check=True, capture_output=True, text=True)
                found[path].append(json.loads(result.stdout.splitlines()[-1])["cpu_us_per_row"])
    finally:
        postgres.stop()
    for path in PATHS:
        print(f"{path}: {statistics.median(found[path]):.1f} µs CPU per row "
              f"(rounds: {', '.join(f'{v:.1f}' for v in found[path])})")
    print(f"json / copy: {statistics.median(found['json']) / statistics.median(found['copy']):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
