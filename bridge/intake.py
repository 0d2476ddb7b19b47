"""The webhook intake: verify, classify, dedupe, enqueue, answer — in milliseconds.

The view only translates between HTTP and the steps below; it makes no Loyalty.lt call and maps no
cart. Its answers are a contract shops and scripts depend on:

=====================================  ======  =============================================
situation                              status  body
=====================================  ======  =============================================
unknown store (or platform mismatch)   404     ``{"status": "error", "error": ...}``
body over the limit                    413     ``{"status": "error", "error": ...}``
WooCommerce's ping on saving a hook    200     ``{"status": "ok", "ping": true}``
missing or wrong signature             401     ``{"status": "error", "error": "invalid signature"}``
not JSON                               400     ``{"status": "error", "error": ...}``
signed, but nothing to do              200     ``{"status": "ignored", "reason": ...}``
queued                                 202     ``{"status": "queued", "job_id": ..., "job_ids": [...]}``
already queued before                  200     ``{"status": "duplicate", "job_id": ..., "job_ids": [...]}``
Redis unreachable, or full             503     ``Retry-After`` set; the shop retries
=====================================  ======  =============================================

A full Redis (``maxmemory`` reached under ``noeviction``) refuses the submit script before it writes
anything, so a refused webhook left nothing behind; the process logs one line when Redis turns full
and one when it takes webhooks again, besides each webhook's own line.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.signatures import verify
from config.log_format import log
from config.settings import Settings
from config.stores import Stores
from workers.connection import describe, is_full
from workers.event_queue import EventQueue
from workers.events import Ignored, InvalidPayload
from workers.platforms import ADAPTERS

logger = logging.getLogger("bridge.intake")
blueprint = Blueprint("intake", __name__)
EXTENSION = "loyalty_bridge"


@dataclass
class Intake:
    """What the intake needs, built once per process by ``create_app``."""

    settings: Settings
    stores: Stores
    events: EventQueue
    # Called with each webhook's log fields (metrics attach here).
    observe: Callable[[dict[str, Any]], None] = field(default=lambda fields: None)
    # Webhooks refused since Redis was found full (0: it is not, as far as this process knows).
    refused_full: int = 0

    def redis_full(self, exc: Exception) -> None:
        """A submit was refused for memory: say so once, when Redis turns full."""
        self.refused_full += 1
        if self.refused_full == 1:
            log(logger, "Redis is full (maxmemory reached): webhooks are answered 503 until it takes writes "
                "again; free memory or raise maxmemory (see `bridge check`)", logging.ERROR, error=describe(exc))

    def redis_has_room(self) -> None:
        """A submit went through after Redis was full."""
        refused, self.refused_full = self.refused_full, 0
        log(logger, f"Redis takes webhooks again, after {refused} refused while it was full", logging.WARNING,
            refused=refused)


def _answer(intake: Intake, started: float, status: int, outcome: str, fields: dict[str, Any],
            **body: Any) -> Response:
    """Answer the shop, and log and count the outcome."""
    response = jsonify(status=outcome, **body)
    response.status_code = status
    fields.update(outcome=outcome, http_status=status, duration_ms=round((time.perf_counter() - started) * 1000, 2))
    if "reason" in body:
        fields["reason"] = body["reason"]
    if "error" in body:
        fields["error"] = body["error"]
    log(logger, "webhook", **fields)
    intake.observe(fields)
    return response


@blueprint.post("/webhooks/<platform>/<store_id>")
def receive(platform: str, store_id: str) -> Response:
    """Take one webhook delivery."""
    started = time.perf_counter()
    intake: Intake = current_app.extensions[EXTENSION]
    headers = request.headers
    # 128 random bits as hex, the shape of uuid4().hex without building a UUID.
    request_id = headers.get("X-Request-ID") or os.urandom(16).hex()
    fields: dict[str, Any] = {"request_id": request_id, "platform": platform, "store": store_id}

    def answer(status: int, outcome: str, **body: Any) -> Response:
        return _answer(intake, started, status, outcome, fields, **body)

    adapter = ADAPTERS.get(platform)
    store = intake.stores.get(store_id)
    if adapter is None or store is None or store.platform != platform:
        return answer(404, "error", error=f"no {platform} store {store_id!r} here")

    limit = intake.settings.max_body_bytes
    try:
        body = request.get_data(cache=False)
        too_large = len(body) > limit
    except RequestEntityTooLarge:
        body, too_large = b"", True
    if too_large:
        return answer(413, "error", error=f"body over {limit} bytes")
    if adapter.is_ping(body):
        return answer(200, "ok", ping=True)
    if not verify(body, headers.get(adapter.SIGNATURE_HEADER), store.secrets):
        return answer(401, "error", error="invalid signature")

    topic = headers.get(adapter.TOPIC_HEADER, "")
    delivery_id = headers.get(adapter.DELIVERY_HEADER, "") if adapter.DELIVERY_HEADER else ""
    fields.update(topic=topic, delivery_id=delivery_id)
    try:
        result = adapter.classify(topic, body, store)
    except InvalidPayload as exc:
        return answer(400, "error", error=str(exc))
    if isinstance(result, Ignored):
        return answer(200, "ignored", reason=result.reason)

    fields.update(reference=result[0].reference, order_id=result[0].order_id, events=[e.kind for e in result])
    # Valid JSON is UTF-8 here (the parser above accepts nothing else).
    payload = body.decode("utf-8")
    job_ids = [e.job_id for e in result]
    try:
        queued = [job_id for job_id, e in zip(job_ids, result, strict=True)
                  if intake.events.submit(e, payload, delivery_id, request_id)]
    except RedisError as exc:
        full = is_full(exc)
        fields["error_class"] = "OutOfMemoryError" if full else type(exc).__name__
        if full:
            intake.redis_full(exc)
        response = answer(503, "error", error="queue unavailable, retry later")
        response.headers["Retry-After"] = str(intake.settings.unavailable_retry_after)
        return response
    if intake.refused_full:
        intake.redis_has_room()
    if queued:
        fields["job_ids"] = queued
        return answer(202, "queued", job_id=queued[0], job_ids=queued)
    fields["job_ids"] = job_ids
    return answer(200, "duplicate", job_id=job_ids[0], job_ids=job_ids)
