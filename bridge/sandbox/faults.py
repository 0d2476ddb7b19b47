"""Request-level misbehaviour on demand: latency, rate limiting, timeouts, errors and fail rules.

The app asks :meth:`Faults.before` before it handles a Shop API request. Faults that refuse a
request (429, timeout, 500, a fail rule) answer *instead of* processing it, so nothing changes;
``error_after_commit_rate`` lets the change happen and then loses the answer, and
``slow_commit_rate`` makes the change, lists it only seconds later, and lets the answer time out.

A 429 storm (:meth:`Faults.start_storm`, ``POST /_sandbox/storm``) answers every Shop API call 429
with a given ``Retry-After`` for a given time, as when a key's budget is spent elsewhere (a till
sharing the key).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from bridge.sandbox.state import FailRule, SandboxConfig

# The requests that change something (a slow commit only makes sense for these).
CHANGES = ("transactions/create", "transactions/award-points", "transactions/deduct-points")


@dataclass
class Refusal:
    """An answer given instead of processing the request."""

    status: int
    message: str
    code: str | int | None
    errors: dict[str, list[str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Decision:
    """What to do with one request: refuse it, or process it (then maybe lose the answer)."""

    refusal: Refusal | None = None
    headers: dict[str, str] = field(default_factory=dict)  # rate-limit headers for every answer
    fail_after_commit: bool = False
    # Commit, list the change only later, and let the answer time out (for changes only).
    slow_commit: bool = False


class Faults:
    """The configured faults, a seedable random source, the rate limiter and counts of what was injected."""

    def __init__(self, config: SandboxConfig) -> None:
        self._lock = threading.Lock()
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._wake = threading.Event()  # set on close: sleeping requests end at once
        # How latency and timeouts wait; tests replace it to check waits without spending time.
        self.sleep: Callable[[float], object] = self._wake.wait
        self.injected: Counter[str] = Counter()
        self.config = config
        self._random = random.Random(config.seed)
        self._storm: tuple[float, int] | None = None  # (until, Retry-After) of a 429 storm

    def start_storm(self, seconds: float, retry_after: int) -> float:
        """Answer every Shop API call 429 with ``Retry-After: retry_after`` for ``seconds`` from now;
        returns when the storm ends (epoch seconds)."""
        until = time.time() + seconds
        with self._lock:
            self._storm = (until, retry_after)
        return until

    def _storm_refusal(self) -> Refusal | None:
        storm = self._storm
        if storm is None or time.time() >= storm[0]:
            return None
        self.note("storm")
        return Refusal(429, "Too Many Attempts.", "RATE_LIMIT_EXCEEDED", headers={"Retry-After": str(storm[1])})

    def configure(self, config: SandboxConfig) -> None:
        """Use a new configuration; a changed seed restarts the random sequence."""
        with self._lock:
            if config.seed != self.config.seed:
                self._random = random.Random(config.seed)
            self.config = config

    def reset(self) -> None:
        """Forget rate-limit windows and counts; restart the random sequence."""
        with self._lock:
            self._storage.reset()
            self._storm = None
            self.injected.clear()
            self._random = random.Random(self.config.seed)

    def close(self) -> None:
        """Wake every request sleeping in a latency or timeout fault (the server is stopping)."""
        self._wake.set()

    def note(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def _roll(self, rate: float) -> bool:
        # A disabled fault draws nothing, so a seeded run depends only on the faults switched on.
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def before(self, identity: str, path: str, body: dict[str, Any]) -> Decision:
        """Decide a Shop API request's fate; ``identity`` is the API key (or the client's address)."""
        cfg = self.config
        if cfg.latency_ms:
            self.sleep(cfg.latency_ms / 1000)
        decision = Decision()
        if refusal := self._storm_refusal():
            decision.refusal = refusal
            return decision
        if cfg.rate_limit_per_minute:
            decision.refusal, decision.headers = self._rate_limit(identity, cfg.rate_limit_per_minute,
                                                                  cfg.rate_limit_window_seconds)
            if decision.refusal:
                return decision
        if self._roll(cfg.timeout_rate):
            self.note("timeout")
            self.sleep(cfg.timeout_seconds)
            decision.refusal = Refusal(504, "Gateway Timeout", "GATEWAY_TIMEOUT")
        elif self._roll(cfg.error_rate):
            self.note("error")
            decision.refusal = Refusal(500, "Server Error", "SERVER_ERROR")
        elif rule := self._take_rule(cfg.fail_rules, path, body):
            self.note("fail_rule")
            decision.refusal = Refusal(rule.status, rule.message, rule.code, rule.errors)
        elif path.rstrip("/").endswith(CHANGES) and self._roll(cfg.slow_commit_rate):
            decision.slow_commit = True
        else:
            decision.fail_after_commit = self._roll(cfg.error_after_commit_rate)
        return decision

    def slow_answer(self) -> Refusal:
        """The answer a slow commit gives, late: the client has long given up by then."""
        self.note("slow_commit")
        self.sleep(self.config.timeout_seconds)
        return Refusal(504, "Gateway Timeout", "GATEWAY_TIMEOUT")

    def _rate_limit(self, identity: str, per_minute: int, window: int) -> tuple[Refusal | None, dict[str, str]]:
        item = RateLimitItemPerSecond(per_minute, window)
        allowed = self._limiter.hit(item, identity)
        reset_at, remaining = self._limiter.get_window_stats(item, identity)
        headers = {"X-RateLimit-Limit": str(per_minute), "X-RateLimit-Remaining": str(max(0, remaining)),
                   "X-RateLimit-Reset": str(math.ceil(reset_at))}
        if allowed:
            return None, headers
        self.note("rate_limited")
        headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
        return Refusal(429, "Too Many Attempts.", "RATE_LIMIT_EXCEEDED", headers=headers), headers

    def _take_rule(self, rules: list[FailRule], path: str, body: dict[str, Any]) -> FailRule | None:
        """The first live rule for this request, its count taken down by one."""
        path = path.rstrip("/")
        with self._lock:
            for rule in rules:
                suffix = "/" + rule.path.strip("/")
                if (rule.remaining != 0 and path.endswith(suffix)
                        and all(body.get(k) == v for k, v in rule.match.items())):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None
