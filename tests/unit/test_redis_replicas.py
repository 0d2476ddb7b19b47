"""How INFO replication is read against BRIDGE_REDIS_MIN_REPLICAS: which replicas count as in sync,
and what is a problem (the answers are redis-py's parse of INFO replication, as a primary gives it)."""

from __future__ import annotations

from typing import Any

from workers.redis_checks import replicas

PRIMARY: dict[str, Any] = {
    "role": "master", "connected_slaves": 2, "master_repl_offset": 5000,
    "slave0": {"ip": "10.0.0.2", "port": 6379, "state": "online", "offset": 4958, "lag": 0},
    "slave1": {"ip": "10.0.0.3", "port": 6379, "state": "online", "offset": 1200, "lag": 14},
}
NO_CONFIG: dict[str, str | None] = {"min-replicas-to-write": None, "min-replicas-max-lag": None}


def test_a_replica_silent_longer_than_the_max_lag_is_connected_but_not_in_sync() -> None:
    r = replicas.measure(PRIMARY, NO_CONFIG, 2)
    assert (r.connected, r.in_sync, r.max_lag) == (2, 1, 10)
    assert [(x.address, x.lag, x.behind) for x in r.replicas] == [("10.0.0.2:6379", 0, 42), ("10.0.0.3:6379", 14, 3800)]
    assert replicas.problem(r) is not None and replicas.problem(r).startswith(  # type: ignore[union-attr]
        "1 of the 2 Redis replicas BRIDGE_REDIS_MIN_REPLICAS requires is connected and in sync (2 connected)")
    # Redis's own min-replicas-max-lag, when it says, is the limit.
    assert replicas.measure(PRIMARY, {**NO_CONFIG, "min-replicas-max-lag": "20"}, 2).in_sync == 2
    assert replicas.problem(replicas.measure(PRIMARY, NO_CONFIG, 1)) is None


def test_a_replica_still_copying_the_data_does_not_count() -> None:
    copying = {"role": "master", "connected_slaves": 1, "master_repl_offset": 5000,
               "slave0": {"ip": "10.0.0.2", "port": 6379, "state": "wait_bgsave", "offset": 0, "lag": 0}}
    r = replicas.measure(copying, NO_CONFIG, 1)
    assert (r.connected, r.in_sync) == (1, 0)
    assert "wait_bgsave" in replicas.summary(r)


def test_redis_requiring_more_replicas_than_are_in_sync_refuses_every_write() -> None:
    r = replicas.measure(PRIMARY, {**NO_CONFIG, "min-replicas-to-write": "2"}, 0)
    problem = replicas.problem(r)
    assert problem is not None and "min-replicas-to-write is 2 and 1 replica is in sync" in problem
    assert "Redis's own min-replicas-to-write 2" in replicas.summary(r)


def test_a_url_that_points_at_a_replica_is_a_problem_whatever_the_option() -> None:
    r = replicas.measure({"role": "slave", "connected_slaves": 0, "master_host": "10.0.0.1"}, NO_CONFIG, 0)
    assert "points at a replica" in (replicas.problem(r) or "")


def test_a_redis_that_will_not_say_is_unknown_not_a_problem() -> None:
    r = replicas.measure({}, NO_CONFIG, 1)
    assert r.role is None and replicas.problem(r) is None and not replicas.short(r)
    assert replicas.summary(r).startswith("unknown")
