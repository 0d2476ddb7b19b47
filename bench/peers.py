"""The servers the intake is measured against, each what a team could write instead of the bridge.

Served by gunicorn with the bridge's own settings (``-c python:bridge.gunicorn_conf``), on the same
route and with the same signed bodies as the bridge (``bench/intake.py`` starts them):

- ``bench.peers:bare``: reads the body and answers 202. What Flask and gunicorn cost on their own.
- ``bench.peers:floor``: checks the HMAC and pushes the raw body onto a Redis list (one ``LPUSH``),
  then answers 202. The least any intake can do that is durable before it answers.
- ``bench.peers:naive``: checks the HMAC, parses the JSON and queues an RQ job with RQ's own
  ``Queue.enqueue(..., job_id=...)``: the forty-line Flask + RQ handler a user would write.

The secret is the benchmark's (``bench.intake.SECRET``); Redis is ``REDIS_URL``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from flask import Flask, request
from redis import Redis
from rq import Queue

SECRET = b"bench-secret"
FLOOR_LIST = "bench:floor"
QUEUE = "naive"

bare = Flask("bare")
floor = Flask("floor")
naive = Flask("naive")
# Opened lazily, after gunicorn forks (redis-py's pool is fork-safe), like the bridge's.
_redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
_queue = Queue(QUEUE, connection=_redis)


def _signed(body: bytes) -> bool:
    given = request.headers.get("X-WC-Webhook-Signature", "")
    expected = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, given)


@bare.post("/webhooks/<platform>/<store_id>")
def receive_bare(platform: str, store_id: str) -> tuple[dict[str, str], int]:
    request.get_data()
    return {"status": "queued", "job_id": "bare"}, 202


@floor.post("/webhooks/<platform>/<store_id>")
def receive_floor(platform: str, store_id: str) -> tuple[dict[str, str], int]:
    body = request.get_data()
    if not _signed(body):
        return {"status": "error", "error": "invalid signature"}, 401
    _redis.lpush(FLOOR_LIST, body)
    return {"status": "queued"}, 202


def process_order(order: dict[str, Any]) -> None:
    """The naive peer's job function (never run by the benchmark)."""


@naive.post("/webhooks/<platform>/<store_id>")
def receive_naive(platform: str, store_id: str) -> tuple[dict[str, str], int]:
    body = request.get_data()
    if not _signed(body):
        return {"status": "error", "error": "invalid signature"}, 401
    order = json.loads(body)
    job = _queue.enqueue(process_order, order, job_id=f"{store_id}-{order['id']}")
    return {"status": "queued", "job_id": job.id}, 202
