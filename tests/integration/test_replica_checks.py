"""What `bridge check`, /readyz and /metrics say about the replicas of a real primary, reached through
its sentinel: with BRIDGE_REDIS_MIN_REPLICAS, fewer in sync than it requires is a problem naming the
fix, a 503 from /readyz with the reason (every webhook would be answered 503), and a gauge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from bridge.app import create_app
from bridge.sandbox.server import SandboxServer
from tests.conftest import Replicated, make_stores, sandbox_stores_env
from tests.integration.test_ops_cli import cli, sandbox  # noqa: F401 - fixtures
from tests.integration.test_replication import bridge_settings, post_paid_order
from workers.connection import connect

REQUIRES_ONE = "0 of the 1 Redis replicas BRIDGE_REDIS_MIN_REPLICAS requires are connected and in sync"


@pytest.fixture
def persisting(replicated: Replicated) -> Iterator[Replicated]:
    """The replicated Redis with AOF on at the primary, so that the replicas are all check can fault."""
    with Redis(port=replicated.primary.port) as primary:
        primary.config_set("appendonly", "yes")
    yield replicated
    with Redis(port=replicated.primary.port) as primary:
        primary.config_set("appendonly", "no")


def check(replicated: Replicated, sandbox: SandboxServer, tmp_path: Path, min_replicas: int) -> tuple[int, str, str]:
    """`bridge check` through the sentinel: exit code, the replicas line, and the whole output."""
    env = sandbox_stores_env(tmp_path / "stores.toml", replicated.sentinel.url, sandbox.url)
    env["BRIDGE_REDIS_MIN_REPLICAS"] = str(min_replicas)
    result = cli(env, "check")
    line = next(x for x in result.output.splitlines() if x.strip().startswith("replicas"))
    return result.exit_code, line, result.output


def test_bridge_check_says_how_many_replicas_are_in_sync_and_their_lag(
        persisting: Replicated, sandbox: SandboxServer, tmp_path: Path) -> None:  # noqa: F811
    code, line, output = check(persisting, sandbox, tmp_path, 1)
    assert code == 0, output
    assert " ok " in line and "1 connected, 1 in sync" in line, line
    assert f"127.0.0.1:{persisting.replica.port} online, lag " in line and " B behind" in line
    assert "BRIDGE_REDIS_MIN_REPLICAS=1: webhooks are acknowledged once 1 replica holds them" in line


def test_bridge_check_fails_when_fewer_replicas_than_required_are_in_sync(
        persisting: Replicated, sandbox: SandboxServer, tmp_path: Path) -> None:  # noqa: F811
    persisting.replica.stop()
    code, line, output = check(persisting, sandbox, tmp_path, 1)
    assert code == 1
    assert "FAIL" in line and "none connected" in line
    problem = next(x for x in output.splitlines() if REQUIRES_ONE in x)
    assert "answers every webhook 503" in problem and "lower BRIDGE_REDIS_MIN_REPLICAS" in problem
    # Without the option, no replica is no problem: the line says what a failover may cost.
    code, line, output = check(persisting, sandbox, tmp_path, 0)
    assert code == 0, output
    assert "none connected; BRIDGE_REDIS_MIN_REPLICAS=0: none required" in line


def test_readyz_and_metrics_follow_the_replicas(replicated: Replicated, tmp_path: Path) -> None:
    settings = bridge_settings(replicated, tmp_path, 1)
    client = create_app(settings, make_stores(), connect(settings.redis_url or "", timeout=2.0)).test_client()
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json["replicas"]) == (200, "1 of 1 required in sync")
    page = client.get("/metrics").get_data(as_text=True)
    assert "bridge_redis_connected_replicas 1.0" in page and "bridge_redis_replicas_in_sync 1.0" in page
    assert "bridge_redis_replicas_required 1.0" in page
    assert f'bridge_redis_replica_lag_seconds{{replica="127.0.0.1:{replicated.replica.port}"}}' in page

    replicated.replica.stop()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["replicas"] == "0 of 1 required in sync"
    assert REQUIRES_ONE in ready.json["reason"]
    assert post_paid_order(settings)[0] == 503   # what /readyz foretold
    page = client.get("/metrics").get_data(as_text=True)
    assert "bridge_redis_connected_replicas 0.0" in page and "bridge_redis_replicas_in_sync 0.0" in page

    replicated.start_replica()
    assert client.get("/readyz").status_code == 200


def test_too_few_replicas_fire_the_redis_alert(persisting: Replicated, tmp_path: Path) -> None:
    from workers.alerts.checks import check_redis
    from workers.alerts.state import AlertState

    settings = bridge_settings(persisting, tmp_path, 1)
    state = AlertState(connect(settings.redis_url or ""), receivers=1, repeat=3600)
    check_redis(state, settings)
    assert state.firing() == []
    persisting.replica.stop()
    check_redis(state, settings)
    [record] = state.firing()
    assert record.alert == "redis" and any(REQUIRES_ONE in p for p in record.details["problems"])
