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
Redis unreachable                      503     ``Retry-After`` set; the shop retries
=====================================  ======  =============================================
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from bridge.signatures import verify
from config.log_format import log
from config.settings import Settings
from config.stores import Stores
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


def _answer(status: int, outcome: str, fields: dict[str, Any], **body: Any) -> Response:
    """Answer the shop, and log and count the outcome."""
    response = jsonify(status=outcome, **body)
    response.status_code = status
    fields.update(outcome=outcome, http_status=status,
                  duration_ms=round((time.perf_counter() - g.started) * 1000, 2))
    if "reason" in body:
        fields["reason"] = body["reason"]
    if "error" in body:
        fields["error"] = body["error"]
    log(logger, "webhook", **fields)
    current_app.extensions[EXTENSION].observe(fields)
    return response


@blueprint.post("/webhooks/<platform>/<store_id>")
def receive(platform: str, store_id: str) -> Response:
    """Take one webhook delivery."""
    g.started = time.perf_counter()
    intake: Intake = current_app.extensions[EXTENSION]
    request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    g.request_id = request_id
    fields: dict[str, Any] = {"request_id": request_id, "platform": platform, "store": store_id}

    adapter = ADAPTERS.get(platform)
    store = intake.stores.get(store_id)
    if adapter is None or store is None or store.platform != platform:
        return _answer(404, "error", fields, error=f"no {platform} store {store_id!r} here")

    limit = intake.settings.max_body_bytes
    try:
        body = request.get_data(cache=False)
        too_large = len(body) > limit
    except RequestEntityTooLarge:
        body, too_large = b"", True
    if too_large:
        return _answer(413, "error", fields, error=f"body over {limit} bytes")
    if adapter.is_ping(body):
        return _answer(200, "ok", fields, ping=True)
    if not verify(body, request.headers.get(adapter.SIGNATURE_HEADER), store.secrets):
        return _answer(401, "error", fields, error="invalid signature")

    topic = request.headers.get(adapter.TOPIC_HEADER, "")
    delivery_id = request.headers.get(adapter.DELIVERY_HEADER, "") if adapter.DELIVERY_HEADER else ""
    fields.update(topic=topic, delivery_id=delivery_id)
    try:
        result = adapter.classify(topic, body, store)
    except InvalidPayload as exc:
        return _answer(400, "error", fields, error=str(exc))
    if isinstance(result, Ignored):
        return _answer(200, "ignored", fields, reason=result.reason)

    fields.update(reference=result[0].reference, order_id=result[0].order_id,
                  events=[e.kind for e in result])
    # Valid JSON is UTF-8 here (the parser above accepts nothing else).
    payload = body.decode("utf-8")
    try:
        queued = [e.job_id for e in result if intake.events.submit(e, payload, delivery_id, request_id)]
    except RedisError as exc:
        fields["error_class"] = type(exc).__name__
        response = _answer(503, "error", fields, error="queue unavailable, retry later")
        response.headers["Retry-After"] = str(intake.settings.unavailable_retry_after)
        return response
    job_ids = [e.job_id for e in result]
    if queued:
        fields["job_ids"] = queued
        return _answer(202, "queued", fields, job_id=queued[0], job_ids=queued)
    fields["job_ids"] = job_ids
    return _answer(200, "duplicate", fields, job_id=job_ids[0], job_ids=job_ids)
