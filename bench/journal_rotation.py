"""What a journal segment's rotation costs the event loop, this tree against a revision.

An event loop appends real journal lines at `--rate` rows a second, in bursts of 50 every
5 ms, and syncs the journal once a second from a worker thread, as the ledger writer does,
while a 2 ms timer measures how late the loop runs. Each `Journal._rotate` call (on the loop,
inside `append_line`) is timed. Each tree runs in a fresh interpreter, one after the other,
with the segment directory under `var/`, on the disk the proxy's journal uses.

    .venv/bin/python bench/journal_rotation.py [--seconds 12] [--rate 10000]
        [--baseline REV] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import asyncio, json, shutil, sys, tempfile, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from proxy.accounting.journal import Journal
    from proxy.accounting.record import journal_line
    sys.path.append(sys.argv[2])  # this tree's test helpers, if the tree has none
    from tests.support.ledger import full_row

    seconds, rate, var = float(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    rotations = []
    rotate = Journal._rotate

    def timed(self):
        started = time.perf_counter()
        rotate(self)
        rotations.append((time.perf_counter() - started) * 1e3)

    Journal._rotate = timed

    async def main():
        directory = Path(tempfile.mkdtemp(dir=var))
        journal = Journal(directory)
        journal.open()
        rotations.clear()  # the first segment, made before serving
        line = journal_line(full_row("bench-row"))
        lags, stop = [], time.perf_counter() + seconds
        loop = asyncio.get_running_loop()

        async def watch():
            while time.perf_counter() < stop:
                due = loop.time() + 0.002
                await asyncio.sleep(0.002)
                lags.append((loop.time() - due) * 1e3)

        async def append():
            rows, synced = 0, time.monotonic()
            while time.perf_counter() < stop:
                for _ in range(50):
                    journal.append_line(line)
                rows += 50
                await asyncio.sleep(50 / rate)
                if time.monotonic() - synced >= 1.0:
                    synced = time.monotonic()
                    await asyncio.to_thread(journal.sync)
            return rows

        _, rows = await asyncio.gather(watch(), append())
        journal.close(all_written=True)
        shutil.rmtree(directory, ignore_errors=True)
        lags.sort()
        print(json.dumps({"rows": rows, "rotations": rotations,
                          "lag_p99_ms": lags[int(0.99 * (len(lags) - 1))], "lag_max_ms": lags[-1]}))

    asyncio.run(main())
""")


def run(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(ROOT), str(args.seconds),
                          str(args.rate), str(var)], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rate", type=int, default=10_000, help="rows a second")
    parser.add_argument("--baseline", help="also measure this git revision (a worktree)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    with tempfile.TemporaryDirectory(prefix="journal-bench-") as scratch:
        if args.baseline:
            tree = Path(scratch) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
                            args.baseline], check=True, capture_output=True)
            trees[args.baseline] = tree
        try:
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
            for _ in range(args.rounds):  # alternating, so that a busy moment hits both
                for name, tree in trees.items():
                    results[name].append(run(tree, args))
            for name, runs in results.items():
                rotations = [ms for r in runs for ms in r["rotations"]]
                print(f"{name:>12}: {sum(r['rows'] for r in runs):,} rows ({args.rate:,}/s), "
                      f"{len(rotations)} rotations on the loop: median "
                      f"{statistics.median(rotations):.2f} ms, max {max(rotations):.2f} ms; "
                      f"loop lag p99 {max(r['lag_p99_ms'] for r in runs):.2f} ms, "
                      f"max {max(r['lag_max_ms'] for r in runs):.2f} ms")
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(trees[args.baseline])], check=False, capture_output=True)


if __name__ == "__main__":
    main()
