"""Checks of the Redis server the bridge was given: it is the system of record, so say what is unsafe.

The queue and the ledger (which makes every point exactly-once for 400 days) live in Redis, and a
production Redis loses data in three quiet ways: it evicts keys under an eviction policy (every
ledger entry carries a TTL, so ``volatile-*`` policies evict them too), it forgets everything on a
restart when it persists nothing, and at ``maxmemory`` it refuses writes. With
``BRIDGE_REDIS_MIN_REPLICAS``, too few replicas in sync stop the bridge (every webhook answered
503). :func:`inspect_server` reads all of it in one round trip and returns a :class:`ServerReport`
whose ``problems`` name the fix; ``bridge check`` prints it and fails on a problem, web and worker
log the problems once at start (:func:`warn_at_start`), ``/metrics`` exports it
(:class:`RedisServerCollector`), ``/readyz`` reads the replicas alone (:mod:`.replicas`), and the
alerts reuse it.
"""

from workers.redis_checks import replicas
from workers.redis_checks.collector import RedisServerCollector
from workers.redis_checks.report import ServerReport, inspect_server
from workers.redis_checks.startup import warn_at_start

__all__ = ["RedisServerCollector", "ServerReport", "inspect_server", "replicas", "warn_at_start"]
