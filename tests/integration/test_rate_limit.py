"""The shared Loyalty.lt rate limiter against a real Redis: the limit, its pace, the line of waiting
jobs, and the pause after a 429."""

from __future__ import annotations

import threading
import time

import pytest
from redis import Redis

from tests.conftest import make_stores
from workers.ratelimit import LINE_RATE, PACE_SECONDS, PAUSE_BASE, PROBE_RECHECK, TICK, ApiRateLimiter

WOO = "coffee-woo"


def limiter(redis_conn: Redis, window: float = 60, margin: float = 1.0) -> ApiRateLimiter:
    return ApiRateLimiter(redis_conn, window, margin)


def test_a_window_worth_of_slots_then_a_wait_until_the_oldest_frees(redis_conn: Redis) -> None:
    store = make_stores(**{WOO: {"rate_limit_per_minute": 5}})[WOO]
    rl = limiter(redis_conn, window=3, margin=1)
    assert [rl.acquire(store) for _ in range(5)] == [0.0] * 5
    wait = rl.acquire(store)
    assert 3 < wait <= 4                    # the 4-second window
    assert rl.wait_before_trying(store) > 0


def test_the_pace_spreads_a_minute_of_calls_over_the_minute(redis_conn: Redis) -> None:
    """At Loyalty.lt's 60 a minute, a backlog may not spend the whole minute in its first second."""
    store = make_stores(**{WOO: {"rate_limit_per_minute": 60}})[WOO]
    rl = limiter(redis_conn)
    taken = 0
    while rl.acquire(store) == 0.0:
        taken += 1
    assert taken == 10                      # the average rate over 10 seconds (60 / 61 s)
    wait = rl.wait_before_trying(store)
    assert 0 < wait <= PACE_SECONDS + 61 / 60 / LINE_RATE   # second in line, a turn after the first


def test_looking_takes_no_slot(redis_conn: Redis) -> None:
    store = make_stores(**{WOO: {"rate_limit_per_minute": 2}})[WOO]
    rl = limiter(redis_conn, window=5)
    assert [rl.wait_before_trying(store) for _ in range(5)] == [0.0] * 5
    assert [rl.acquire(store) for _ in range(2)] == [0.0, 0.0]
    assert rl.acquire(store) > 0


def test_stores_sharing_an_api_key_share_its_limit(redis_conn: Redis) -> None:
    stores = make_stores(**{WOO: {"rate_limit_per_minute": 2, "api_key": "lty_shared"},
                            "coffee-shopify": {"rate_limit_per_minute": 2, "api_key": "lty_shared"}})
    rl = limiter(redis_conn, window=5)
    assert rl.acquire(stores[WOO]) == 0.0 and rl.acquire(stores["coffee-shopify"]) == 0.0
    assert rl.acquire(stores[WOO]) > 0
    assert not any(b"lty_shared" in key for key in redis_conn.keys("*"))   # the key never reaches Redis


def test_a_429_pauses_the_key_for_every_worker_then_one_probe_at_a_time(redis_conn: Redis) -> None:
    store = make_stores()[WOO]
    first, second = limiter(redis_conn), limiter(redis_conn)   # two worker processes
    assert first.acquire(store) == 0.0
    assert 1.9 < first.pause(store, 2) <= 2.001
    assert 1.5 < second.acquire(store) <= 2                  # the other worker honours it
    assert 1.5 < first.wait_before_trying(store) <= 2
    time.sleep(2.05)
    assert second.acquire(store) == 0.0                      # the pause is over: this call is the probe
    started = time.monotonic()
    assert 0 < first.acquire(store) <= PROBE_RECHECK         # one call at a time: it looked for a tick,
    assert time.monotonic() - started >= TICK - 0.1          # then waits to look again
    second.answered(store, 429)
    assert 1.4 < second.pause(store, 1.5) <= 1.501           # the probe's 429: the next pause
    assert first.acquire(store) > 1.0
    time.sleep(1.55)
    assert first.acquire(store) == 0.0                       # the next probe
    threading.Timer(0.2, first.answered, (store, 200)).start()
    started = time.monotonic()
    assert second.acquire(store) == 0.0                      # its answer, awaited in place, ends the pause
    assert time.monotonic() - started < TICK - 0.1
    assert first.acquire(store) == 0.0                       # for everybody


def test_a_pause_without_retry_after_doubles_with_each_429_in_a_row(redis_conn: Redis) -> None:
    store = make_stores()[WOO]
    rl = limiter(redis_conn)
    assert rl.pause(store, None) == pytest.approx(PAUSE_BASE, abs=0.05)
    assert rl.pause(store, None) <= PAUSE_BASE + 0.001       # a call already on the wire: the same pause
    time.sleep(PAUSE_BASE + 0.05)
    assert rl.acquire(store) == 0.0                          # the probe ...
    assert rl.pause(store, None) == pytest.approx(2 * PAUSE_BASE, abs=0.05)   # ... answered 429 again


def test_a_probe_that_never_answers_lets_another_job_probe_after_its_lease(redis_conn: Redis) -> None:
    store = make_stores()[WOO]
    dead, alive = ApiRateLimiter(redis_conn, probe_lease=0.5), ApiRateLimiter(redis_conn, probe_lease=0.5)
    dead.pause(store, 0.1)
    time.sleep(0.15)
    assert dead.acquire(store) == 0.0                        # its worker dies on the wire
    started = time.monotonic()
    assert alive.acquire(store) == 0.0                       # the lease ends: the next probe
    assert 0.3 < time.monotonic() - started < TICK


def test_waiting_jobs_stand_in_a_line_paced_a_little_faster_than_slots_free(redis_conn: Redis) -> None:
    """A backlog does not come back all at once at the next free slot: each job gets its own turn."""
    store = make_stores(**{WOO: {"rate_limit_per_minute": 6}})[WOO]
    rl = limiter(redis_conn, window=5, margin=1)
    assert [rl.acquire(store) for _ in range(6)] == [0.0] * 6
    turns = [rl.acquire(store) for _ in range(5)] + [rl.wait_before_trying(store) for _ in range(5)]
    assert 5 < turns[0] <= 6                                 # the first when the oldest slot frees
    gaps = [b - a for a, b in zip(turns, turns[1:])]
    assert all(abs(gap - 6 / 6 / LINE_RATE) < 0.02 for gap in gaps), gaps


def test_a_slot_that_frees_within_a_tick_is_waited_for_in_place(redis_conn: Redis) -> None:
    """Rescheduled, the job could not come back before RQ's next tick: the slot would stay unused."""
    store = make_stores(**{WOO: {"rate_limit_per_minute": 2}})[WOO]
    rl = limiter(redis_conn, window=1, margin=0)
    assert [rl.acquire(store) for _ in range(2)] == [0.0, 0.0]
    assert rl.wait_before_trying(store) == 0.0              # close enough: go on and take it
    started = time.monotonic()
    assert rl.acquire(store) == 0.0
    assert 0 < time.monotonic() - started <= 1.1
