"""A long soak: paced open-loop traffic through a real proxy process (PostgreSQL ledger) while
its resident memory is sampled; the figures issue #14 asked for (RSS over 10 minutes at
300 req/s, nothing lost). tests/e2e/test_soak.py runs two minutes of the same in CI.

    .venv/bin/python bench/soak.py [--rate 300] [--minutes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fleet import MASTER_KEY, replica  # noqa: E402
from tests.support.ledger import wait_rows  # noqa: E402
from tests.support.postgres import PostgresServer, free_port  # noqa: E402
from tests.support.servers import ChildProcess  # noqa: E402
from tests.support.soak import soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=300.0, help="requests a second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sprout-soak-"))
    postgres = PostgresServer()
    postgres.init()
    postgres.start()
    port = free_port()
    stub = ChildProcess(["-m", "proxy.fakes.responses_upstream", "--port", str(port)],
                        f"http://127.0.0.1:{port}/v1/models", cwd=ROOT).start()
    database_url = postgres.create_database()
    proxy = replica(work, "soak", database_url, upstream=f"http://127.0.0.1:{port}/v1",
                    env={"PROXY_REPLICA_HEARTBEAT_S": "1.0", "PROXY_SETTLEMENT_INTERVAL_S": "2.0",
                         "PROXY_METER_SAMPLE_S": "0.5"})  # production's intervals
    proxy.process.start()
    try:
        assert proxy.process.process is not None
        result = asyncio.run(soak(proxy.url, MASTER_KEY, proxy.process.process.pid,
                                  rate=args.rate, duration_s=args.minutes * 60,
                                  rss_every_s=30.0))
        health = proxy.health()
        rows = len(wait_rows(database_url, result.sent, timeout_s=120))
    finally:
        proxy.stop()
        stub.stop()
        postgres.destroy()
    ordered = sorted(result.latencies_s)
    lines = [f"soak: {result.sent} requests at {args.rate:g}/s for {args.minutes:g} min; "
             f"statuses {result.statuses}; {result.late} not sent on time",
             f"ledger: {rows} rows, dropped_rows={health['ledger']['dropped_rows']}",
             f"latency p50 {statistics.median(ordered) * 1000:.2f} ms, "
             f"p99 {ordered[int(0.99 * (len(ordered) - 1))] * 1000:.2f} ms",
             "RSS (MiB) by minute: " + ", ".join(
                 f"{seconds / 60:.1f}: {mib:.0f}" for seconds, mib in result.rss),
             f"RSS from 0.5 min to the end: {result.rss_at(30.0):.0f} -> "
             f"{result.rss[-1][1]:.0f} MiB "
             f"({(result.rss[-1][1] / result.rss_at(30.0) - 1) * 100:+.1f}%)"]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
