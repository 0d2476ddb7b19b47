"""The Redis connection: one per process, shared by the intake, the workers and the CLI.

``REDIS_URL`` names one Redis (``redis://``, TLS ``rediss://``) or, for a primary with replicas
watched by Sentinel, the sentinels and the service they watch (``redis+sentinel://``, TLS
``rediss+sentinel://``): the client then asks the sentinels where the primary is at each
(re)connection, and so follows a failover. Everything else that opens connections of its own (RQ's
scheduler and worker pool, the intake's group commit, the rate limiter's storage) rebuilds them
from this client's pool, so it follows the same primary.

Also what every process says and does when Redis cannot be used: the URL is only ever shown with its
password masked (:func:`masked_url`), and a process that must wait for Redis waits here
(:func:`wait_for_redis`), with capped, jittered backoff and one log line per attempt. A Redis that is
full (``maxmemory`` reached under ``noeviction``: it answers, but refuses every write that needs
memory) is waited out the same way (:func:`is_full`, :func:`is_outage`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis import Redis
from redis.sentinel import Sentinel
from redis.backoff import AbstractBackoff, EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.log_format import log

logger = logging.getLogger("workers.connection")

# What "Redis is not there" looks like to redis-py: refused, unreachable, timed out, or refusing our
# credentials (AuthenticationError is a ConnectionError). Anything else is an answer from a live Redis.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
MASK = "***"
# Redis's refusal of a write at maxmemory. redis-py raises OutOfMemoryError for a command; a Lua
# script's refusal comes wrapped ("Error running script ... -OOM command not allowed ...") in a plain
# ResponseError before Redis 7.
_FULL_MESSAGE = "OOM command not allowed"
# Written with XX, so it never exists: SET is refused at maxmemory like any write that needs memory,
# and otherwise does nothing at all.
WRITE_PROBE_KEY = "lb:write-probe"


class InvalidRedisUrl(ValueError):
    """``REDIS_URL`` cannot be parsed; the message names it with its password masked."""


# Sentinel URL schemes, and whether they speak TLS (to the sentinels and to the Redis they name).
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
SENTINEL_PORT = 26379
# What a Sentinel URL's query may say: the sentinels' own credentials, when they have any.
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


def connect(url: str, *, timeout: float = 5.0) -> Redis:
    """A Redis client for ``url``: ``redis://``, TLS ``rediss://``, or through Sentinel
    ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`` (see
    :func:`through_sentinel`).

    Timeouts are short on purpose: a webhook must be answered within seconds (Shopify gives 5), so
    an unreachable Redis has to turn into a quick 503 rather than a hung request. The client
    connects lazily and reconnects on its own; redis-py's pool is fork-safe (gunicorn, RQ).
    Raises :class:`InvalidRedisUrl` when the URL cannot be used at all.
    """
    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout,
                               "health_check_interval": 30}
    try:
        if urlsplit(url).scheme in SENTINEL_SCHEMES:
            return through_sentinel(url, options)
        return Redis.from_url(url, **options)
    except ValueError as exc:
        raise InvalidRedisUrl(f"REDIS_URL {masked_url(url)} is not a valid Redis URL: "
                              f"{_scrub(str(exc), url)}") from None


def through_sentinel(url: str, options: dict[str, Any]) -> Redis:
    """A client of the primary that the sentinels of ``url`` name, as redis-py's
    :meth:`Sentinel.master_for` gives it: it asks them at each (re)connection, so it follows a failover.

    The URL's form is the one ``limits`` and rq-dashboard read: the sentinels (port 26379 unless
    said), then the service's name and the database. Its user and password are the Redis's;
    sentinels that require their own give them as ``?sentinel_username=&sentinel_password=``.
    Raises ValueError, saying what is wrong, for anything else.
    """
    parts = urlsplit(url)
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ValueError("it names no service: redis+sentinel://host:26379[,host:26379...]/<service>[/<db>]")
    if not db.isdigit() and db:
        raise ValueError(f"the database must be a number, not {db!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if unknown := sorted(set(query) - set(SENTINEL_OPTIONS)):
        raise ValueError(f"unknown option {unknown[0]!r} (a Sentinel URL takes {', '.join(SENTINEL_OPTIONS)})")
    ssl = SENTINEL_SCHEMES[parts.scheme]
    client = {**options, "db": int(db or 0), "ssl": ssl,
              "username": unquote(parts.username) if parts.username else None,
              "password": unquote(parts.password) if parts.password is not None else None}
    sentinel = {**{k: v for k, v in options.items() if k.startswith("socket_")}, "ssl": ssl,
                "username": query.get("sentinel_username") or None, "password": query.get("sentinel_password") or None}
    return Sentinel(_sentinel_hosts(parts.netloc.rpartition("@")[2]), sentinel_kwargs=sentinel,
                    **client).master_for(service)


def _sentinel_hosts(hosts: str) -> list[tuple[str, int]]:
    """``host[:port],...`` (IPv6 in brackets) as (host, port) pairs."""
    found = []
    for spec in hosts.split(","):
        host, colon, port = spec.rpartition(":")
        if not colon or host.startswith("[") and not host.endswith("]") or spec.endswith("]"):
            host, port = spec, str(SENTINEL_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{spec!r} is not a sentinel's host[:port]")
        found.append((host, int(port)))
    return found


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing a write because it reached ``maxmemory`` (reads still work)."""
    return isinstance(exc, OutOfMemoryError) or (isinstance(exc, ResponseError) and _FULL_MESSAGE in str(exc))


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means "wait for Redis and try again": Redis is unreachable, or full."""
    return isinstance(exc, UNAVAILABLE) or is_full(exc)


def takes_writes(connection: Redis) -> None:
    """Raise what Redis answers a write when it cannot take one (full: OutOfMemoryError); writes nothing."""
    connection.set(WRITE_PROBE_KEY, b"", xx=True)


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
        # redis-py also takes it as ?password=; a Sentinel URL has ?sentinel_password=.
        if any(_is_password(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _is_password(k) else v) for k, v in pairs], safe="*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        # Not even a URL (an unclosed IPv6 bracket...): mask anything that could be credentials.
        return re.sub(r"(?<=//)[^@/]*@", f"{MASK}@", re.sub(r"(?i)(password=)[^&]*", rf"\1{MASK}", url))


def _is_password(name: str) -> bool:
    return name.lower().endswith("password")


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's passwords, should an error message ever quote one."""
    try:
        parts = urlsplit(url)
        passwords = [parts.password, *(v for k, v in parse_qsl(parts.query) if _is_password(k))]
    except ValueError:
        passwords = []
    for password in passwords:
        if password:
            text = text.replace(password, MASK)
    return text


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
    """Block until ``connection`` answers PING again (and, if it was full, takes writes again); True when
    it does, False if ``should_stop`` said so.

    ``error`` is the failure that sent the caller here (it counts as the first attempt). Each failed
    attempt logs one warning naming the masked URL, the error, the attempt and the next delay; the
    delay grows exponentially with jitter up to the backoff's cap, so many workers losing Redis at
    once do not come back in lockstep. A full Redis answers PING, so once one was found full, only a
    write it takes (:func:`takes_writes`) ends the wait.
    """
    backoff = backoff or EqualJitterBackoff(cap=30.0, base=1.0)
    where = masked_url(url or "")
    started = time.monotonic()
    attempt = 0
    full = False
    while True:
        if error is None:
            try:
                connection.ping()
                if full:
                    takes_writes(connection)
            except RedisError as exc:
                if not is_outage(exc):
                    raise
                error = exc
        if error is None:
            if attempt:
                waited = round(time.monotonic() - started, 1)
                again = "takes writes again" if full else "answers again"
                log(logger, f"Redis at {where} {again} after {attempt} failed attempts ({waited} s)",
                    logging.WARNING, redis=where, attempts=attempt, waited_s=waited)
            return True
        attempt += 1
        full = full or is_full(error)
        delay = round(backoff.compute(attempt), 2)
        reason = _scrub(describe(error), url or "")
        state = ("is full: it refuses writes until memory is freed or maxmemory raised" if is_full(error)
                 else "is unavailable")
        log(logger, f"Redis at {where} {state} ({reason}); attempt {attempt}, retrying in {delay} s",
            logging.WARNING, redis=where, error=reason, attempt=attempt, retry_in_s=delay, full=is_full(error))
        error = None
        if should_stop():
            return False
        sleep(delay)
        if should_stop():
            return False

