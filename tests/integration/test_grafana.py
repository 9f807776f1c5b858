"""deploy/grafana and deploy/prometheus: every query parses, and queries only real metrics.

The dashboard JSON and the alert rules are loaded as Grafana and Prometheus would; each
PromQL expression is parsed (promql-parser, the Rust parser's Python binding) and every metric
it selects must appear in the `/metrics` of a running proxy that has served some traffic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MASTER_KEY, Fake, RunningProxy, fake_pool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/sprout-proxy.json").read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    found = []
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            found.append((panel["title"], target["expr"]))
    return found


def _rule_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    found = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            found.append((rule["alert"], rule["expr"]))
    return found


def _metric_names(node: Any) -> Iterator[str]:
    """Every metric a parsed PromQL expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node.name
    elif isinstance(node, promql_parser.MatrixSelector):
        yield from _metric_names(node.vector_selector)
    elif isinstance(node, promql_parser.Call):
        for argument in node.args:
            yield from _metric_names(argument)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from _metric_names(node.lhs)
        yield from _metric_names(node.rhs)
    elif isinstance(node, (promql_parser.AggregateExpr, promql_parser.ParenExpr,
                           promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        yield from _metric_names(node.expr)


def _parse(expr: str) -> Any:
    # Grafana's interval variable becomes a real duration before Prometheus sees it.
    return promql_parser.parse(expr.replace("$__rate_interval", "5m"))


def _scraped(proxy: RunningProxy) -> set[str]:
    text = httpx.get(proxy.root + "/metrics").text
    return {sample.name for family in text_string_to_metric_families(text)
            for sample in family.samples}


def test_queries_parse_and_name_metrics() -> None:
    queries = _dashboard_queries() + _rule_queries()
    assert len(_rule_queries()) >= 6
    for title, expr in queries:
        names = set(_metric_names(_parse(expr)))
        assert names and all(name.startswith("sprout_") for name in names), (title, expr)


def test_every_metric_the_dashboard_and_alerts_query_is_in_metrics(
        start_proxy: Callable[..., RunningProxy], fake: Fake, pg_url: str) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url, key_usage_flush_s=0.2)
    # Traffic that makes every labelled series appear: plain and streamed requests, and a
    # key with a carbon budget that is refused by its requests-per-minute limit.
    client = proxy.client()
    client.chat.completions.create(model="fake-model", messages=MESSAGES)
    list(client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    created = httpx.post(proxy.root + "/admin/keys", headers=ADMIN, json={
        "name": "metered", "policy": {"limits": {"requests_per_minute": 1,
                                                 "carbon_budget_g_co2e": 50}}}).json()
    time.sleep(1.0)  # the key's first lease
    keyed = proxy.client(created["key"])
    keyed.chat.completions.create(model="fake-model", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        keyed.chat.completions.create(model="fake-model", messages=MESSAGES)
    deadline = time.monotonic() + 10
    wanted = {name for _, expr in _dashboard_queries() + _rule_queries()
              for name in _metric_names(_parse(expr))}
    while missing := wanted - _scraped(proxy):
        assert time.monotonic() < deadline, f"not in /metrics: {sorted(missing)}"
        time.sleep(0.2)
