"""Gunicorn settings for the Procfile's web process (``gunicorn -c python:bridge.gunicorn_conf``)."""

from __future__ import annotations

import multiprocessing
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# The intake is short CPU work plus one Redis round trip: a few processes with a few threads each
# keep both cores busy and keep connections alive between a shop's deliveries.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 5
# Shopify waits 5 s for an answer; nothing in the intake should take more than a fraction of that.
timeout = 30
graceful_timeout = 20
# Load the app in the master once: a configuration error stops start-up with one message, and
# workers share the imported code. Redis connections are opened lazily, after the fork.
preload_app = True
accesslog = None
