"""Loyalty.lt's rate limit (60 requests a minute per API key), shared by every worker process.

The ``limits`` package keeps moving windows per API key in Redis. A job that finds no slot does
not sleep on a worker: it is rescheduled (:class:`workers.job_errors.Wait`) to its turn, and other
stores' jobs go on meanwhile.

Two windows per key:

- the limit itself, over a window a little longer than the server's (``rate_limit_margin``, 1 s):
  a request reaches Loyalty.lt a little after the bridge counted it, and the spare second absorbs
  that, so a backlog drains at up to 60/61 of the limit without a 429;
- a pace: at most the limit's average rate over any 10 seconds. A slot of the limit frees a window
  after its call, so calls made in a burst free their slots in a burst a window later; without the
  pace a backlog spends the minute's allowance in its first seconds, and each following window
  must find takers for a whole burst of slots at once.

Jobs that must wait stand in a line: each is given the next turn after the last one given, one and
a half times as often as slots free on average (``LINE_RATE``), and never before the first slot
frees. So a backlog comes back a little faster than slots free, whatever its size and the limit:
a slot soon finds a taker, and the few jobs that find none go to the end of the line. (When every
waiting job came back at the next free slot, a backlog of thousands came back every few seconds
and kept the workers busy rescheduling it, while freed slots waited behind it in the queue.) A
slot that frees within a tick of RQ's scheduler is waited for in place: the job could not come
back sooner, and the slot would stay unused until then.

And a pause: a 429 means the key's budget is spent (a store's till may share the key), so the job
that got it records a pause for the key until ``Retry-After``, and no worker calls with that key
until it ends. Then one call at a time tries (the probe): the first answer that is not a 429 ends
the pause for everybody; another 429 records the next pause. So a storm of 429s costs one 429 per
pause, not one per job.
"""

from __future__ import annotations

import hashlib
import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from config.stores import StoreConfig

KEY_PREFIX = "lb:ratelimit"
PACE_SECONDS = 10
PACE_BURST = 1  # the pace's rate, in multiples of the limit's average
# Waiting jobs come back this many times as often as slots free on average: more often than the
# pace lets calls through, so that slots freed close together soon find takers.
LINE_RATE = 1.5
# A pause without Retry-After: 1 s, doubled with each 429 in a row, at most the window.
PAUSE_BASE = 1.0
# RQ's scheduler looks for due jobs once a second, and keeps their times in whole seconds.
TICK = 1.0
# How often jobs look again while the probe's call is on the wire: in place, and rescheduled.
PROBE_POLL = 0.05
PROBE_RECHECK = TICK
TOO_MANY_REQUESTS = 429

# KEYS[1] the line. ARGV: now, the first slot's free time, the spacing of turns, how long the line
# outlives its last turn (s). The next turn: after the last one given, not before the first slot frees.
_NEXT_TURN = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local turn = math.max(tonumber(ARGV[2]), last + tonumber(ARGV[3]))
redis.call('SET', KEYS[1], string.format('%.6f', turn), 'PX', math.ceil((turn - tonumber(ARGV[1]) + tonumber(ARGV[4])) * 1000))
return string.format('%.6f', turn)
"""

# KEYS[1] the pause. ARGV: now, Retry-After ('' if none), base, cap, how long the record outlives
# the pause (s). A 429 after the pause ended (the probe's) starts a new one, and counts as a strike;
# the 429s of calls that were already on the wire extend the current one.
_PAUSE = """
local now = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
local strikes = tonumber(redis.call('HGET', KEYS[1], 'strikes') or '0')
if now >= current then strikes = strikes + 1 end
local seconds = tonumber(ARGV[2]) or math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (strikes - 1))
local ends = math.max(current, now + seconds)
redis.call('HSET', KEYS[1], 'until', string.format('%.6f', ends), 'probe', '0', 'strikes', strikes)
redis.call('PEXPIRE', KEYS[1], math.ceil((ends - now + tonumber(ARGV[5])) * 1000))
return string.format('%.6f', ends)
"""

# KEYS[1] the pause. ARGV: now, the probe's lease (s), '1' to take the probe.
# Answers '0' (no pause), seconds left of the pause, 'probe' (the pause is over: call, alone), or
# a negative number (the probe's call is on the wire; its lease ends in that many seconds).
_PAUSED = """
local state = redis.call('HMGET', KEYS[1], 'until', 'probe')
if not state[1] then return '0' end
local now = tonumber(ARGV[1])
local ends = tonumber(state[1])
if now < ends then return string.format('%.6f', ends - now) end
local probe = tonumber(state[2] or '0')
if probe > now then return string.format('%.6f', now - probe) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'probe', string.format('%.6f', now + tonumber(ARGV[2]))) end
return 'probe'
"""


def rate_limited(store: StoreConfig) -> str:
    """Why a job of ``store`` waits for a slot (its log line and ``bridge status``)."""
    return f"rate limit of {store.rate_limit_per_minute}/min for {store.id}'s API key reached"


class ApiRateLimiter:
    """Take a slot for a call to Loyalty.lt, or learn how long to wait for one."""

    def __init__(self, connection: Redis, window: float = 60, margin: float = 1.0,
                 probe_lease: float = 20.0) -> None:
        self.window = max(1, math.ceil(window + margin))
        # How long the probe's call may take (the client's timeouts): past it another job probes.
        self.probe_lease = probe_lease
        self._connection = connection
        # Our pool, not a URI: the windows share our connections, TLS and Sentinel (a
        # SentinelConnectionPool follows the primary; given a pool, limits reads from the URI only
        # which client library to use). Not limits' own RedisSentinelStorage: it builds a Sentinel of
        # its own, reads the windows from replicas, which lag (a count read short is a 429), and
        # gives the Redis password to the sentinels.
        self._limiter = MovingWindowRateLimiter(
            RedisStorage("redis://", connection_pool=connection.connection_pool, key_prefix=KEY_PREFIX))
        self._next_turn = connection.register_script(_NEXT_TURN)
        self._pause = connection.register_script(_PAUSE)
        self._paused = connection.register_script(_PAUSED)
        # Until when this process last found each key's windows full or paused: only then is looking
        # before working worth its round trips (a hint; ``acquire`` decides).
        self._full_until: dict[str, float] = {}
        # Keys whose probe this process holds (its call is on the wire).
        self._probing: set[str] = set()

    # Key layout: one place (the windows' keys are the ``limits`` package's, under the same prefix).
    @staticmethod
    def key(store: StoreConfig) -> str:
        """Stores sharing an API key share its limit; the key itself never reaches Redis."""
        return hashlib.sha256(store.api_key.encode()).hexdigest()[:16]

    @staticmethod
    def line_key(key: str) -> str:
        return f"{KEY_PREFIX}:line:{key}"

    @staticmethod
    def pause_key(key: str) -> str:
        return f"{KEY_PREFIX}:pause:{key}"

    def _windows(self, store: StoreConfig) -> tuple[RateLimitItemPerSecond, RateLimitItemPerSecond]:
        """The pace and the limit for ``store``'s API key."""
        limit = store.rate_limit_per_minute
        pace = RateLimitItemPerSecond(max(1, math.ceil(limit * PACE_BURST * PACE_SECONDS / self.window)),
                                      PACE_SECONDS)
        return pace, RateLimitItemPerSecond(limit, self.window)

    def acquire(self, store: StoreConfig) -> float:
        """Take a slot: 0 when taken, else the seconds to wait before trying again.

        A slot that frees within a tick of RQ's scheduler is waited for here: rescheduled, the job
        could not come back sooner than the next tick, and the slot would stay unused until then.
        """
        key = self.key(store)
        deadline = time.time() + TICK
        while True:
            wait, probe_out = self._pause_wait(key, take_probe=True)
            if wait > 0:
                # The probe's answer usually comes within milliseconds: look again soon.
                until = time.time() + (PROBE_POLL if probe_out else wait)
                if until > deadline:
                    return min(wait, PROBE_RECHECK) if probe_out else wait
            else:
                full = self._take(store, key)
                if full is None:
                    return 0.0
                if key in self._probing:  # no call after all: let another job probe
                    self._probing.discard(key)
                    self._connection.hset(self.pause_key(key), "probe", "0")
                _, until = full
                if until > deadline:
                    return self._turn(store, key, until)
            time.sleep(max(until - time.time(), 0.0))

    def wait_before_trying(self, store: StoreConfig) -> float:
        """0 when a slot is free now or within a tick (without taking it), else the seconds to wait.

        A job looks before doing its work, so that during a backlog or a pause the jobs that cannot
        call yet are rescheduled cheaply instead of mapping the cart and locking the order first.
        Only while this process has lately found the windows full or the key paused: otherwise the
        answer is 0 at no cost.
        """
        key = self.key(store)
        if time.time() >= self._full_until.get(key, 0.0):
            return 0.0
        wait, probe_out = self._pause_wait(key, take_probe=False)
        if wait > TICK and not probe_out:
            return wait
        for item in self._windows(store):
            if not self._limiter.test(item, key):
                frees_at = self._frees_at(item, key)
                if frees_at > time.time() + TICK:
                    return self._turn(store, key, frees_at)
        return 0.0

    def _take(self, store: StoreConfig, key: str) -> tuple[RateLimitItemPerSecond, float] | None:
        """Take a slot of each window; None when taken, else the full window and when it frees."""
        pace, limit = self._windows(store)
        # The pace runs at the limit's average rate: a pace slot taken when the limit then says no
        # would be lost, so while the windows have lately been full, look at the limit first (only
        # a race between workers, or the first refusal after a quiet spell, can still lose one).
        if time.time() < self._full_until.get(key, 0.0) and not self._limiter.test(limit, key):
            return limit, self._frees_at(limit, key)
        for item in (pace, limit):
            if not self._limiter.hit(item, key):
                return item, self._frees_at(item, key)
        return None

    def pause(self, store: StoreConfig, retry_after: float | None) -> float:
        """Loyalty.lt answered 429: no call with this key until ``retry_after`` seconds from now (or,
        without it, a pause that doubles with each 429 in a row). Returns the seconds until the
        key's pause ends, which a call already on the wire may have made later."""
        key = self.key(store)
        self._probing.discard(key)
        now = time.time()
        ends = float(self._pause(keys=[self.pause_key(key)],
                                 args=[now, "" if retry_after is None else max(retry_after, 0.0),
                                       PAUSE_BASE, self.window, self.window]))
        self._full_until[key] = max(self._full_until.get(key, 0.0), ends + self.window)
        return max(ends - now, 0.0)

    def answered(self, store: StoreConfig, status: int | None) -> None:
        """A call of this process got its answer (``status``; None when none came). If it was the
        probe after a pause and not a 429, the pause is over for every worker."""
        key = self.key(store)
        if key in self._probing:
            self._probing.discard(key)
            if status != TOO_MANY_REQUESTS:
                self._connection.delete(self.pause_key(key))

    def _pause_wait(self, key: str, take_probe: bool) -> tuple[float, bool]:
        """Seconds to wait for the key's pause (0 when there is none, or this job is its probe), and
        whether that is the lease of a probe whose call is on the wire."""
        answer = self._paused(keys=[self.pause_key(key)],
                              args=[time.time(), self.probe_lease, "1" if take_probe else "0"])
        answer = answer.decode() if isinstance(answer, bytes) else str(answer)
        if answer == "probe":
            if take_probe:
                self._probing.add(key)
            return 0.0, False
        wait = float(answer)
        if wait == 0:
            return 0.0, False
        self._full_until[key] = max(self._full_until.get(key, 0.0), time.time() + abs(wait) + self.window)
        return abs(wait), wait < 0

    def _frees_at(self, item: RateLimitItemPerSecond, key: str) -> float:
        """When the oldest slot of ``item``'s full window frees."""
        frees_at, _ = self._limiter.get_window_stats(item, key)
        self._full_until[key] = max(self._full_until.get(key, 0.0), frees_at + item.get_expiry())
        return frees_at

    def _turn(self, store: StoreConfig, key: str, frees_at: float) -> float:
        """The wait for the job's turn in the key's line, a window being full until ``frees_at``."""
        # Turns follow the limit's average rate whichever window is full: the pace only shapes bursts.
        spacing = self.window / store.rate_limit_per_minute / LINE_RATE
        now = time.time()
        turn = float(self._next_turn(keys=[self.line_key(key)], args=[now, frees_at, spacing, self.window]))
        return max(turn - now, 0.0)
