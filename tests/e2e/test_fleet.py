"""The proxy as deployed: several replica processes on one PostgreSQL in front of real workers.

Each test starts `sprout-proxy serve` processes (and, where energy is checked, torch workers
serving the tiny demo model: random weights, meaningless text) on 127.0.0.1.
"""

from __future__ import annotations

import collections
import concurrent.futures
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, select, text

from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import alembic_config
from proxy.accounting.tables import energy_samples, energy_windows, requests
from proxy.fakes.upstream import Behaviour
from tests.conftest import Fake
from tests.support.fleet import MASTER_KEY, Replica, RoundRobinFront, replica, write_pools
from tests.support.ledger import rows, wait_rows
from tests.support.postgres import free_port
from tests.support.servers import ChildProcess, ServerThread

MODEL = "sprout-demo-tiny"
MESSAGES = [{"role": "user", "content": "Explain the grid in a sentence."}]
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


def _worker(model_dir: Path, tmp_path: Path, name: str, meter: str, device_id: str) -> ChildProcess:
    port = free_port()
    return ChildProcess(
        ["-m", "worker", "--model", str(model_dir), "--served-name", MODEL, "--port", str(port),
         "--meter", meter, "--device-id", device_id, "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health", log_path=tmp_path / f"{name}.log")


def _url(process: ChildProcess) -> str:
    return process.health_url.removesuffix("/health")


def _start_all(replicas: list[Replica]) -> None:
    """Start every replica at the same moment, then wait for each."""
    errors: list[BaseException] = []

    def start(one: Replica) -> None:
        try:
            one.process.start(timeout_s=120)
        except BaseException as exc:  # reported below with the replica's log
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(one,)) for one in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _query(database_url: str, statement: Any) -> list[Any]:
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(statement))
    finally:
        engine.dispose()


def _wait_device_settled(database_url: str, device_prefix: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        (open_rows,) = _query(database_url, select(func.count()).select_from(requests).where(
            requests.c.device_id.like(device_prefix + "%"), requests.c.settled_at.is_(None)))[0]
        if open_rows == 0:
            return
        assert time.monotonic() < deadline, f"{open_rows} rows still unsettled"
        time.sleep(0.5)


def _wait_sampled(database_url: str, device_id: str, timeout_s: float = 60) -> None:
    """Until the leader's sampler has read the device twice (its first window exists)."""
    deadline = time.monotonic() + timeout_s
    while True:
        (count,) = _query(database_url, select(func.count()).select_from(energy_samples).where(
            energy_samples.c.device_id == device_id))[0]
        if count >= 2:
            return
        assert time.monotonic() < deadline, f"the sampler never read {device_id}"
        time.sleep(0.2)


def _traffic(one: Replica, index: int) -> str:
    """One request of a mix: plain, streamed, disconnected mid-stream, upstream error."""
    client = one.client(timeout=60)
    kind = index % 5
    if kind in (0, 4):
        client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                       max_tokens=6 if kind == 0 else 12)
        return "ok"
    if kind == 1:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8,
                                                stream=True)
        for _ in stream:
            pass
        return "ok"
    if kind == 2:
        # Long enough that the answer cannot be complete (and so rightly `ok`) by the time the
        # client's close reaches the proxy, however loaded the machine.
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=512,
                                                stream=True)
        next(iter(stream))
        stream.close()  # the client leaves mid-stream
        return "client_disconnect"
    try:  # the worker takes one prompt per request: an upstream 400, after the device saw it
        client.completions.create(model=MODEL, prompt=["one", "two"], max_tokens=4)
    except openai.BadRequestError:
        return "upstream_error"
    raise AssertionError("the worker accepted two prompts")


@pytest.mark.worker
@pytest.mark.postgres
def test_three_replicas_two_workers_one_counter_conserve_energy(
        demo_model_dir: Path, tmp_path: Path, pg_url: str) -> None:
    # Two workers on one simulated 100 W device whose counter both read (fake-wall: the
    # wall clock, so every process sees the same joules), behind three proxy replicas.
    workers = [_worker(demo_model_dir, tmp_path, f"w{i}", "fake-wall:100", "shared-gpu-0")
               for i in range(2)]
    for process in workers:
        process.start()
    pools = write_pools(tmp_path / "pools.yaml", [{
        "name": "gpus", "kind": "worker", "base_urls": [_url(w) + "/v1" for w in workers],
        "models": [MODEL], "max_concurrency": 16, "read_timeout_s": 60,
        "accounting": {"hardware": "cpu"}}])
    replicas = [replica(tmp_path, f"r{i}", pg_url, pools_file=pools) for i in range(3)]
    try:
        _start_all(replicas)  # at once, on an empty database: the migrations are serialised
        _wait_sampled(pg_url, "shared-gpu-0")  # (a row older than the first sample: estimated)
        jobs = [(one, i) for i in range(10) for one in replicas]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(lambda job: _traffic(*job), jobs))
        found = wait_rows(pg_url, len(jobs), timeout_s=30)
        _wait_device_settled(pg_url, "shared-gpu-0")
        found = rows(pg_url)
        windows = _query(pg_url, select(
            func.sum(energy_windows.c.metered_j), func.sum(energy_windows.c.attributed_j),
            func.sum(energy_windows.c.idle_j), func.min(energy_windows.c.start_at),
            func.max(energy_windows.c.end_at)).where(
            energy_windows.c.device_id == "shared-gpu-0"))[0]
        leaders = [one.health()["replica"]["leader"] for one in replicas]
    finally:
        for one in replicas:
            one.stop()
        for process in workers:
            process.stop()

    assert len(found) == len(jobs)  # one row per request, through whichever replica
    assert collections.Counter(r["status"] for r in found) == collections.Counter(outcomes)
    assert sum(leaders) == 1  # exactly one process samples and settles
    served = [r for r in found if r["device_id"] == "shared-gpu-0"]
    assert len(served) == len(jobs)
    assert {r["energy_method"] for r in served} <= {"measured", "apportioned"}, sorted(
        (str(r["served_at"]), str(r["ended_at"]), r["energy_method"], r["status"]) for r in served)
    metered_j, attributed_j, idle_j, first, last = windows
    rows_j = sum(r["energy_j"] for r in served)
    # Every joule metered once: the windows tile the counter, rows + idle = metered.
    assert metered_j == pytest.approx(100.0 * (last - first).total_seconds(), rel=0.01)
    assert rows_j + idle_j == pytest.approx(metered_j, rel=0.01)
    assert rows_j == pytest.approx(attributed_j, rel=1e-6)
    assert all(r["operational_g_co2e"] == pytest.approx(
        r["energy_j"] / 3.6e6 * r["ci_g_per_kwh"] * r["pue"]) for r in served)


@pytest.mark.worker
def test_workers_behind_one_url_each_row_names_the_device_that_served_it(
        start_proxy, demo_model_dir: Path, tmp_path: Path) -> None:
    workers = [_worker(demo_model_dir, tmp_path, "a", "fake-wall:60", "host-a/gpu-a"),
               _worker(demo_model_dir, tmp_path, "b", "fake-wall:140", "host-b/gpu-b")]
    for process in workers:
        process.start()
    front = ServerThread(RoundRobinFront([_url(w) for w in workers])).start()
    try:
        database_url = f"sqlite:///{tmp_path}/ledger.db"
        from proxy.pools.config import PoolConfig

        pool = PoolConfig(name="svc", kind="worker", base_urls=[front.url], models=[MODEL],
                          read_timeout_s=60)
        proxy = start_proxy([pool], database_url, settlement_interval_s=1.0,
                            settlement_margin_s=0.5, meter_sample_s=0.25)
        time.sleep(1.5)
        client = proxy.client(timeout=60)
        for _ in range(12):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)
        wait_rows(database_url, 12)
        _wait_device_settled(database_url, "host-")
        found = rows(database_url)
        served = {httpx.get(w.health_url).json()["device_id"]:
                  httpx.get(w.health_url).json()["served_requests"] for w in workers}
        devices = {d["device_id"]: d for d in httpx.get(
            proxy.root + "/admin/pools", headers={"authorization": "Bearer sk-test-master-key"}
        ).json()[0]["devices"]}
    finally:
        front.stop()
        for process in workers:
            process.stop()

    assert collections.Counter(r["device_id"] for r in found) == served
    assert set(served) == {"host-a/gpu-a", "host-b/gpu-b"}
    for name in served:  # each device's own counter, split among its own rows
        device = devices[name]
        assert device["available"] and device["metered_j"] > 0
        mine = [r for r in found if r["device_id"] == name]
        assert {r["energy_method"] for r in mine} <= {"measured", "apportioned"}
        assert sum(r["energy_j"] for r in mine) == pytest.approx(device["attributed_j"],
                                                                 rel=1e-6)
        assert device["attributed_j"] + device["idle_j"] == pytest.approx(device["metered_j"])


@pytest.mark.postgres
def test_replicas_started_together_on_an_empty_database_all_come_up(
        fake: Fake, tmp_path: Path, pg_url: str) -> None:
    replicas = [replica(tmp_path, f"r{i}", pg_url, upstream=fake.url) for i in range(3)]
    try:
        _start_all(replicas)
        for one in replicas:
            assert one.client().models.list().data[0].id == "fake-model"
        (version,) = _query(pg_url, text("SELECT version_num FROM alembic_version"))[0]
    finally:
        for one in replicas:
            one.stop()
    assert version == ScriptDirectory.from_config(alembic_config(pg_url)).get_current_head()


@pytest.mark.postgres
def test_a_key_revoked_on_one_replica_is_refused_on_another_within_5_s(
        fake: Fake, tmp_path: Path, pg_url: str) -> None:
    a, b = (replica(tmp_path, name, pg_url, upstream=fake.url) for name in ("a", "b"))
    try:
        _start_all([a, b])
        created = httpx.post(a.root + "/admin/keys", headers=ADMIN, json={"name": "team"}).json()
        key = created["key"]
        deadline = time.monotonic() + 5
        while True:  # a new key is honoured everywhere within seconds too
            try:
                b.client(key).chat.completions.create(model="fake-model", messages=MESSAGES)
                break
            except openai.AuthenticationError:
                assert time.monotonic() < deadline, "replica B never accepted the new key"
                time.sleep(0.2)
        revoked_at = time.monotonic()
        assert httpx.delete(a.root + f"/admin/keys/{created['key_id']}",
                            headers=ADMIN).status_code == 200
        while True:
            try:
                b.client(key).chat.completions.create(model="fake-model", messages=MESSAGES)
            except openai.AuthenticationError as exc:
                assert exc.status_code == 401
                break
            assert time.monotonic() - revoked_at < 5, "replica B still accepts a revoked key"
            time.sleep(0.2)
    finally:
        a.stop()
        b.stop()
    assert time.monotonic() - revoked_at < 5


@pytest.mark.postgres
def test_a_fleet_wide_limit_of_k_holds_across_three_replicas(
        fake: Fake, tmp_path: Path, pg_url: str) -> None:
    limit = 4
    pools = write_pools(tmp_path / "pools.yaml", [{
        "name": "narrow", "kind": "openai", "base_urls": [fake.url], "models": ["fake-model"],
        "max_concurrency": limit, "max_queue": 100, "read_timeout_s": 30}])
    replicas = [replica(tmp_path, f"r{i}", pg_url, pools_file=pools) for i in range(3)]
    fake.app.script(default=Behaviour(delay_s=0.4))
    try:
        _start_all(replicas)
        deadline = time.monotonic() + 10
        while sorted(one.health()["pools"][0]["replica_share"] for one in replicas) != [1, 1, 2]:
            assert time.monotonic() < deadline, "shares did not converge"
            time.sleep(0.2)
        fake.app.stats.max_active = 0

        def call(one: Replica) -> int:
            answer = one.client(timeout=60).chat.completions.with_raw_response.create(
                model="fake-model", messages=MESSAGES)
            return answer.http_response.status_code

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(call, [one for one in replicas for _ in range(8)]))
    finally:
        for one in replicas:
            one.stop()
    assert statuses == [200] * 24
    assert 2 <= fake.app.stats.max_active <= limit


@pytest.mark.postgres
def test_a_replica_killed_under_load_loses_no_answered_request(
        fake: Fake, tmp_path: Path, pg_url: str) -> None:
    # Rows linger a second in memory before their batch is written, so a kill finds many.
    env = {"PROXY_LEDGER_LINGER_S": "1.0"}
    a = replica(tmp_path, "a", pg_url, upstream=fake.url, env=env)
    b = replica(tmp_path, "b", pg_url, upstream=fake.url)
    a.process.start()  # A first, so A leads: its settlement child must not outlive it
    deadline = time.monotonic() + 20
    while not a.health()["replica"]["leader"]:
        assert time.monotonic() < deadline, "replica A never led"
        time.sleep(0.2)
    b.process.start()
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(target: Replica) -> None:
        client = httpx.Client(timeout=10)
        while not stop.is_set():
            try:
                answer = client.post(target.url + "/chat/completions", headers=ADMIN, json={
                    "model": "fake-model", "messages": MESSAGES})
            except httpx.HTTPError:
                continue  # the replica is gone: nothing was answered
            if answer.status_code == 200:
                with lock:
                    answered.append(answer.headers["x-request-id"])
        client.close()

    threads = [threading.Thread(target=load, args=(target,)) for target in (a, a, a, b)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(3.0)
        children = _children(a.process.process.pid)  # type: ignore[union-attr]
        assert children  # the settlement child (and multiprocessing's resource tracker)
        a.kill()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in children):  # e.g. settlement's
            assert time.monotonic() < deadline, "the killed replica left processes behind"
            time.sleep(0.2)
        restarted = replica(tmp_path, "a2", pg_url, upstream=fake.url, var=a.var)
        restarted.process.start()
        replayed = restarted.health()["ledger"]["journal_replayed_rows"]
        wait_rows(pg_url, len(answered), timeout_s=20)
        stored = {r["request_id"] for r in rows(pg_url)}
    finally:
        stop.set()
        b.stop()
        a.stop()
        if "restarted" in locals():
            restarted.stop()
    missing = set(answered) - stored
    assert len(answered) > 100 and not missing, f"{len(missing)} answered requests lack a row"
    assert replayed > 0  # the killed process's journal held rows the database did not


def test_serve_workers_runs_several_processes_with_one_leader(fake: Fake, tmp_path: Path) -> None:
    port = free_port()
    database_url = f"sqlite:///{tmp_path}/ledger.db"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PROXY_")}
    env |= {"PROXY_MASTER_KEY": MASTER_KEY, "PROXY_LEDGER_JOURNAL_DIR": str(tmp_path / "j"),
            "PROXY_MASTER_KEY_FILE": str(tmp_path / "mk"),
            "PROXY_LEDGER_SPILL_PATH": str(tmp_path / "spill.jsonl")}
    process = subprocess.Popen(
        [__import__("sys").executable, "-m", "proxy", "serve", "--workers", "2", "--port",
         str(port), "--upstream", fake.url, "--database-url", database_url,
         "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        replicas: dict[str, bool] = {}
        while len(replicas) < 2:  # both processes answer on the one port
            assert time.monotonic() < deadline, f"saw {replicas}"
            try:
                health = httpx.get(root + "/health", timeout=2).json()
                replicas[health["replica"]["id"]] = health["replica"]["leader"]
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        client = openai.OpenAI(base_url=root + "/v1", api_key=MASTER_KEY, max_retries=0)
        for _ in range(10):
            client.chat.completions.create(model="fake-model", messages=MESSAGES)
        wait_rows(database_url, 10)
        time.sleep(2.0)  # a leader check or two
        for _ in range(40):
            health = httpx.get(root + "/health", timeout=2).json()
            replicas[health["replica"]["id"]] = health["replica"]["leader"]
        live = {health["replica"]["live_replicas"] for _ in range(10)
                if (health := httpx.get(root + "/health", timeout=2).json())}
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert len(replicas) == 2 and sum(replicas.values()) == 1  # one leader on SQLite
    assert live == {2}
