"""Group commit against a real Redis: calls in flight together share a round trip, and each still
gets its own reply, only after Redis ran its own script."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError, ResponseError

from bridge.embedded_redis import EmbeddedRedis, free_port
from tests.conftest import Replicated
from workers.group_commit import GroupCommit
from workers.replication import NotReplicated, Replication

# Busy for about a millisecond, so that calls pile up behind a batch on the wire.
STORE = """
local n = 0
for i = 1, tonumber(ARGV[2]) do n = n + i end
if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""


class Counted(GroupCommit):
    """Records the size of every batch sent."""

    def __init__(self, connection: Redis, replication: Replication | None = None) -> None:
        super().__init__(connection, replication)
        self.batches: list[int] = []

    def _exchange(self, batch: list) -> list:  # type: ignore[type-arg]
        self.batches.append(len(batch))
        return super()._exchange(batch)


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_concurrent_calls_share_round_trips_and_each_gets_its_own_reply(redis_conn: Redis) -> None:
    commit = Counted(redis_conn)
    sha = commit.register(STORE)
    commit.call(sha, ["warm"], ["up", 1])   # loads the script (a NOSCRIPT round trip, then the call)
    commit.batches.clear()

    def call(n: int) -> None:
        value = f"v{n}"
        assert commit.call(sha, [f"k{n}"], [value, 20_000]) == value.encode()
        # Answered only once Redis ran it: another client already sees what it wrote.
        assert redis_conn.get(f"k{n}") == value.encode()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(400)))
    assert sum(commit.batches) == 400
    assert max(commit.batches) > 1, "no two calls ever shared a round trip"
    assert len(commit.batches) < 400


def test_an_error_reply_fails_only_its_own_call(redis_conn: Redis) -> None:
    commit = Counted(redis_conn)
    sha = commit.register(STORE)
    commit.call(sha, ["warm"], ["up", 1])
    commit.batches.clear()
    outcomes: dict[str, object] = {}

    def call(value: str, spin: int) -> None:
        try:
            outcomes[value] = commit.call(sha, [f"k-{value}"], [value, spin])
        except ResponseError as exc:
            outcomes[value] = exc

    slow = threading.Thread(target=call, args=("first", 10_000_000))   # holds the wire a while
    slow.start()
    wait_for(lambda: bool(commit.batches))
    behind = [threading.Thread(target=call, args=(v, 1)) for v in ("good", "bad", "also-good")]
    for thread in behind:
        thread.start()
    for thread in [slow, *behind]:
        thread.join(10)
    assert commit.batches == [1, 3]   # the three that waited went together
    assert outcomes["first"] == b"first" and outcomes["good"] == b"good" and outcomes["also-good"] == b"also-good"
    assert isinstance(outcomes["bad"], ResponseError) and "refused bad" in str(outcomes["bad"])
    assert redis_conn.get("k-bad") is None and redis_conn.get("k-also-good") == b"also-good"


def test_scripts_redis_lost_are_loaded_again(redis_conn: Redis) -> None:
    commit = GroupCommit(redis_conn)
    sha = commit.register(STORE)
    assert commit.call(sha, ["k"], ["one", 1]) == b"one"
    redis_conn.script_flush()
    assert commit.call(sha, ["k"], ["two", 1]) == b"two"
    assert redis_conn.get("k") == b"two"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    yield server
    server.stop()


def test_a_restarted_redis_is_reconnected_to(own_redis: EmbeddedRedis) -> None:
    commit = GroupCommit(Redis.from_url(own_redis.url, socket_timeout=2))
    sha = commit.register(STORE)
    assert commit.call(sha, ["k"], ["before", 1]) == b"before"
    own_redis.stop()
    own_redis.start()
    # The connection this process held is dead; the call goes through on a new one (script loaded again).
    assert commit.call(sha, ["k"], ["after", 1]) == b"after"


def test_an_unreachable_redis_fails_at_once() -> None:
    commit = GroupCommit(Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5))
    sha = commit.register(STORE)
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        commit.call(sha, ["k"], ["v", 1])
    # No retries with backoff: the webhook is answered 503 and the shop retries.
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("replica_running", [True, False])
def test_one_wait_per_batch_stands_for_every_call_in_it(replicated: Replicated, replica_running: bool) -> None:
    """With replicas required, every call of a batch is answered by the batch's WAIT: its reply once
    the replica holds the batch, NotReplicated (though its script ran) when it does not."""
    primary = Redis(port=replicated.primary.port)
    commit = Counted(primary, Replication(1, 100))
    sha = commit.register(STORE)
    assert commit.call(sha, ["warm"], ["up", 1]) == b"up"   # loads the script
    commit.batches.clear()
    assert commit.call(sha, ["one"], ["call", 1]) == b"call"
    assert commit.batches == [1]   # the scripts and their WAIT: one packet, one round trip
    commit.batches.clear()
    if not replica_running:
        replicated.replica.stop()
    outcomes: dict[int, object] = {}

    def call(n: int) -> None:
        try:
            outcomes[n] = commit.call(sha, [f"k{n}"], [f"v{n}", 20_000])
        except NotReplicated as exc:
            outcomes[n] = exc

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(24)))
    assert sum(commit.batches) >= 24
    if replica_running:
        assert outcomes == {n: f"v{n}".encode() for n in range(24)}
        with Redis(port=replicated.replica.port) as replica:   # on the replica as soon as answered
            assert replica.mget([f"k{n}" for n in range(24)]) == [f"v{n}".encode() for n in range(24)]
    else:
        assert all(isinstance(o, NotReplicated) for o in outcomes.values()) and len(outcomes) == 24
        assert primary.mget([f"k{n}" for n in range(24)]) == [f"v{n}".encode() for n in range(24)]
