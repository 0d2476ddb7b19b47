"""Loyalty.lt's rate limit (60 requests a minute per API key), shared by every worker process.

The ``limits`` package keeps moving windows per API key in Redis. A job that finds no slot does
not sleep on a worker: it is rescheduled (:class:`workers.job_errors.Wait`) to when a slot frees,
with a little spread so a backlog comes back a few at a time, and other stores' jobs go on
meanwhile.

Two windows per key:

- the limit itself, over a window a little longer than the server's (``rate_limit_margin``, 1 s):
  a request reaches Loyalty.lt a little after the bridge counted it, and the spare second absorbs
  that, so a backlog drains at up to 60/61 of the limit without a 429;
- a pace: at most twice the average rate over any 10 seconds. Without it a backlog spends the whole
  minute's allowance in the first seconds, and every following minute tries to replay that burst,
  which the workers (busy rescheduling the jobs still waiting) cannot quite do: slots go unused.
"""

from __future__ import annotations

import hashlib
import math
import random
import time

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from config.stores import StoreConfig

KEY_PREFIX = "lb:ratelimit"
SPREAD_SLOTS = 20
PACE_SECONDS = 10
PACE_BURST = 2


def rate_limited(store: StoreConfig) -> str:
    """Why a job of ``store`` waits for a slot (its log line and ``bridge status``)."""
    return f"rate limit of {store.rate_limit_per_minute}/min for {store.id}'s API key reached"


class ApiRateLimiter:
    """Take a slot for a call to Loyalty.lt, or learn how long to wait for one."""

    def __init__(self, connection: Redis, window: float = 60, margin: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self.window = max(1, math.ceil(window + margin))
        kwargs = connection.connection_pool.connection_kwargs
        scheme = "rediss" if connection.connection_pool.connection_class.__name__ == "SSLConnection" else "redis"
        # limits builds its client from a URI; handing it our pool reuses our connections and TLS settings.
        uri = f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        self._limiter = MovingWindowRateLimiter(
            RedisStorage(uri, connection_pool=connection.connection_pool, key_prefix=KEY_PREFIX))
        self._rng = rng or random.Random()
        # Until when this process last found each key's windows full: only then is looking before
        # working worth its two round trips (a hint; ``acquire`` decides).
        self._full_until: dict[str, float] = {}

    @staticmethod
    def key(store: StoreConfig) -> str:
        """Stores sharing an API key share its limit; the key itself never reaches Redis."""
        return hashlib.sha256(store.api_key.encode()).hexdigest()[:16]

    def _windows(self, store: StoreConfig) -> tuple[RateLimitItemPerSecond, RateLimitItemPerSecond]:
        """The pace and the limit for ``store``'s API key."""
        limit = store.rate_limit_per_minute
        pace = RateLimitItemPerSecond(max(1, math.ceil(limit * PACE_BURST * PACE_SECONDS / self.window)),
                                      PACE_SECONDS)
        return pace, RateLimitItemPerSecond(limit, self.window)

    def acquire(self, store: StoreConfig) -> float:
        """Take a slot: 0 when taken, else the seconds to wait before trying again."""
        key = self.key(store)
        for item in self._windows(store):
            # A pace slot taken when the limit then says no is simply not used: the pace has room.
            if not self._limiter.hit(item, key):
                return self._wait(item, key)
        return 0.0

    def wait_before_trying(self, store: StoreConfig) -> float:
        """0 when a slot is free now (without taking it), else the seconds to wait.

        A job looks before doing its work, so that during a backlog the jobs that cannot call yet
        are rescheduled cheaply instead of mapping the cart and locking the order first. Only while
        this process has lately found the windows full: otherwise the answer is 0 at no cost.
        """
        key = self.key(store)
        if time.time() >= self._full_until.get(key, 0.0):
            return 0.0
        return max(0.0 if self._limiter.test(item, key) else self._wait(item, key) for item in self._windows(store))

    def _wait(self, item: RateLimitItemPerSecond, key: str) -> float:
        reset_at, _ = self._limiter.get_window_stats(item, key)
        self._full_until[key] = max(self._full_until.get(key, 0.0), reset_at + item.get_expiry())
        seconds = item.get_expiry()
        # Come back when the oldest slot frees, spread over the time a few dozen slots take to free
        # (at most a sixth of the window): wide enough that a backlog does not return all at once,
        # narrow enough that freed slots do not go unused.
        spread = min(seconds / 6, SPREAD_SLOTS * seconds / item.amount)
        return max(reset_at - time.time(), 0.0) + self._rng.uniform(0, spread)
