"""The built wheel, installed non-editable in a fresh virtualenv outside the checkout.

What a user gets from `pip install sprout_proxy-*.whl`: a package that migrates, passes
`alembic check`, serves (dashboard and offline API docs included) and, with the `worker`
extra, runs the worker, all from a directory that is not the checkout. Only the scripted
upstream and the `openai` client run in this (checkout) process; everything else runs from the
installed copy.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import httpx
import openai
import pytest

import proxy
from tests.conftest import Fake
from tests.support.ledger import wait_rows
from tests.support.postgres import free_port
from tests.support.servers import ChildProcess

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-wheel-smoke"
# Runs inside the installed venv: the migrations it finds, and `alembic check` against them.
ALEMBIC_CHECK = """
from alembic import command
from proxy.accounting.migrate import MIGRATIONS_DIR, alembic_config
command.check(alembic_config("sqlite:///var/sprout.db"))
print(MIGRATIONS_DIR)
"""
WHERE = """
import importlib.util, json, proxy, worker, evaluator
print(json.dumps({"files": [m.__file__ for m in (proxy, worker, evaluator)],
                  "torch": importlib.util.find_spec("torch") is not None}))
"""


def _isolated_env() -> dict[str, str]:
    """The caller's environment without anything that could point back at the checkout."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items()
            if k not in dropped and not k.startswith("PROXY_")}


def _run(argv: list[str | Path], cwd: Path, timeout_s: float = 240) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=_isolated_env(),
                          capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _where(venv: Path, cwd: Path) -> dict[str, object]:
    found: dict[str, object] = json.loads(_run([venv / "bin" / "python", "-c", WHERE], cwd))
    site = Path(_run([venv / "bin" / "python", "-c",
                      "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd).strip())
    files = found["files"]
    assert isinstance(files, list)
    for file in files:  # the wheel's copy, never the checkout's
        assert Path(file).is_relative_to(site), file
    return found


@pytest.fixture(autouse=True)
def _no_checkout_in_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """ChildProcess passes os.environ on: keep PYTHONPATH and PROXY_* settings out of it."""
    for name in list(os.environ):
        if name in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} or name.startswith("PROXY_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist, then the wheel built from that sdist (as `python -m build` does by default)."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend comes from .venv, so no download is needed.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT], out)
    (built,) = out.glob("sprout_proxy-*.whl")
    assert len(list(out.glob("sprout_proxy-*.tar.gz"))) == 1
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv (no system site-packages) with the plain wheel: no extras, no torch."""
    home = tmp_path_factory.mktemp("wheel-venv")
    assert not home.is_relative_to(ROOT)
    _run([sys.executable, "-m", "venv", home / "venv"], home)
    venv = home / "venv"
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], home)
    assert _where(venv, home)["torch"] is False  # the proxy installs without torch
    return venv


def test_wheel_ships_every_file_of_the_packages_and_the_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"sprout_proxy-{proxy.__version__}.dist-info"
        meta = email.message_from_bytes(archive.read(f"{dist_info}/METADATA"))
    expected = {
        path.relative_to(ROOT).as_posix()
        for package in ("proxy", "worker", "evaluator")
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    } | {
        "proxy/migrations/" + path.relative_to(ROOT / "migrations").as_posix()
        for path in (ROOT / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - names == set()  # a new migration or asset ships without editing config
    assert f"{dist_info}/licenses/LICENSE" in names
    assert meta["Version"] == proxy.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("Project-URL") and meta.get_all("Classifier")
    assert {"worker", "dev"} <= set(meta.get_all("Provides-Extra") or [])


def test_installed_proxy_migrates_checks_and_serves(venv: Path, fake: Fake,
                                                    tmp_path: Path) -> None:
    _where(venv, tmp_path)
    bin_dir = venv / "bin"
    assert "latest revision" in _run([bin_dir / "sprout-proxy", "migrate"], tmp_path)
    assert (tmp_path / "var" / "sprout.db").exists()  # the default: ./var under the cwd
    check = _run([bin_dir / "python", "-c", ALEMBIC_CHECK], tmp_path).splitlines()
    assert check[0] == "No new upgrade operations detected."
    migrations = Path(check[-1])
    assert migrations.is_relative_to(venv) and (migrations / "versions").is_dir()

    port = free_port()
    server = ChildProcess(
        ["serve", "--upstream", fake.url, "--port", str(port), "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health", cwd=tmp_path,
        env={"PROXY_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        log_path=tmp_path / "proxy.log", executable=bin_dir / "sprout-proxy",
    ).start()
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER_KEY,
                               max_retries=0)
        reply = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens == 5
        (row,) = wait_rows(f"sqlite:///{tmp_path}/var/sprout.db", 1)
        assert row["status"] == "ok"
        script = httpx.get(f"http://127.0.0.1:{port}/dashboard/dashboard.js")
        assert script.status_code == 200
        assert script.text == (ROOT / "proxy/dashboard/static/dashboard.js").read_text()
        schema = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert schema["info"]["version"] == proxy.__version__
        # The API docs and the dashboard's chart library come from the wheel, not a CDN.
        for page in ("docs", "redoc"):
            assert "cdn" not in httpx.get(f"http://127.0.0.1:{port}/{page}").text
        for url, source in [
                ("/docs/assets/swagger-ui-bundle.js", "proxy/apidocs/static/swagger-ui-bundle.js"),
                ("/docs/assets/redoc.standalone.js", "proxy/apidocs/static/redoc.standalone.js"),
                ("/dashboard/vendor/uPlot.iife.min.js",
                 "proxy/dashboard/static/vendor/uPlot.iife.min.js"),
                ("/favicon.ico", "proxy/dashboard/static/favicon.ico")]:
            answer = httpx.get(f"http://127.0.0.1:{port}{url}")
            assert answer.status_code == 200, url
            assert answer.content == (ROOT / source).read_bytes(), url
    finally:
        server.stop()


@pytest.mark.worker
def test_installed_worker_extra_builds_and_serves_the_demo_model(venv: Path,
                                                                 wheel: Path,
                                                                 tmp_path: Path) -> None:
    # The exact torch of .venv (scripts/setup pins the CPU build): pip may never swap in a
    # CUDA build, and finds this one on disk or in its cache.
    pin = tmp_path / "torch-pin.txt"
    pin.write_text(f"torch=={metadata.version('torch')}\n")
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", pin,
          f"{wheel}[worker]"], tmp_path)
    assert _where(venv, tmp_path)["torch"] is True
    torch_version = _run([venv / "bin" / "python", "-c",
                          "import torch; print(torch.__version__)"], tmp_path).strip()
    assert torch_version == metadata.version("torch")

    port = free_port()
    # --model demo: the worker builds the demo model under ./var from its packaged corpus.
    worker = ChildProcess(
        ["--model", "demo", "--port", str(port), "--log-level", "warning"], f"http://127.0.0.1:{port}/health",
        cwd=tmp_path, log_path=tmp_path / "worker.log",
        executable=venv / "bin" / "sprout-worker",
    ).start(timeout_s=180)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                               max_retries=0)
        reply = client.chat.completions.create(
            model="sprout-demo-tiny", max_tokens=4,
            messages=[{"role": "user", "content": "hi"}])
        assert reply.model == "sprout-demo-tiny"
        assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 4
        assert (tmp_path / "var" / "models" / "sprout-demo-tiny" / "config.json").exists()
    finally:
        worker.stop()
