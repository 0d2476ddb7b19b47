"""The Redis connection: one per process, shared by the intake, the workers and the CLI."""

from __future__ import annotations

from redis import Redis


def connect(url: str, *, timeout: float = 5.0) -> Redis:
    """A Redis client for ``url`` (``redis://`` or TLS ``rediss://``).

    Timeouts are short on purpose: a webhook must be answered within seconds (Shopify gives 5), so
    an unreachable Redis has to turn into a quick 503 rather than a hung request. The client
    connects lazily and reconnects on its own; redis-py's pool is fork-safe (gunicorn, RQ).
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=30,
    )
