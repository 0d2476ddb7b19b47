"""The intake at a full Redis (maxmemory reached under noeviction): each webhook is answered 503 with
Retry-After and leaves nothing behind, the process says once that Redis is full and once that it
takes webhooks again, and the shop's next delivery is queued as if nothing had happened."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask
from redis import Redis

from tests.conftest import fixture_bytes
from tests.integration.test_intake import WOO, post


def test_a_full_redis_is_a_503_with_retry_after_said_once(app: Flask, redis_conn: Redis,
                                                          redis_config: Callable[..., None],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    body = fixture_bytes("woocommerce", "processing")
    before = sorted(redis_conn.keys("*"))
    redis_config(maxmemory_policy="noeviction", maxmemory=1)
    caplog.set_level(logging.INFO, logger="bridge.intake")

    answers = [post(client, "woocommerce", WOO, body, "order.created") for _ in range(3)]

    assert [a.status_code for a in answers] == [503, 503, 503]
    assert all(int(a.headers["Retry-After"]) > 0 for a in answers)
    assert sorted(redis_conn.keys("*")) == before          # the refused submits wrote nothing
    lines = [r for r in caplog.records if r.name == "bridge.intake"]
    said = [r.getMessage() for r in lines if r.getMessage().startswith("Redis is full")]
    assert len(said) == 1 and "raise maxmemory" in said[0]
    assert [r.fields["error_class"] for r in lines if r.getMessage() == "webhook"] == ["OutOfMemoryError"] * 3  # type: ignore[attr-defined]

    redis_config(maxmemory=0)
    again = post(client, "woocommerce", WOO, body, "order.created")
    assert again.status_code == 202 and again.json["job_ids"] == ["paid-coffee-woo-4210"]
    assert any(r.getMessage() == "Redis takes webhooks again, after 3 refused while it was full" for r in caplog.records)
