"""Gunicorn settings for the Procfile's web process (``gunicorn -c python:bridge.gunicorn_conf``)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# The intake is short CPU work plus one Redis round trip: a few processes with a few threads each
# keep both cores busy and keep connections alive between a shop's deliveries.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 5
# Shopify waits 5 s for an answer; nothing in the intake should take more than a fraction of that.
timeout = 30
graceful_timeout = 20
# Load the app in the master once: a configuration error stops start-up with one message, and
# workers share the imported code. Redis connections are opened lazily, after the fork.
preload_app = True
accesslog = None

# Metrics from every worker process are merged through files in this folder (prometheus-client's
# multiprocess mode). It must be set before prometheus_client is imported, i.e. here, and start empty.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="loyalty-bridge-metrics-")
else:
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Forget a dead worker's live gauges (its counters stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """Start the alert loop in each web process (a thread started before the fork would not be there).

    Only the bridge's app has one: the benchmarks serve their peers with these same settings."""
    from bridge.app import ALERTS

    loop = getattr(worker.wsgi, "extensions", {}).get(ALERTS)
    if loop is not None:
        loop.start()
