"""Proxy replicas as real processes on one database, and a round-robin front for workers."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml
from starlette.types import Receive, Scope, Send

from tests.support.postgres import free_port
from tests.support.servers import ChildProcess

MASTER_KEY = "sk-fleet-master-key"

# Fast fleet timings for tests (defaults are 1 s heartbeat, 2 s settlement).
FAST = {
    "PROXY_REPLICA_HEARTBEAT_S": "0.5",
    "PROXY_SETTLEMENT_INTERVAL_S": "1.0",
    "PROXY_SETTLEMENT_MARGIN_S": "0.5",
    "PROXY_METER_SAMPLE_S": "0.25",
    "PROXY_LEDGER_RETRY_INTERVAL_S": "0.5",
    "PROXY_RETRY_BACKOFF_BASE_S": "0.01",
    "PROXY_RETRY_BACKOFF_MAX_S": "0.05",
}


@dataclasses.dataclass
class Replica:
    """One `sprout-proxy serve` process."""

    name: str
    port: int
    process: ChildProcess
    var: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def client(self, api_key: str = MASTER_KEY, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=api_key, max_retries=0, **kwargs)

    def health(self) -> dict[str, Any]:
        return httpx.get(self.root + "/health", timeout=5).json()  # type: ignore[no-any-return]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no drain (what an OOM kill does)."""
        assert self.process.process is not None
        os.kill(self.process.process.pid, signal.SIGKILL)
        self.process.process.wait()

    def stop(self) -> None:
        self.process.stop()


def write_pools(path: Path, pools: list[dict[str, Any]]) -> Path:
    """A pools YAML file."""
    path.write_text(yaml.safe_dump({"pools": pools}), encoding="utf-8")
    return path


def replica(tmp_path: Path, name: str, database_url: str, *, pools_file: Path | None = None,
            upstream: str | None = None, env: dict[str, str] | None = None,
            port: int | None = None, var: Path | None = None) -> Replica:
    """A replica, not yet started; its own var/ (journal, spill) unless one is given."""
    port = port or free_port()
    var = var or tmp_path / f"var-{name}"
    args = ["-m", "proxy", "serve", "--port", str(port), "--database-url", database_url,
            "--log-level", "warning"]
    if pools_file is not None:
        args += ["--config", str(pools_file)]
    if upstream is not None:
        args += ["--upstream", upstream]
    values = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    values |= FAST | {
        "PROXY_MASTER_KEY": MASTER_KEY,
        "PROXY_MASTER_KEY_FILE": str(var / "master-key"),
        "PROXY_LEDGER_JOURNAL_DIR": str(var / "journal"),
        "PROXY_LEDGER_SPILL_PATH": str(var / "spill.jsonl"),
    } | (env or {})
    process = ChildProcess(args, f"http://127.0.0.1:{port}/health", env=values,
                           log_path=tmp_path / f"{name}.log")
    process.env = values  # exactly these (ChildProcess merges with os.environ otherwise)
    return Replica(name, port, process, var)


class RoundRobinFront:
    """A tiny load balancer: each request goes to the next backend (like a Service URL).

    Buffers whole answers (no streaming); enough for plain requests, `/models` and
    `/metrics/energy`.
    """

    def __init__(self, backends: list[str]) -> None:
        self._backends = itertools.cycle(backends)
        self._client = httpx.AsyncClient(timeout=60, trust_env=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self._client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = next(self._backends) + scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]
                   if k.decode().lower() in ("content-type", "authorization")}
        answer = await self._client.request(scope["method"], target, content=body,
                                            headers=headers)
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()
                                if k.lower() not in ("content-length", "transfer-encoding",
                                                     "connection", "content-encoding")]
                    + [(b"content-length", str(len(answer.content)).encode())]})
        await send({"type": "http.response.body", "body": answer.content})
