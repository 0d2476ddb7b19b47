"""Loyalty.lt's rate limit (60 requests a minute per API key), shared by every worker process.

The ``limits`` package keeps a moving window per API key in Redis. A job that finds the window
full does not sleep on a worker: it is rescheduled (:class:`workers.job_errors.Wait`) to when a
slot frees, with a little spread so a backlog comes back a few at a time, and other stores' jobs go
on meanwhile.

The window is a little longer than the server's (``rate_limit_margin``, 1 s): a request reaches
Loyalty.lt a little after the bridge counted it, and the spare second absorbs that, so a backlog
drains at ~98% of the limit without a 429.
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

    @staticmethod
    def key(store: StoreConfig) -> str:
        """Stores sharing an API key share its limit; the key itself never reaches Redis."""
        return hashlib.sha256(store.api_key.encode()).hexdigest()[:16]

    def acquire(self, store: StoreConfig) -> float:
        """Take a slot: 0 when taken, else the seconds to wait before trying again."""
        item = RateLimitItemPerSecond(store.rate_limit_per_minute, self.window)
        key = self.key(store)
        if self._limiter.hit(item, key):
            return 0.0
        reset_at, _ = self._limiter.get_window_stats(item, key)
        # Come back when the oldest slot frees, spread over a sixth of the window: wide enough that a
        # backlog does not return all at once, narrow enough that freed slots do not go unused.
        return max(reset_at - time.time(), 0.0) + self._rng.uniform(0, self.window / 6)
