"""Running workers: RQ's own worker (or worker pool) with the bridge's context installed.

Jobs run in the worker process (``SimpleWorker``) by default: they are short HTTP calls with
timeouts, and keeping the process keeps the HTTPS connections to Loyalty.lt alive between jobs.
``fork=True`` gives each job its own process (RQ's classic ``Worker``) for stricter isolation.
A worker never exits because Redis is away: it waits for it, at start and under a running loop
(:mod:`workers.redis_outages`).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.worker_pool import WorkerPool

from config.log_format import log
from workers import context
from workers.alerts.loop import AlertLoop
from workers.connection import describe, is_outage, wait_for_redis
from workers.context import WorkerContext
from workers.metrics import serve_metrics, token_of
from workers.redis_checks import warn_at_start
from workers.redis_outages import RidesOutRedisOutages
from workers.shop.tasks import ShopTasks

logger = logging.getLogger("workers.worker")


class _Tuned:
    """The bridge's settings for RQ workers: how soon a dead worker's job is handed on."""

    heartbeat_grace = 60
    maintenance_every = 60

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", self.maintenance_every)
        # An idle worker blocks on the queue for worker_ttl - 15 s and only runs maintenance between
        # waits: keep the wait as short as the maintenance interval.
        kwargs.setdefault("worker_ttl", self.maintenance_every + 15)
        super().__init__(*args, **kwargs)
        self.shop_tasks = ShopTasks()

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance, then requeue any open job RQ lost track of (see EventQueue.sweep), and
        start the shops' due syncs and subscription watches (see workers.shop.tasks)."""
        super().run_maintenance_tasks()  # type: ignore[misc]
        ctx = context.current()
        ctx.events.sweep(older_than=max(30.0, 2.0 * self.maintenance_every))
        self.shop_tasks.kick(ctx)


class BridgeWorker(RidesOutRedisOutages, _Tuned, SimpleWorker):
    """RQ's in-process worker. Nothing refreshes a job's heartbeat while it runs in-process, so the
    heartbeat covers the whole job timeout, plus the grace after which a dead worker's job is retried."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(max((job.timeout or self.job_monitoring_interval) - working_time, 1)) + self.heartbeat_grace


class BridgeForkingWorker(RidesOutRedisOutages, _Tuned, Worker):
    """RQ's forking worker (its parent refreshes the heartbeat while the job runs), with the same grace."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        remaining = (job.timeout or self.job_monitoring_interval) - working_time
        return int(max(min(remaining, self.job_monitoring_interval), 1)) + self.heartbeat_grace


def run_worker(ctx: WorkerContext, *, burst: bool = False, processes: int = 1, fork: bool = False,
               logging_level: str = "INFO", metrics_port: int | None = None) -> bool:
    """Work on the bridge's queue until stopped (or until it is empty, with ``burst``).

    The scheduler runs alongside, since retries and waits are scheduled for later. With
    ``metrics_port``, the jobs' and Loyalty.lt calls' metrics are served there for Prometheus.
    Unless ``burst``, the process also sends alerts and runs their periodic checks (a thread).
    While Redis is away, at start or later, the worker waits for it (one log line per attempt).
    """
    context.install(ctx)
    if metrics_port:
        serve_metrics(metrics_port, ctx.connection, ctx.settings.queue_name, token_of(ctx.settings),
                      stores=ctx.stores, min_replicas=ctx.settings.redis_min_replicas)
    if not burst:
        # Alerts leave from every long-running process (see workers.alerts.loop).
        AlertLoop(ctx.alerts).start()
    base = BridgeForkingWorker if fork else BridgeWorker
    # A subclass carrying this process's settings (RQ's pool builds workers from a class).
    options: dict[str, Any] = {"heartbeat_grace": ctx.settings.worker_heartbeat_grace,
                               "maintenance_every": ctx.settings.worker_maintenance_interval,
                               "redis_url": ctx.settings.redis_url,
                               "redis_wait_base_delay": ctx.settings.redis_wait_base_delay,
                               "redis_wait_max_delay": ctx.settings.redis_wait_max_delay}
    worker_class: type[BridgeWorker] | type[BridgeForkingWorker] = type(base.__name__, (base,), options)
    queue = Queue(ctx.settings.queue_name, connection=ctx.connection)
    error: BaseException | None = None
    checked = False
    while True:
        wait_for_redis(ctx.connection, ctx.settings.redis_url, error=error, backoff=worker_class.redis_backoff())
        if not checked:  # an evicting policy, no persistence, too little memory, too few replicas: said once, at start
            checked = warn_at_start(ctx.connection, ctx.stores, "worker", ctx.settings.redis_min_replicas) is not None
        if processes > 1:
            pool = WorkerPool([queue], connection=ctx.connection, num_workers=processes,
                              worker_class=worker_class)
            pool.start(burst=burst, logging_level=logging_level)
            return True
        worker = worker_class([queue], connection=ctx.connection)
        try:
            return worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
        except RedisError as exc:
            if not is_outage(exc):
                raise
            # Redis went away (or was full) while RQ registered the worker or started its scheduler,
            # before its loop: start afresh once Redis is back (the half-registered worker expires by itself).
            log(logger, "Redis went away (or refused writes) while the worker started", logging.WARNING,
                error=describe(exc))
            worker.teardown()
            error = exc
