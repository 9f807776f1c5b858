"""Deployment files: they parse, reference only what exists, and the entrypoint runs natively.

No container engine runs here, so images are not built; everything else is checked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import create_engine, inspect

from proxy.app import create_app
from proxy.config import Settings
from proxy.pools.config import PoolConfig
from tests.support.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {f"PROXY_{name.upper()}" for name in Settings.model_fields}


def _documents() -> dict[str, list[dict[str, Any]]]:
    return {path.name: [d for d in yaml.safe_load_all(path.read_text()) if d]
            for path in sorted((DEPLOY / "k8s").glob("*.yaml"))}


def _roles() -> set[str]:
    text = (DEPLOY / "entrypoint.sh").read_text()
    return set(re.findall(r"^  ([a-z]+)\)", text, re.MULTILINE))


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return list(spec.get("template", {}).get("spec", {}).get("containers", []))


def test_kubernetes_manifests_parse_and_reference_only_what_exists() -> None:
    documents = _documents()
    kustomization = documents.pop("kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == sorted(documents)
    kinds: dict[str, dict[str, Any]] = {}
    for name, docs in documents.items():
        for document in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(document), name
            kinds[f"{document['kind']}/{document['metadata']['name']}"] = document
    config = kinds["ConfigMap/sprout-config"]["data"]
    secret = kinds["Secret/sprout-secrets"]["stringData"]
    assert set(config) | set(secret) <= SETTINGS  # every variable is a real setting
    assert set(config) | set(secret) <= set(re.findall(
        r"^(PROXY_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    Settings(_env_file=None, **{k.removeprefix("PROXY_").lower(): v  # type: ignore[arg-type]
                                for k, v in config.items() if not k.endswith("_FILE")})
    pools = yaml.safe_load(kinds["ConfigMap/sprout-pools"]["data"]["pools.yaml"])["pools"]
    configs = [PoolConfig.model_validate(pool) for pool in pools]
    services = {name.split("/")[1] for name in kinds if name.startswith("Service/")}
    for pool in configs:  # each pool points at a Service of the manifests
        host = pool.base_urls[0].split("//")[1].split(":")[0]
        assert host in services
    roles = _roles()
    routes = set(create_app(Settings(_env_file=None)).openapi()["paths"])  # type: ignore[call-arg]
    for name, document in kinds.items():
        for container in _containers(document):
            assert container["args"][0] in roles, name
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"] in routes | {"/health"}
    proxy = kinds["Deployment/sprout-proxy"]
    assert proxy["spec"]["replicas"] >= 2
    assert _containers(proxy)[0]["args"] == ["serve"]  # replicas never migrate
    assert _containers(kinds["Job/sprout-migrate"])[0]["args"] == ["migrate"]
    assert _containers(kinds["CronJob/sprout-evaluator"])[0]["args"][0] == "evaluator"
    # One place schedules the evaluator: the proxy's leader (judge model set), not also cron.
    assert kinds["CronJob/sprout-evaluator"]["spec"]["suspend"] is True
    assert config["PROXY_EVALUATOR_JUDGE_MODEL"]
    for kind in ("new", "old"):
        worker = kinds[f"Deployment/sprout-worker-{kind}-gpu"]
        assert worker["spec"]["template"]["spec"]["nodeSelector"] == {
            "sprout.dev/gpu-class": kind}
        assert _containers(worker)[0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_compose_and_dockerfiles_reference_existing_files() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    profiles = {name: tuple(service.get("profiles", ())) for name, service in
                compose["services"].items()}
    assert profiles == {"postgres": (), "proxy": (), "worker": (),
                        "prometheus": ("monitoring",), "grafana": ("monitoring",)}
    for name, service in compose["services"].items():
        assert "healthcheck" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):  # a file or folder of the checkout
                assert (DEPLOY / source).exists(), (name, source)
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).exists()
            assert service["command"][0] in _roles()
        for variable in service.get("environment", {}):
            if variable.startswith("PROXY_"):
                assert variable in SETTINGS
    assert compose["services"]["proxy"]["command"][0] == "proxy"  # migrate, then start
    assert compose["services"]["proxy"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy")
    for dockerfile in ("Dockerfile", "Dockerfile.worker"):
        text = (DEPLOY / dockerfile).read_text()
        for source in re.findall(r"^COPY (?!--from=)(.+) \S+$", text, re.MULTILINE):
            for path in source.split():
                assert (ROOT / path).exists(), (dockerfile, path)
        _check_installs_the_wheel(dockerfile, text)
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)


def _check_installs_the_wheel(dockerfile: str, text: str) -> None:
    """A `wheel` stage builds from everything the wheel needs; the image installs only that."""
    stages = {match[1]: body for match, body in zip(
        re.finditer(r"^FROM \S+(?: AS (\S+))?$", text, re.MULTILINE),
        re.split(r"^FROM .+$", text, flags=re.MULTILINE)[1:], strict=True)}
    assert "wheel" in stages, f"{dockerfile}: no stage builds the wheel"
    build = stages["wheel"]
    copied = {path for source in re.findall(r"^COPY (?!--from=)(.+) \S+$", build, re.MULTILINE)
              for path in source.split()}
    assert {"pyproject.toml", "setup.py", "README.md", "LICENSE", "proxy", "worker",
            "evaluator", "migrations"} <= copied, dockerfile
    assert re.search(r"^RUN pip wheel --no-deps --wheel-dir /wheels \.$", build, re.MULTILINE)
    runtime = re.split(r"^FROM .+$", text, flags=re.MULTILINE)[-1]
    assert "COPY --from=wheel /wheels /wheels" in runtime, dockerfile
    assert re.search(r"pip install .*(/wheels/sprout_proxy-\*\.whl|\"\$1\[worker\]\")",
                     runtime), dockerfile
    assert "pip install -e" not in text, dockerfile  # editable installs are for development
    runtime_sources = re.findall(r"^COPY (?!--from=)(.+) \S+$", runtime, re.MULTILINE)
    assert runtime_sources == ["deploy/entrypoint.sh"], dockerfile  # no checkout shadows it


def test_entrypoint_runs_natively(fake, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env |= {"PROXY_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite",
            "PROXY_MASTER_KEY": "sk-entry", "PROXY_HOST": "127.0.0.1",
            "PYTHON": sys.executable}
    entrypoint = str(DEPLOY / "entrypoint.sh")
    migrate = subprocess.run([entrypoint, "migrate"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    engine = create_engine(f"sqlite:///{tmp_path}/db.sqlite")
    assert "requests" in inspect(engine).get_table_names()
    engine.dispose()
    assert subprocess.run([entrypoint, "nope"], env=env, capture_output=True).returncode == 2

    port = free_port()
    process = subprocess.Popen([entrypoint, "proxy", "--port", str(port), "--upstream",
                                fake.url], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the entrypoint's proxy exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the entrypoint's proxy did not come up"
            time.sleep(0.2)
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           headers={"authorization": "Bearer sk-entry"},
                           json={"model": "fake-model",
                                 "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM (so the exit is -15, not a crash)
    assert process.returncode in (0, -15)
