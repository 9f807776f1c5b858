"""`sprout-proxy serve --upstream URL` as a user runs it: a real process, a fresh directory."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import openai

from tests.conftest import Fake
from tests.support.ledger import wait_rows
from tests.support.postgres import free_port
from tests.support.servers import ChildProcess


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}


def test_quick_start_generates_a_key_and_uses_sqlite_under_var(fake: Fake, tmp_path: Path):
    port = free_port()
    child = ChildProcess(
        ["-m", "proxy", "serve", "--upstream", fake.url, "--port", str(port)],
        f"http://127.0.0.1:{port}/health", cwd=tmp_path, env=_env(),
        log_path=tmp_path / "proxy.log",
    )
    child.start()
    try:
        key = (tmp_path / "var" / "master-key").read_text().strip()
        # the whole log: its tail (`log_text`) is past the migrations by now
        assert key.startswith("sk-sprout-") and key in (tmp_path / "proxy.log").read_text()
        assert oct((tmp_path / "var" / "master-key").stat().st_mode)[-3:] == "600"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                               max_retries=0)
        reply = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        (row,) = wait_rows(f"sqlite:///{tmp_path}/var/sprout.db", 1)
        assert row["status"] == "ok"
    finally:
        assert child.process is not None
        child.process.send_signal(signal.SIGINT)
        child.process.wait(timeout=20)
    assert child.process.returncode == 0


def test_database_url_option_and_master_key_env(fake: Fake, pg_url: str, tmp_path: Path):
    port = free_port()
    child = ChildProcess(
        ["-m", "proxy", "serve", "--upstream", fake.url, "--model", "fake-model",
         "--port", str(port), "--database-url", pg_url],
        f"http://127.0.0.1:{port}/health", cwd=tmp_path,
        env=_env() | {"PROXY_MASTER_KEY": "sk-from-env"}, log_path=tmp_path / "proxy.log",
    ).start()
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-from-env",
                               max_retries=0)
        assert [m.id for m in client.models.list()] == ["fake-model"]
        client.completions.create(model="fake-model", prompt="x")
        assert wait_rows(pg_url, 1)[0]["endpoint"] == "completions"
        assert not (tmp_path / "var" / "master-key").exists()
        assert "sk-from-env" not in child.log_text()  # configured keys are not printed
    finally:
        child.stop()


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", "nope.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert result.returncode == 2 and "pools file not found" in result.stderr
