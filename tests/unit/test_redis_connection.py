"""What a process says and does when Redis cannot be used: URLs shown with the password masked, and the
wait for Redis (backoff, one log line per attempt, stoppable)."""

from __future__ import annotations

import json
import logging

import pytest
from redis import Redis
from redis.backoff import ConstantBackoff
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from bridge.embedded_redis import free_port
from workers.connection import InvalidRedisUrl, connect, masked_url, unavailable_message, wait_for_redis


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:s3cret@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
    ("rediss://default:s3cret@cache.example.com:6380/2", "rediss://default:***@cache.example.com:6380/2"),
    ("redis://:p%40ss:w0rd@h:6379", "redis://:***@h:6379"),
    ("redis://h:6379/0?password=s3cret&socket_timeout=3", "redis://h:6379/0?password=***&socket_timeout=3"),
    ("unix://:s3cret@/var/run/redis.sock?db=1", "unix://:***@/var/run/redis.sock?db=1"),
    ("redis://[::1:s3cret@h", "redis://***@h"),  # not even parseable: still masked
    ("redis+sentinel://:s3cret@s1:26379,s2:26379/bridge/0", "redis+sentinel://:***@s1:26379,s2:26379/bridge/0"),
    ("rediss+sentinel://u:s3cret@s1/bridge?sentinel_password=s3ntinel&sentinel_username=sen",
     "rediss+sentinel://u:***@s1/bridge?sentinel_password=***&sentinel_username=sen"),
])
def test_masked_url_never_shows_the_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_a_malformed_url_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(InvalidRedisUrl) as raised:
        connect("redis://:s3cret@h:99999/0")
    assert str(raised.value) == "REDIS_URL redis://:***@h:99999/0 is not a valid Redis URL: Port out of range 0-65535"
    with pytest.raises(InvalidRedisUrl, match="must specify one of the following schemes"):
        connect("http://:s3cret@h/0")


def test_a_sentinel_url_names_the_sentinels_the_service_and_who_gets_which_password() -> None:
    client = connect("redis+sentinel://app:s3cret@s1:26380,[::1],s3/bridge/2?sentinel_password=s3ntinel", timeout=1.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "bridge" and pool.is_master
    assert {k: pool.connection_kwargs[k] for k in ("db", "username", "password", "socket_timeout")} == \
        {"db": 2, "username": "app", "password": "s3cret", "socket_timeout": 1.5}
    sentinels = pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in sentinels] == [("s1", 26380), ("::1", 26379), ("s3", 26379)]
    assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"s3ntinel"}
    tls = connect("rediss+sentinel://s1/bridge").connection_pool
    assert tls.connection_class is SentinelManagedSSLConnection


@pytest.mark.parametrize(("url", "error"), [
    ("redis+sentinel://:s3cret@s1:26379", "it names no service"),
    ("redis+sentinel://:s3cret@s1:26379/bridge/zero", "the database must be a number, not 'zero'"),
    ("redis+sentinel://:s3cret@s1:263790/bridge", "'s1:263790' is not a sentinel's host[:port]"),
    ("redis+sentinel://s1/bridge?socket_timeout=1", "unknown option 'socket_timeout'"),
])
def test_a_bad_sentinel_url_is_one_clear_error_without_the_password(url: str, error: str) -> None:
    with pytest.raises(InvalidRedisUrl) as raised:
        connect(url)
    assert error in str(raised.value) and "s3cret" not in str(raised.value)


def test_the_message_names_the_masked_url_and_the_error() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(Exception) as raised:
        connect(url).ping()
    message = unavailable_message(url, raised.value)
    assert message.startswith("cannot use Redis at redis://:***@127.0.0.1:")
    assert "ConnectionError: Error 111" in message and "s3cret" not in message


def test_waiting_logs_one_line_per_attempt_and_stops_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    sleeps: list[float] = []
    caplog.set_level(logging.WARNING, "workers.connection")
    came_back = wait_for_redis(connect(url, timeout=0.5), url, backoff=ConstantBackoff(0.25),
                               should_stop=lambda: len(sleeps) == 3, sleep=sleeps.append)
    assert came_back is False
    assert sleeps == [0.25, 0.25, 0.25]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # asked to stop after the third wait
    assert all(line.startswith("Redis at redis://:***@127.0.0.1:") and "is unavailable (ConnectionError" in line
               for line in lines)
    assert [r.fields["attempt"] for r in caplog.records] == [1, 2, 3]  # type: ignore[attr-defined]
    assert "s3cret" not in json.dumps([r.fields for r in caplog.records])  # type: ignore[attr-defined]


def test_waiting_returns_at_once_when_redis_answers(redis_conn: Redis, redis_url: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "workers.connection")
    assert wait_for_redis(redis_conn, redis_url, sleep=pytest.fail) is True
    assert caplog.records == []


def test_waiting_after_a_failure_says_when_redis_is_back(redis_conn: Redis, redis_url: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "workers.connection")
    sleeps: list[float] = []
    assert wait_for_redis(redis_conn, redis_url, error=ConnectionError("gone"), backoff=ConstantBackoff(0.1),
                          sleep=sleeps.append) is True
    assert sleeps == [0.1]
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"Redis at {redis_url} is unavailable", f"Redis at {redis_url} answers again after 1 failed attempts"]
