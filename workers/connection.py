"""The Redis connection: one per process, shared by the intake, the workers and the CLI.

Also what every process says and does when Redis cannot be used: the URL is only ever shown with its
password masked (:func:`masked_url`), and a process that must wait for Redis waits here
(:func:`wait_for_redis`), with capped, jittered backoff and one log line per attempt.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import Redis
from redis.backoff import AbstractBackoff, EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.log_format import log

logger = logging.getLogger("workers.connection")

# What "Redis is not there" looks like to redis-py: refused, unreachable, timed out, or refusing our
# credentials (AuthenticationError is a ConnectionError). Anything else is an answer from a live Redis.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
MASK = "***"


class InvalidRedisUrl(ValueError):
    """``REDIS_URL`` cannot be parsed; the message names it with its password masked."""


def connect(url: str, *, timeout: float = 5.0) -> Redis:
    """A Redis client for ``url`` (``redis://`` or TLS ``rediss://``).

    Timeouts are short on purpose: a webhook must be answered within seconds (Shopify gives 5), so
    an unreachable Redis has to turn into a quick 503 rather than a hung request. The client
    connects lazily and reconnects on its own; redis-py's pool is fork-safe (gunicorn, RQ).
    Raises :class:`InvalidRedisUrl` when the URL cannot be used at all.
    """
    try:
        return Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            health_check_interval=30,
        )
    except ValueError as exc:
        raise InvalidRedisUrl(f"REDIS_URL {masked_url(url)} is not a valid Redis URL: "
                              f"{_scrub(str(exc), url)}") from None


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``redis://:***@host:6379/0``): safe to log and show."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = netloc.rpartition("@")[2]
            netloc = f"{parts.username or ''}:{MASK}@{host}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):  # redis-py also takes it as ?password=
            query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs], safe="*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        # Not even a URL (an unclosed IPv6 bracket...): mask anything that could be credentials.
        return re.sub(r"(?<=//)[^@/]*@", f"{MASK}@", re.sub(r"(?i)(password=)[^&]*", rf"\1{MASK}", url))


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's password, should an error message ever quote it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, MASK) if password else text


def describe(exc: BaseException) -> str:
    """A Redis error in one line: its kind and redis-py's message (which never holds the password)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def unavailable_message(url: str | None, exc: BaseException) -> str:
    """The one line a command prints when Redis cannot be used."""
    return f"cannot use Redis at {masked_url(url or '')}: {_scrub(describe(exc), url or '')}"


def wait_for_redis(connection: Redis, url: str | None, *, error: BaseException | None = None,
                   backoff: AbstractBackoff | None = None, should_stop: Callable[[], bool] = lambda: False,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """Block until ``connection`` answers PING again; True when it does, False if ``should_stop`` said so.

    ``error`` is the failure that sent the caller here (it counts as the first attempt). Each failed
    attempt logs one warning naming the masked URL, the error, the attempt and the next delay; the
    delay grows exponentially with jitter up to the backoff's cap, so many workers losing Redis at
    once do not come back in lockstep.
    """
    backoff = backoff or EqualJitterBackoff(cap=30.0, base=1.0)
    where = masked_url(url or "")
    started = time.monotonic()
    attempt = 0
    while True:
        if error is None:
            try:
                connection.ping()
            except UNAVAILABLE as exc:
                error = exc
        if error is None:
            if attempt:
                waited = round(time.monotonic() - started, 1)
                log(logger, f"Redis at {where} answers again after {attempt} failed attempts ({waited} s)",
                    logging.WARNING, redis=where, attempts=attempt, waited_s=waited)
            return True
        attempt += 1
        delay = round(backoff.compute(attempt), 2)
        reason = _scrub(describe(error), url or "")
        log(logger, f"Redis at {where} is unavailable ({reason}); attempt {attempt}, retrying in {delay} s",
            logging.WARNING, redis=where, error=reason, attempt=attempt, retry_in_s=delay)
        error = None
        if should_stop():
            return False
        sleep(delay)
        if should_stop():
            return False

