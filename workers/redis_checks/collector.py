"""The Redis server's report as Prometheus gauges, read when ``/metrics`` is scraped (one round trip)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from workers.redis_checks.replicas import Replicas
from workers.redis_checks.report import inspect_server


class RedisServerCollector(Collector):
    """``bridge_redis_*``: eviction policy, persistence, memory and days until full, replicas."""

    def __init__(self, connection: Redis, stores: Iterable[str], min_replicas: int = 0) -> None:
        self.connection = connection
        self.stores = list(stores)
        self.min_replicas = min_replicas

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            report = inspect_server(self.connection, self.stores, min_replicas=self.min_replicas)
        except RedisError:
            return
        policy = GaugeMetricFamily("bridge_redis_eviction_policy", "Redis's maxmemory-policy (1 for the policy in "
                                   "force; \"unknown\" when Redis will not say).", labels=["policy"])
        policy.add_metric([report.policy or "unknown"], 1.0)
        yield policy
        yield GaugeMetricFamily("bridge_redis_evicting", "1 when Redis may evict the bridge's keys (a policy other "
                                "than noeviction, or an unknown one).", value=float(report.evicting))
        if report.persists is not None:
            yield GaugeMetricFamily("bridge_redis_persists", "1 when Redis writes its data to disk (AOF or RDB), "
                                    "0 when a restart forgets everything.", value=float(report.persists))
        if report.crash_loss_seconds is not None:
            yield GaugeMetricFamily("bridge_redis_crash_loss_seconds", "The most seconds of acknowledged writes a "
                                    "crash of Redis loses (0 with appendfsync always, +Inf without persistence).",
                                    value=report.crash_loss_seconds)
        yield GaugeMetricFamily("bridge_redis_used_memory_bytes", "Redis's used_memory.", value=report.used_memory)
        yield GaugeMetricFamily("bridge_redis_maxmemory_bytes", "Redis's maxmemory (0: no limit).",
                                value=report.maxmemory)
        if report.orders_per_day is not None:
            yield GaugeMetricFamily("bridge_redis_orders_per_day", "Orders awarded per day over the last week.",
                                    value=report.orders_per_day)
        if report.bytes_per_order is not None:
            yield GaugeMetricFamily("bridge_redis_bytes_per_order", "Redis memory per order held (used beyond an "
                                    "empty server's, over the orders the awards index holds).",
                                    value=report.bytes_per_order)
        if report.days_until_full is not None:
            yield GaugeMetricFamily("bridge_redis_days_until_full", "Days until Redis reaches maxmemory at the "
                                    "current rate of orders.", value=report.days_until_full)
        yield from _replica_gauges(report.replicas)
        yield GaugeMetricFamily("bridge_redis_problems", "Problems bridge check reports about Redis (eviction, "
                                "persistence, memory, replicas).", value=float(len(report.problems)))


def _replica_gauges(r: Replicas) -> Iterator[GaugeMetricFamily]:
    """The replicas: how many are connected, in sync and required, and each one's lag."""
    if r.role is None:
        return
    yield GaugeMetricFamily("bridge_redis_connected_replicas", "Replicas connected to the Redis primary "
                            "(connected_slaves).", value=r.connected)
    yield GaugeMetricFamily("bridge_redis_replicas_in_sync", "Replicas online that acknowledged within "
                            "min-replicas-max-lag seconds.", value=r.in_sync)
    yield GaugeMetricFamily("bridge_redis_replicas_required", "BRIDGE_REDIS_MIN_REPLICAS: with fewer in sync, "
                            "every webhook is answered 503.", value=r.required)
    lag = GaugeMetricFamily("bridge_redis_replica_lag_seconds", "Seconds since the replica's last "
                            "acknowledgement.", labels=["replica"])
    behind = GaugeMetricFamily("bridge_redis_replica_behind_bytes", "Bytes of the replication stream the "
                               "replica has not acknowledged.", labels=["replica"])
    for replica in r.replicas:
        if replica.lag is not None:
            lag.add_metric([replica.address], replica.lag)
        if replica.behind is not None:
            behind.add_metric([replica.address], replica.behind)
    yield lag
    yield behind
