"""The Prometheus alerting rules shipped in config/: well formed, one or more per alert kind, and over
metrics the web and worker processes export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests
import yaml
from flask.testing import FlaskClient
from redis import Redis

from bridge.embedded_redis import free_port
from workers.alerts.records import CONDITIONS
from workers.metrics import serve_metrics

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus-alerts.yml"
# A metric name in an expression: not a function, a label name or a keyword.
NAME = re.compile(r"\b(bridge_[a-z_]+)\b(?!\s*[=!~]|\s*\()")


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def exported(page: str) -> set[str]:
    """Every metric name a /metrics page declares (HELP lines) or has samples of."""
    names = set()
    for line in page.splitlines():
        if line.startswith("# HELP "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_each_rule_says_what_when_how_bad_and_what_to_do() -> None:
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert NAME.search(rule["expr"]), rule["alert"]
    covered = {rule["labels"].get("bridge_alert") for rule in rules()}
    assert covered >= set(CONDITIONS)


def test_every_metric_the_rules_use_is_exported_by_the_web_and_the_worker_processes(
        client: FlaskClient, redis_conn: Redis) -> None:
    used = {name for rule in rules() for name in NAME.findall(rule["expr"])}
    assert {"bridge_workers", "bridge_queue_jobs", "bridge_loyalty_responses_total", "bridge_redis_evicting"} <= used
    web = exported(client.get("/metrics").get_data(as_text=True))
    port = free_port()
    serve_metrics(port, redis_conn, "loyalty")  # what `bridge worker --metrics-port` serves
    worker = exported(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
    assert used - web == set()
    assert used - worker == set()
