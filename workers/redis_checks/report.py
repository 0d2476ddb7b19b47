"""The report on one Redis server: :func:`inspect_server` → :class:`ServerReport`."""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis

from workers.redis_checks import eviction, headroom, persistence, replicas
from workers.redis_checks.headroom import Headroom
from workers.redis_checks.readings import read
from workers.redis_checks.replicas import Replicas


class ServerReport(Headroom):
    """What is safe and what is not about the Redis the bridge uses: its eviction policy, persistence,
    replicas and (from :class:`Headroom`) memory. ``problems`` holds one sentence per problem, each naming the
    fix; empty when all is well.
    """

    policy: str | None  # maxmemory-policy; None: Redis would not say
    evicting: bool      # Redis may evict the bridge's keys: any policy but noeviction, or an unknown one
    persistence: str    # what Redis writes to disk
    crash_loses: str    # what a crash of Redis would lose
    crash_loss_seconds: float | None  # the same in seconds of writes: 0 nothing, inf everything, None unknown
    persists: bool | None  # False only when Redis is known to persist nothing
    memory: str         # used of maxmemory, the rate, days until full, in one line
    memory_tight: bool
    replicas: Replicas
    replicas_short: bool  # a problem with the replicas: too few in sync for BRIDGE_REDIS_MIN_REPLICAS, or the like
    problems: list[str]


def inspect_server(connection: Redis, stores: Iterable[str] | None = None, *, now: float | None = None,
                   min_replicas: int = 0) -> ServerReport:
    """Read Redis's eviction policy, persistence, memory and replicas (one round trip) and judge them.

    ``stores``: the store ids whose orders give the rate (None: every store with awards in Redis).
    ``min_replicas``: the process's ``BRIDGE_REDIS_MIN_REPLICAS``, which the replicas are judged by.
    Raises what redis-py raises when Redis cannot be reached.
    """
    readings = read(connection, stores, now)
    policy = eviction.policy(readings.config, readings.memory)
    kept = persistence.describe(readings.config, readings.persistence)
    room = headroom.measure(readings.memory, readings.stores, readings.now)
    policy_problem = eviction.problem(policy)
    memory_problem = headroom.problem(room)
    copies = replicas.measure(readings.replication, readings.config, min_replicas)
    replicas_problem = replicas.problem(copies)
    persistence_problem = None
    if kept.persists is False:
        persistence_problem = ("Redis persists nothing (no AOF, no RDB snapshots): a restart forgets the queue and "
                               "the ledger, so acknowledged webhooks are lost and refunds redelivered afterwards are "
                               "deducted again; turn AOF on (CONFIG SET appendonly yes, and appendonly yes with "
                               "appendfsync everysec in redis.conf, or your provider's persistence setting)")
    return ServerReport(
        policy=policy, evicting=policy_problem is not None, persistence=kept.summary, crash_loses=kept.crash_loses,
        crash_loss_seconds=kept.loss_seconds, persists=kept.persists, **room.model_dump(),
        memory=headroom.summary(room), memory_tight=memory_problem is not None,
        replicas=copies, replicas_short=replicas_problem is not None,
        problems=[p for p in (policy_problem, persistence_problem, memory_problem, replicas_problem) if p])
