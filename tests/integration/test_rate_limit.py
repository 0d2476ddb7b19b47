"""The shared Loyalty.lt rate limiter against a real Redis: the limit, its pace, and the waits."""

from __future__ import annotations

import random

from redis import Redis

from tests.conftest import make_stores
from workers.ratelimit import PACE_SECONDS, ApiRateLimiter

WOO = "coffee-woo"


def limiter(redis_conn: Redis, window: float = 60, margin: float = 1.0) -> ApiRateLimiter:
    return ApiRateLimiter(redis_conn, window, margin, rng=random.Random(1))


def test_a_window_worth_of_slots_then_a_wait_until_the_oldest_frees(redis_conn: Redis) -> None:
    store = make_stores(**{WOO: {"rate_limit_per_minute": 5}})[WOO]
    rl = limiter(redis_conn, window=3, margin=1)
    assert [rl.acquire(store) for _ in range(5)] == [0.0] * 5
    wait = rl.acquire(store)
    assert 3 < wait <= 4 + 4 / 6           # the 4-second window, plus at most its spread
    assert rl.wait_before_trying(store) > 0


def test_the_pace_spreads_a_minute_of_calls_over_the_minute(redis_conn: Redis) -> None:
    """At Loyalty.lt's 60 a minute, a backlog may not spend the whole minute in its first second."""
    store = make_stores(**{WOO: {"rate_limit_per_minute": 60}})[WOO]
    rl = limiter(redis_conn)
    taken = 0
    while rl.acquire(store) == 0.0:
        taken += 1
    assert taken == 20                      # twice the average rate over 10 seconds (60 / 61 s)
    wait = rl.wait_before_trying(store)
    assert 0 < wait <= PACE_SECONDS + PACE_SECONDS / 6


def test_looking_takes_no_slot(redis_conn: Redis) -> None:
    store = make_stores(**{WOO: {"rate_limit_per_minute": 2}})[WOO]
    rl = limiter(redis_conn, window=30)
    assert [rl.wait_before_trying(store) for _ in range(5)] == [0.0] * 5
    assert [rl.acquire(store) for _ in range(2)] == [0.0, 0.0]
    assert rl.acquire(store) > 0


def test_stores_sharing_an_api_key_share_its_limit(redis_conn: Redis) -> None:
    stores = make_stores(**{WOO: {"rate_limit_per_minute": 2, "api_key": "lty_shared"},
                            "coffee-shopify": {"rate_limit_per_minute": 2, "api_key": "lty_shared"}})
    rl = limiter(redis_conn, window=30)
    assert rl.acquire(stores[WOO]) == 0.0 and rl.acquire(stores["coffee-shopify"]) == 0.0
    assert rl.acquire(stores[WOO]) > 0
    assert not any(b"lty_shared" in key for key in redis_conn.keys("*"))   # the key never reaches Redis
