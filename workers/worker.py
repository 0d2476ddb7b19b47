"""Running workers: RQ's own worker (or worker pool) with the bridge's context installed.

Jobs run in the worker process (``SimpleWorker``) by default: they are short HTTP calls with
timeouts, and keeping the process keeps the HTTPS connections to Loyalty.lt alive between jobs.
``fork=True`` gives each job its own process (RQ's classic ``Worker``) for stricter isolation.
"""

from __future__ import annotations

import logging
from rq import Queue, SimpleWorker, Worker
from rq.worker_pool import WorkerPool

from workers import context
from workers.context import WorkerContext

logger = logging.getLogger("workers.worker")


def run_worker(ctx: WorkerContext, *, burst: bool = False, processes: int = 1, fork: bool = False,
               logging_level: str = "INFO", metrics_port: int | None = None) -> bool:
    """Work on the bridge's queue until stopped (or until it is empty, with ``burst``).

    The scheduler runs alongside, since retries and waits are scheduled for later. With
    ``metrics_port``, the jobs' and Loyalty.lt calls' metrics are served there for Prometheus.
    """
    context.install(ctx)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port)
    worker_class = Worker if fork else SimpleWorker
    queue = Queue(ctx.settings.queue_name, connection=ctx.connection)
    if processes > 1:
        pool = WorkerPool([queue], connection=ctx.connection, num_workers=processes,
                          worker_class=worker_class)
        pool.start(burst=burst, logging_level=logging_level)
        return True
    worker = worker_class([queue], connection=ctx.connection)
    return worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
