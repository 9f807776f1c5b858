"""Proxy overhead, side by side in one run: a stub upstream called directly, through
sprout-proxy (ledger on, PostgreSQL), and through the LiteLLM proxy (one worker, no database).

Scenarios: `chat` (chat completions, all three); `responses` (the Responses API through
sprout's translation to the stub's chat completions, against the stub's chat called
directly); `responses-native` (passed through to the stub's own /v1/responses, against that
called directly). Responses requests store their answer (the default), so that write counts.
Plain answers carry 5 tokens, streams `--stream-tokens` chunks (20).

    .venv/bin/python bench/overhead.py [--requests 1000] [--duration 8] [--concurrency 32]
        [--scenarios chat] [--baseline REV] [--no-pin] [--awake] [--rounds R]
        [--host-check S]

For each target: latency (streams: time to the first token) at c=1 and c=N as p50, p99 and
p99.9; throughput at c=N; the proxy's CPU per request (user + system, its process and its
children, from /proc); and a plot of every c=N request's latency against the time it was sent
(`overhead_timeline.png`), where an event-loop stall shows as a column of slow requests.
`--baseline REV` also runs sprout-proxy as of git revision REV (a throwaway worktree, the same
virtualenv), side by side. `--rounds R` measures every target R times, in the reverse order
each round, and reports the pooled samples (throughput: all requests over all run time). With
two or more cores the proxies under test share the last core and the stub and this load
generator the others (`--no-pin` to turn that off), as in #16.

The LiteLLM proxy runs from its own virtualenv (`--litellm-venv`, default .venv-bench; made with
`python3 -m venv .venv-bench && .venv-bench/bin/pip install 'litellm[proxy]'`) so its pins do not
touch the project's. All servers and the load generator share this machine: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import (  # noqa: E402
    CHAT_TOKEN,
    RESPONSES_TOKEN,
    Sample,
    build_request,
    closed_loop,
    median_ms,
    percentile_ms,
    sequential,
)
from bench.slow_spells import Span, host_speed, machine_speed, span_of  # noqa: E402
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
# "sprout" stands for every sprout target (this tree, and `--baseline`'s revision).
RUNS: list[tuple[str, str, str, dict[str, object], tuple[bytes, ...]]] = [
    ("chat", "direct", "/chat/completions", BODY, CHAT_TOKEN),
    ("chat", "sprout", "/chat/completions", BODY, CHAT_TOKEN),
    ("chat", "litellm", "/chat/completions", BODY, CHAT_TOKEN),
    ("responses", "sprout", "/responses", RESPONSES_BODY, RESPONSES_TOKEN),
    ("responses-native", "direct", "/responses", RESPONSES_BODY, RESPONSES_TOKEN),
    ("responses-native", "sprout", "/responses", RESPONSES_BODY | {"model": "fake-native"},
     RESPONSES_TOKEN),
]
# What the stream scenarios ask for instead of 5 tokens (one chunk per token).
STREAM_LENGTH = {"chat": "max_tokens", "responses": "max_output_tokens",
                 "responses-native": "max_output_tokens"}
BASELINES = {"chat": ("chat", "direct"), "responses": ("chat", "direct"),
             "responses-native": ("responses-native", "direct")}


@contextlib.contextmanager
def affinity(cpus: set[int] | None) -> Iterator[None]:
    """Processes started inside inherit `cpus` (None: no change)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


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


def waited_s(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but not running (schedstat).

    What another task on its core (a child, another process) or the host took from the event
    loop, robust to the host's noise where a percentile is not. 0 where schedstat is missing.
    """
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


# A busy loop at SCHED_IDLE on one CPU, so that the virtual CPU never halts (`--awake`). It
# enters the scheduler on every turn (sched_yield): one that only spun was not always
# preempted when a task on its CPU woke (in 5,000 streamed requests the stub waited 1.4 s for
# the CPU, 11% of its wake-ups 1.5-4 ms late); yielding, a woken task runs at once.
_SPIN = ("import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\n"
         "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n"
         "    os.sched_yield()\n")


@contextlib.contextmanager
def cpus_awake(cpus: list[int] | None) -> Iterator[None]:
    """While inside, each of `cpus` has an idle-class spinner (None: none).

    In a virtual machine an idle virtual CPU halts, and waking it for the next packet takes
    the host from tens of microseconds to milliseconds: at c=1 each request through a pinned
    proxy crosses cores four times. The spinners take only idle time, but on for the c=N runs
    too they cost the development machine 22% of the proxy's throughput (a busy CPU slows its
    hyperthread sibling on the host), so they are on for the c=1 runs only.
    """
    if cpus is None:
        yield
        return
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu)]) for cpu in cpus]
    try:
        time.sleep(0.2)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


async def measure(targets: dict[str, str], args: argparse.Namespace,
                  pids: dict[str, int] | None = None,
                  timelines: dict[tuple[str, str, str], list[Sample]] | None = None,
                  spans: list[Span] | None = None,
                  ) -> list[dict[str, object]]:
    """Each target at c=1 and c=N; CPU per request of the proxy's processes (from /proc).

    `spans` gets every sprout c=N run, for `machine_speed` to find its rows in the ledger.
    """
    pids = pids or {}
    results: list[dict[str, object]] = []
    n = args.concurrency
    for stream in (False, True):
        mode = "stream" if stream else "plain"
        for scenario in dict.fromkeys(run[0] for run in RUNS):
            if scenario not in args.scenarios:
                continue
            plan = [(name, path, document, token)
                    for run_scenario, kind, path, document, token in RUNS
                    if run_scenario == scenario
                    for name in targets
                    if name == kind or (kind == "sprout" and name.startswith("sprout"))]
            pooled: dict[str, dict[str, Any]] = {
                name: {"one": [], "many": [], "elapsed": 0.0, "wall": 0.0, "cpu": 0.0,
                       "waited": 0.0, "requests": 0} for name, *_ in plan}
            # With --rounds, every target runs once per round, the order reversed each
            # round (ABBA): a busy spell of the shared host falls on all of them alike.
            for round_ in range(args.rounds):
                for name, path, document, token in (plan if round_ % 2 == 0 else plan[::-1]):
                    extra = ({"stream": True, STREAM_LENGTH[scenario]: args.stream_tokens}
                             if stream else {})
                    body = json.dumps(document | extra).encode()
                    url = targets[name] + path
                    raw = build_request(url, body, KEY)
                    with cpus_awake(args.cpus if args.awake else None):
                        one = await sequential(url, raw, args.requests, stream=stream,
                                               token=token)
                    pid = pids.get(name)
                    cpu_before = cpu_s(pid) if pid else 0.0
                    waited_before = waited_s(pid) if pid else 0.0
                    started, wall_started = time.perf_counter(), time.time()
                    rps, many = await closed_loop(url, raw, n, args.duration,
                                                  stream=stream, token=token)
                    wall = time.perf_counter() - started
                    if spans is not None and name.startswith("sprout") and many:
                        spans.append(span_of(name, scenario, mode, many, wall_started - started))
                    cpu = cpu_s(pid) - cpu_before if pid else 0.0
                    into = pooled[name]
                    into["one"] += one
                    into["many"] += many
                    into["elapsed"] += len(many) / rps
                    into["wall"] += wall
                    into["cpu"] += cpu
                    if pid:
                        into["waited"] += waited_s(pid) - waited_before
                    into["requests"] += len(one) + len(many) + 20 + n
                    if timelines is not None and round_ == 0:
                        timelines[scenario, name, mode] = many
                    if args.rounds > 1:
                        first = [sample.ttfb_s for sample in one]
                        loaded = [sample.ttfb_s if stream else sample.total_s for sample in many]
                        print(f"  {scenario:16s} {name:15s} {mode:6s} (round {round_ + 1}) c=1 "
                              f"p50 {median_ms(first):.3f} p99 {percentile_ms(first, 99):.3f} ms;"
                              f" c={n} {rps:.0f} req/s p50 {median_ms(loaded):.1f} p99 "
                              f"{percentile_ms(loaded, 99):.1f} ms"
                              + (f"; CPU {cpu * 1000 / max(len(many), 1):.3f} ms/req"
                                 if pid else ""), flush=True)
            for name, *_ in plan:
                got = pooled[name]
                pid = pids.get(name)
                first = [sample.ttfb_s for sample in got["one"]]
                loaded = [sample.ttfb_s if stream else sample.total_s for sample in got["many"]]
                count = max(len(got["many"]), 1)
                row: dict[str, object] = {
                    "scenario": scenario, "target": name, "mode": mode, "rounds": args.rounds,
                    "c1_p50_ms": median_ms(first),
                    "c1_p99_ms": percentile_ms(first, 99),
                    "c1_p999_ms": percentile_ms(first, 99.9),
                    "c1_total_p50_ms": median_ms([sample.total_s for sample in got["one"]]),
                    f"c{n}_rps": len(got["many"]) / got["elapsed"],
                    f"c{n}_p50_ms": median_ms(loaded),
                    f"c{n}_p99_ms": percentile_ms(loaded, 99),
                    f"c{n}_p999_ms": percentile_ms(loaded, 99.9),
                    "requests": got["requests"],
                    "cpu_ms_per_request": got["cpu"] * 1000 / count if pid else None,
                    "cpu_wait_ms_per_s": got["waited"] * 1000 / got["wall"] if pid else None,
                }
                results.append(row)
                print(f"  {scenario:16s} {name:15s} {mode:6s} c=1 p50 {row['c1_p50_ms']:.3f} "
                      f"p99 {row['c1_p99_ms']:.3f} ms; c={n} {row[f'c{n}_rps']:.0f} req/s p50 "
                      f"{row[f'c{n}_p50_ms']:.1f} p99 {row[f'c{n}_p99_ms']:.1f} ms"
                      + (f"; CPU {row['cpu_ms_per_request']:.3f} ms/req" if pid else "")
                      + (f"; main thread waited for its CPU {row['cpu_wait_ms_per_s']:.0f}"
                         " ms/s" if pid else "")
                      + (f" ({args.rounds} rounds pooled)" if args.rounds > 1 else ""),
                      flush=True)
    return results


def report(results: list[dict[str, object]], concurrency: int) -> str:
    n = concurrency
    lines = []
    for mode in ("plain", "stream"):
        rows = {(str(r["scenario"]), str(r["target"])): r for r in results if r["mode"] == mode}
        if not rows:
            continue
        lines.append(f"\n{mode} ({'time to first token' if mode == 'stream' else 'latency'}"
                     f", ms; +: added to the direct stub's)")
        lines.append(f"{'scenario':17s} {'target':15s} {'c1 p50':>7s} {'p99':>7s} "
                     f"{'p99.9':>7s} {'+p50':>6s} {'+p99':>6s} {f'c{n} p50':>8s} {'p99':>7s} "
                     f"{'p99.9':>7s} {'req/s':>7s} {'vs litellm':>10s} {'CPU ms/req':>10s}")
        litellm = rows.get(("chat", "litellm"))
        for (scenario, name), row in rows.items():
            direct = rows.get(BASELINES[scenario], row)
            v = {k: float(x) for k, x in row.items()  # type: ignore[arg-type]
                 if isinstance(x, int | float) and not isinstance(x, bool)}
            ratio = f"{v[f'c{n}_rps'] / float(litellm[f'c{n}_rps']):.1f}x" if litellm else ""  # type: ignore[arg-type]
            cpu = row.get("cpu_ms_per_request")
            cpu_text = f"{float(cpu):10.3f}" if cpu is not None else f"{'':>10s}"  # type: ignore[arg-type]
            lines.append(
                f"{scenario:17s} {name:15s} {v['c1_p50_ms']:7.3f} {v['c1_p99_ms']:7.3f} "
                f"{v['c1_p999_ms']:7.3f} {v['c1_p50_ms'] - float(direct['c1_p50_ms']):+6.2f} "  # type: ignore[arg-type]
                f"{v['c1_p99_ms'] - float(direct['c1_p99_ms']):+6.2f} "  # type: ignore[arg-type]
                f"{v[f'c{n}_p50_ms']:8.2f} {v[f'c{n}_p99_ms']:7.2f} {v[f'c{n}_p999_ms']:7.2f} "
                f"{v[f'c{n}_rps']:7.0f} {ratio:>10s} {cpu_text}")
    return "\n".join(lines)


def targets_met(results: list[dict[str, object]], concurrency: int) -> str:
    """#16's targets for each sprout target, chat scenario, as measured in this run."""
    n = concurrency
    rows = {(str(r["target"]), str(r["mode"])): r for r in results if r["scenario"] == "chat"}
    lines = ["\ntargets (#16), chat:"]

    def f(target: str, mode: str, key: str) -> float:
        return float(rows[target, mode][key])  # type: ignore[arg-type]

    for target in sorted({t for t, _ in rows if t.startswith("sprout")}):
        # (what, measured, limit, whether the measure must stay at or under the limit)
        checks: list[tuple[str, float, float, bool]] = [
            (f"c={n} plain: p99 <= 2 x p50 (ms)", f(target, "plain", f"c{n}_p99_ms"),
             2 * f(target, "plain", f"c{n}_p50_ms"), True)]
        if ("direct", "plain") in rows:
            checks.append((f"c={n} plain: p99 <= direct's + 10 ms",
                           f(target, "plain", f"c{n}_p99_ms"),
                           f("direct", "plain", f"c{n}_p99_ms") + 10, True))
            checks.append(("c=1 plain: p99 <= direct's + 1.5 ms", f(target, "plain", "c1_p99_ms"),
                           f("direct", "plain", "c1_p99_ms") + 1.5, True))
        for mode, limit in (("plain", 0.4), ("stream", 0.8)):
            cpu = rows[target, mode].get("cpu_ms_per_request")
            if cpu is not None:
                checks.append((f"CPU per request, {mode} (ms)", float(cpu), limit, True))  # type: ignore[arg-type]
            if ("litellm", mode) in rows:
                checks.append((f"c={n} {mode}: req/s, times LiteLLM's",
                               f(target, mode, f"c{n}_rps") / f("litellm", mode, f"c{n}_rps"),
                               25.0, False))
        for what, measured, limit, at_most in checks:
            met = measured <= limit if at_most else measured >= limit
            lines.append(f"  {target:15s} {what:40s} {measured:9.3f} {'<=' if at_most else '>='}"
                         f" {limit:9.3f}  {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def stop_litellm(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def plot_timelines(timelines: dict[tuple[str, str, str], list[Sample]], path: Path) -> None:
    """Every c=N request's latency against when it was sent: stalls are columns of dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(timelines)
    figure, axes = plt.subplots(len(keys), 1, figsize=(10, 2.2 * len(keys)), squeeze=False)
    for axis, key in zip(axes[:, 0], keys, strict=True):
        samples = timelines[key]
        if not samples:
            continue
        origin = min(s.at_s for s in samples)
        stream = key[2] == "stream"
        axis.scatter([s.at_s - origin for s in samples],
                     [(s.ttfb_s if stream else s.total_s) * 1000 for s in samples], s=1)
        axis.set_yscale("log")
        axis.set_title(" / ".join(key), fontsize=9)
        axis.set_ylabel("ms")
    axes[-1, 0].set_xlabel("seconds into the c=N run")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def start_sprout(root: Path, stub_url: str, database_url: str, work: Path, name: str,
                 settings: list[str]) -> ChildProcess:
    """sprout-proxy from the source tree at `root` (this one, or a baseline's worktree)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env |= {"PROXY_MASTER_KEY": KEY, "PROXY_LEDGER_SPILL_PATH": str(work / f"{name}-spill.jsonl"),
            "PROXY_LEDGER_JOURNAL_DIR": str(work / f"{name}-journal"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(root),
            # A second pool over the same stub that serves /v1/responses natively.
            "PROXY_POOLS": json.dumps([{
                "name": "native", "kind": "openai", "base_urls": [stub_url],
                "endpoints": ["responses"],
                "models": [{"name": "fake-native", "upstream_name": "fake-model"}]}])}
    env |= dict(setting.split("=", 1) for setting in settings)
    process = ChildProcess(
        ["-m", "proxy", "serve", "--upstream", stub_url, "--model", "fake-model",
         "--port", str(port), "--database-url", database_url, "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health", env=env, log_path=work / f"{name}.log", cwd=root,
    ).start()
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="sequential requests (c=1)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per c=N run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every target this many times, the order reversed each round, "
                             "and pool the samples")
    parser.add_argument("--stream-tokens", type=int, default=20, help="chunks per stream")
    parser.add_argument("--scenarios", default="chat,responses,responses-native",
                        help="comma-separated: chat, responses, responses-native")
    parser.add_argument("--baseline", metavar="REV", action="append", default=[],
                        help="also measure sprout-proxy at this git revision (repeatable)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not give the proxies under test a core of their own")
    parser.add_argument("--awake", action="store_true",
                        help="keep every CPU from halting during the c=1 runs (idle-class "
                             "spinners): a virtual machine's slow wake-ups out of the figures")
    parser.add_argument("--litellm-venv", type=Path, default=ROOT / ".venv-bench")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--proxy-setting", action="append", default=[], metavar="PROXY_X=V",
                        help="an environment setting for sprout-proxy (repeatable), e.g. "
                             "PROXY_SETTLEMENT_INTERVAL_S=3600 to see what settlement costs")
    parser.add_argument("--stall-ms", type=float, default=20.0,
                        help="the event-loop lag sprout-proxy counts as a stall")
    parser.add_argument("--host-check", type=float, default=0.0, metavar="S",
                        help="before and after measuring, time the machine itself for S seconds "
                             "on the proxies' core (bench/host_speed.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    args.proxy_setting = [f"PROXY_LOOP_STALL_WARN_MS={args.stall_ms:g}", *args.proxy_setting]
    args.scenarios = set(args.scenarios.split(","))

    cpus = sorted(os.sched_getaffinity(0))
    args.cpus = cpus  # every CPU this bench may use (--awake), before any pinning
    pinned = not args.no_pin and len(cpus) >= 2
    proxy_cpus = {cpus[-1]} if pinned else None
    load_cpus = set(cpus[:-1]) if pinned else None
    host_lines = host_speed(args.host_check, cpus[-1], "before") if args.host_check else []
    work = Path(tempfile.mkdtemp(prefix="sprout-bench-"))
    postgres = PostgresServer()
    postgres.init()
    with affinity(load_cpus):  # the database, like the stub, off the proxies' core
        postgres.start()
    processes: list[ChildProcess] = []
    worktrees: list[Path] = []
    litellm = None
    try:
        stub_port = free_port()
        with affinity(load_cpus):
            # The scripted upstream that also serves /v1/responses itself.
            stub = ChildProcess(["-m", "proxy.fakes.responses_upstream", "--port",
                                 str(stub_port)], f"http://127.0.0.1:{stub_port}/v1/models",
                                cwd=ROOT).start()
        processes.append(stub)
        stub_url = f"http://127.0.0.1:{stub_port}/v1"
        trees = {"sprout": ROOT}
        for rev in args.baseline:
            tree = work / f"baseline-{rev}"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                           check=True, capture_output=True)
            worktrees.append(tree)
            trees[f"sprout@{rev[:10]}"] = tree
        targets = {"direct": stub_url}
        pids: dict[str, int] = {}
        databases: dict[str, str] = {}
        sprouts: dict[str, ChildProcess] = {}
        with affinity(proxy_cpus):
            for name, tree in trees.items():
                databases[name] = postgres.create_database()
                sprout = start_sprout(tree, stub_url, databases[name], work,
                                      name.replace("@", "-"), args.proxy_setting)
                processes.append(sprout)
                sprouts[name] = sprout
                targets[name] = sprout.url + "/v1"  # type: ignore[attr-defined]
                assert sprout.process is not None
                pids[name] = sprout.process.pid
            litellm = None if args.skip_litellm else start_litellm(args.litellm_venv, stub_url,
                                                                   work)
        if litellm is not None:
            targets["litellm"] = litellm.url  # type: ignore[attr-defined]
            pids["litellm"] = litellm.pid
        print(f"measuring {', '.join(targets)} (this machine: {os.cpu_count()} cores; "
              + (f"proxies on CPU {sorted(proxy_cpus or ())}, stub and load on "
                 f"{sorted(load_cpus or ())})" if pinned else "not pinned)")
              + ("; c=1 with every CPU kept awake" if args.awake else ""), flush=True)
        timelines: dict[tuple[str, str, str], list[Sample]] = {}
        spans: list[Span] = []
        with affinity(load_cpus):
            results = asyncio.run(measure(targets, args, pids, timelines, spans))

        ledger_lines: list[str] = []
        speed_lines: list[str] = []
        for name, sprout in sprouts.items():
            sent = sum(int(r["requests"]) for r in results if r["target"] == name)  # type: ignore[call-overload]
            ledger = wait_rows(databases[name], sent, timeout_s=60)
            rows = len(ledger)
            try:
                speed_lines += machine_speed(name, ledger, spans, args.concurrency)
            except Exception as exc:  # the report matters more than this line
                speed_lines.append(f"{name}: slow spells not worked out ({exc!r})")
            health = httpx.get(sprout.url + "/health").json()  # type: ignore[attr-defined]
            loop = health.get("event_loop")  # older revisions have no loop watch
            ledger_lines.append(
                f"{name} ledger: {rows} rows for {sent} requests, "
                f"dropped_rows={health['ledger']['dropped_rows']}"
                + (f"; event loop: worst lag {loop['max_lag_ms']} ms, {loop['stalls']} lags "
                   f"over {args.stall_ms:g} ms" if loop else ""))
        table = report(results, args.concurrency)
        summary = "\n".join([table, targets_met(results, args.concurrency), "", *ledger_lines,
                             *(["", f"slow spells (plain, c={args.concurrency}):", *speed_lines]
                               if speed_lines else [])])
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "overhead.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for r in results for k in r}))
            writer.writeheader()
            writer.writerows(results)
        (args.out / "overhead.txt").write_text(summary + "\n")
        plot_timelines(timelines, args.out / "overhead_timeline.png")
        if args.host_check:  # the machine alone again (the database idle), then the report
            for process in processes:
                process.stop()
            stop_litellm(litellm)
            litellm = None
            host_lines += host_speed(args.host_check, cpus[-1], "after")
            summary += "\n".join(["", "", "the machine alone (bench/host_speed.py):",
                                   *host_lines])
            (args.out / "overhead.txt").write_text(summary + "\n")
        print(summary)
    finally:
        for process in processes:
            process.stop()
        stop_litellm(litellm)
        postgres.destroy()
        for tree in worktrees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
