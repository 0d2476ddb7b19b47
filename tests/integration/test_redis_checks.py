"""The Redis the bridge is given, checked as Sidekiq and BullMQ check theirs: an evicting policy, no
persistence or too little memory fails `bridge check` with the fix, is logged once by web and worker
at start, and is exported on /metrics. A real Redis, reconfigured per test (CONFIG SET)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from redis import Redis

from bridge.app import create_app
from config.settings import Settings
from config.stores import Stores
from tests.integration.test_ops_cli import cli, env, sandbox  # noqa: F401 - fixtures
from workers.context import WorkerContext
from workers.ledger import Ledger
from workers.metrics import render
from workers.redis_checks import inspect_server
from workers.worker import run_worker

DAY = 86400


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
def test_bridge_check_fails_on_an_evicting_policy_naming_it_and_the_fix(
        env: dict[str, str], redis_config: Callable[..., None], policy: str) -> None:  # noqa: F811
    redis_config(maxmemory_policy=policy, appendonly="yes")
    result = cli(env, "check")
    assert result.exit_code == 1, result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("eviction"))
    assert "FAIL" in line and policy in line
    problem = next(x for x in result.output.splitlines() if "FAIL  Redis's maxmemory-policy" in x)
    assert policy in problem and "CONFIG SET maxmemory-policy noeviction" in problem


def test_bridge_check_reports_persistence_and_what_a_crash_loses(
        env: dict[str, str], redis_config: Callable[..., None]) -> None:  # noqa: F811
    redis_config(appendonly="yes", appendfsync="everysec")
    result = cli(env, "check")
    assert result.exit_code == 0, result.output
    assert "AOF, fsync every second; a crash loses up to 1 s of acknowledged webhooks" in result.output

    redis_config(appendonly="no", save="900 1 300 10")
    result = cli(env, "check")
    assert result.exit_code == 0, result.output
    assert "RDB snapshots only (after 900 s if 1 change, after 300 s if 10 changes)" in result.output
    assert "everything since the last snapshot: up to 900 s" in result.output

    redis_config(save="")
    result = cli(env, "check")
    assert result.exit_code == 1
    assert "FAIL  Redis persists nothing" in result.output and "CONFIG SET appendonly yes" in result.output


def _awards(redis: Redis, store: str, ages_in_days: list[float], index: str = "sorted set") -> None:
    """Orders awarded that many days ago, in the index the ledger keeps for reconcile: a list per day
    (``days``, as the ledger records awards), or the sorted set earlier versions kept."""
    now = time.time()
    if index == "sorted set":
        redis.zadd(Ledger.awards_key(store), {f"WC-{i}": now - age * DAY for i, age in enumerate(ages_in_days)})
        return
    for i, age in enumerate(ages_in_days):
        day = datetime.fromtimestamp(now - age * DAY, UTC).strftime("%Y%m%d")
        redis.rpush(Ledger.awards_key(store, day), f"WC-{i}")


@pytest.mark.parametrize("index", ["days", "sorted set"])
def test_headroom_is_measured_from_the_orders_of_the_last_week(redis_conn: Redis, redis_config: Callable[..., None],
                                                               index: str) -> None:
    # 70 orders in the last 7 days (10 a day), 200 older ones: the ledger keeps them all.
    _awards(redis_conn, "coffee-woo", [i / 10 for i in range(70)] + [8 + i / 10 for i in range(200)], index)
    memory = redis_conn.info("memory")
    redis_config(maxmemory=memory["used_memory"] + 5_000_000)
    report = inspect_server(redis_conn, ["coffee-woo", "coffee-shopify"])
    assert report.orders_held == 270
    assert report.orders_per_day == pytest.approx(10.0)
    used = report.used_memory
    assert report.bytes_per_order == pytest.approx((used - memory["used_memory_startup"]) / 270, rel=0.05)
    assert report.days_until_full == pytest.approx((report.maxmemory - used) / (10.0 * report.bytes_per_order))
    assert f"full in ~{report.days_until_full:,.0f} days" in report.memory
    # Without the store list, the stores are found in Redis: the same answer.
    assert inspect_server(redis_conn).orders_held == 270


def test_memory_that_runs_out_within_a_month_is_a_problem(redis_conn: Redis,
                                                          redis_config: Callable[..., None]) -> None:
    _awards(redis_conn, "coffee-woo", [i / 500 for i in range(3000)])   # 500 orders a day for 6 days
    used = redis_conn.info("memory")["used_memory"]
    redis_config(maxmemory=int(used * 1.5))
    report = inspect_server(redis_conn, ["coffee-woo"])
    assert report.days_until_full is not None and report.days_until_full < 30
    assert report.memory_tight
    assert any(p.startswith("At 500 orders a day Redis is full in ~") and "raise maxmemory" in p
               for p in report.problems)
    redis_config(maxmemory=int(used * 1.05))
    assert any(p.startswith("Redis is 9") and "% full" in p for p in inspect_server(redis_conn, ["coffee-woo"]).problems)


def test_a_redis_that_refuses_config_and_info_is_unknown_and_counted_as_evicting(
        redis_conn: Redis, redis_url: str) -> None:
    """Some hosted Redis refuse CONFIG (and answer INFO partly or not at all): what they will not say is
    unknown, not guessed; an unknown policy fails the check like an evicting one."""
    redis_conn.acl_setuser("hosted", enabled=True, nopass=True, keys=["*"], channels=["*"],
                           commands=["+@all", "-config"])
    redis_conn.acl_setuser("locked", enabled=True, nopass=True, keys=["*"], channels=["*"],
                           commands=["+@all", "-config", "-info"])
    try:
        hosted = Redis.from_url(redis_url, username="hosted", password="x")
        report = inspect_server(hosted, [])
        assert report.policy == "noeviction"          # INFO memory says it
        assert not report.evicting
        assert report.persistence.startswith("no AOF; RDB snapshots unknown")
        assert report.persists is None and report.problems == []

        locked = Redis.from_url(redis_url, username="locked", password="x")
        report = inspect_server(locked, [])
        assert report.policy is None and report.evicting
        assert report.persistence.startswith("unknown") and report.crash_loss_seconds is None
        assert report.problems[0].startswith("Redis does not say its maxmemory-policy")
    finally:
        redis_conn.acl_deluser("hosted", "locked")


def test_web_warns_once_at_start_and_exports_the_policy(settings: Settings, stores: Stores, redis_conn: Redis,
                                                        redis_config: Callable[..., None],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    redis_config(maxmemory_policy="volatile-lru", appendonly="yes")
    caplog.set_level(logging.WARNING, logger="workers.redis_checks")
    create_app(settings, stores, redis_conn)
    warnings = [r.getMessage() for r in caplog.records if r.name == "workers.redis_checks"]
    assert len(warnings) == 1 and "maxmemory-policy is volatile-lru" in warnings[0]

    page = render(redis_conn, settings.queue_name, stores)[0].decode()
    assert 'bridge_redis_eviction_policy{policy="volatile-lru"} 1.0' in page
    assert "bridge_redis_evicting 1.0" in page
    assert "bridge_redis_persists 1.0" in page and "bridge_redis_crash_loss_seconds 1.0" in page
    assert "bridge_redis_problems 1.0" in page


def test_metrics_say_how_many_days_until_full(settings: Settings, stores: Stores, redis_conn: Redis,
                                              redis_config: Callable[..., None]) -> None:
    redis_config(save="")
    _awards(redis_conn, "coffee-woo", [i / 20 for i in range(140)] + [10.0])   # 20 a day this week
    redis_config(maxmemory=redis_conn.info("memory")["used_memory"] + 50_000_000)
    page = render(redis_conn, settings.queue_name, stores)[0].decode()
    assert "bridge_redis_orders_per_day 20.0" in page
    assert "bridge_redis_days_until_full " in page and "bridge_redis_maxmemory_bytes " in page
    assert "bridge_redis_persists 0.0" in page and "bridge_redis_crash_loss_seconds +Inf" in page


def test_a_worker_warns_once_at_start(worker_ctx: WorkerContext, redis_config: Callable[..., None],
                                      caplog: pytest.LogCaptureFixture) -> None:
    redis_config(maxmemory_policy="allkeys-lru", appendonly="yes")
    caplog.set_level(logging.WARNING, logger="workers.redis_checks")
    run_worker(worker_ctx, burst=True)
    warnings = [r.getMessage() for r in caplog.records if r.name == "workers.redis_checks"]
    assert len(warnings) == 1 and "maxmemory-policy is allkeys-lru" in warnings[0]
    assert "evict ledger entries and queued jobs" in warnings[0]
