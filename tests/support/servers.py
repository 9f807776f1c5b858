"""Real HTTP servers on 127.0.0.1 for tests: uvicorn in a thread, or a child process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn


class ServerThread:
    """Serves an ASGI app with uvicorn in its own thread and event loop on a free port."""

    def __init__(self, app: Any, *, port: int = 0, **options: Any) -> None:
        """`options` are more `uvicorn.Config` arguments (the proxy's: `server_options`)."""
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                access_log=False, lifespan="on",
                                **({"timeout_graceful_shutdown": 5} | options))
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> ServerThread:
        """Start and wait until the socket is bound."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        """Base URL of the OpenAI API."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        """Base URL without /v1."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Graceful shutdown (runs the app's lifespan exit)."""
        self.server.should_exit = True
        self._thread.join(timeout=30)


class ChildProcess:
    """A server started as a real child process; waits for its health URL."""

    def __init__(self, args: list[str], health_url: str, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None,
                 executable: str | Path = sys.executable) -> None:
        self.executable = str(executable)  # another venv's python or console script
        self.args = args
        self.health_url = health_url
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90) -> ChildProcess:
        """Start and wait until health answers 200."""
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen([self.executable, *self.args], cwd=self.cwd, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited with {self.process.returncode}: "
                                   f"{self.log_text()}")
            try:
                if httpx.get(self.health_url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.args} did not become healthy: {self.log_text()}")

    def log_text(self) -> str:
        """The process output so far."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def stop(self) -> None:
        """Terminate (then kill) the process."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
