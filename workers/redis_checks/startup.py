"""What web and worker processes say about their Redis when they start: one warning per problem."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis import Redis
from redis.exceptions import RedisError

from config.log_format import log
from workers.redis_checks.report import ServerReport, inspect_server

logger = logging.getLogger("workers.redis_checks")


def warn_at_start(connection: Redis, stores: Iterable[str], process: str, min_replicas: int = 0) -> ServerReport | None:
    """Inspect Redis once and log each problem as a warning; None when Redis cannot be read now (the
    process waits for it elsewhere, and ``/metrics`` and ``bridge check`` report it later)."""
    try:
        report = inspect_server(connection, stores, min_replicas=min_replicas)
    except RedisError:
        return None
    for problem in report.problems:
        log(logger, problem, logging.WARNING, process=process, policy=report.policy or "unknown",
            persistence=report.persistence)
    return report
