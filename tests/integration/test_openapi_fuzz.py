"""The OpenAPI document tells the truth, and schemathesis finds no 5xx against it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import MASTER_KEY, RunningProxy

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.mark.postgres
def test_the_document_has_bodies_real_status_codes_and_text_metrics(proxy: RunningProxy) -> None:
    document = httpx.get(proxy.root + "/openapi.json").json()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(schema["required"])
    assert "400" in chat["responses"]
    codes = {code for item in document["paths"].values() for operation in item.values()
             for code in operation["responses"]}
    assert "422" not in codes
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    # What the document says is what the server does: a schema violation is a 400.
    answer = httpx.post(proxy.root + "/admin/keys", headers=ADMIN, json={"name": 5})
    assert answer.status_code == 400


@pytest.mark.postgres
def test_a_boolean_is_not_a_number(proxy: RunningProxy) -> None:
    answer = httpx.post(proxy.root + "/admin/keys", headers=ADMIN,
                        json={"name": "k", "policy": {"routing_lambda": False}})
    assert answer.status_code == 400
    assert "routing_lambda" in answer.json()["error"]["param"]
    accepted = httpx.post(proxy.root + "/admin/keys", headers=ADMIN,
                          json={"name": "k", "policy": {"routing_lambda": 0}})
    assert accepted.status_code == 201


@pytest.mark.postgres
def test_schemathesis_finds_no_server_error(proxy: RunningProxy, tmp_path: Path) -> None:
    binary = Path(sys.executable).with_name("schemathesis")
    if not binary.exists():
        binary = Path(shutil.which("schemathesis") or "schemathesis")
    # Bounded for CI: a few examples per operation, one worker, a fixed seed.
    result = subprocess.run(
        [str(binary), "run", proxy.root + "/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", os.environ.get("SPROUT_FUZZ_EXAMPLES", "15"), "--seed", "14",
         "--workers", "1", "--request-timeout", "20", "--no-color",
         "-H", f"Authorization: Bearer {MASTER_KEY}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
