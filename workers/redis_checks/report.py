"""The report on one Redis server: :func:`inspect_server` → :class:`ServerReport`."""

from __future__ import annotations

from collections.abc import Iterable

from redis import Redis

from workers.redis_checks import eviction, headroom, persistence
from workers.redis_checks.headroom import Headroom
from workers.redis_checks.readings import read


class ServerReport(Headroom):
    """What is safe and what is not about the Redis the bridge uses: its eviction policy, persistence
    and (from :class:`Headroom`) memory. ``problems`` holds one sentence per problem, each naming the
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
    problems: list[str]


def inspect_server(connection: Redis, stores: Iterable[str] | None = None, *, now: float | None = None) -> ServerReport:
    """Read Redis's eviction policy, persistence and memory (one round trip) and judge them.

    ``stores``: the store ids whose orders give the rate (None: every store with awards in Redis).
    Raises what redis-py raises when Redis cannot be reached.
    """
    readings = read(connection, stores, now)
    policy = eviction.policy(readings.config, readings.memory)
    kept = persistence.describe(readings.config, readings.persistence)
    room = headroom.measure(readings.memory, readings.stores, readings.now)
    policy_problem = eviction.problem(policy)
    memory_problem = headroom.problem(room)
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
        problems=[p for p in (policy_problem, persistence_problem, memory_problem) if p])
