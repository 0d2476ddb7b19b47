"""Pending points: a store's award_delay holds each award back until the return window has passed,
refunds meanwhile cost no Loyalty.lt call, and the award is for what the customer kept.

Real jobs through a real Redis and RQ's own worker and scheduler; only Loyalty.lt is faked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq.job import Job, JobStatus

from bridge.app import create_app
from config.settings import Settings
from tests.conftest import FakeApi, fixture_json, make_stores, run_jobs, webhook_headers
from workers import context
from workers.context import WorkerContext
from workers.metrics import render
from workers.ops import due_now, recent_events, requeue

WOO, SHOP = "coffee-woo", "coffee-shopify"
S_ORDER = "5619882082369"
PAID_JOB = f"paid-coffee-shopify-{S_ORDER}"


class Shop:
    """The intake and a worker context for stores with an award delay."""

    def __init__(self, settings: Settings, redis_conn: Redis, delay: str) -> None:
        stores = make_stores(**{SHOP: {"award_delay": delay}, WOO: {"award_delay": delay}})
        self.ctx = WorkerContext.build(settings, stores, redis_conn)
        self.app: Flask = create_app(settings, stores, redis_conn)
        context.install(self.ctx)

    def deliver(self, platform: str, payload: dict[str, Any], topic: str) -> None:
        body = json.dumps(payload).encode()
        store = WOO if platform == "woocommerce" else SHOP
        answer = self.app.test_client().post(f"/webhooks/{platform}/{store}", data=body,
                                             headers=webhook_headers(platform, body, topic))
        assert answer.status_code in (200, 202), answer.json

    def record(self, store: str = SHOP, reference: str = "SH-1001") -> Any:
        return self.ctx.ledger.get(store, reference)

    def job(self, job_id: str = PAID_JOB) -> Job:
        return Job.fetch(job_id, connection=self.ctx.connection)


@pytest.fixture
def shop_with(settings: Settings, redis_conn: Redis) -> Iterator[Callable[[str], Shop]]:
    yield lambda delay: Shop(settings, redis_conn, delay)
    context.install(None)


def paid_now(case: str = "orders_paid") -> dict[str, Any]:
    """A Shopify order paid just now (the delay counts from payment)."""
    return fixture_json("shopify", case) | {"processed_at": datetime.now(UTC).isoformat(timespec="seconds")}


def test_the_award_is_made_once_when_the_delay_has_passed(shop_with: Callable[[str], Shop], api: FakeApi) -> None:
    shop = shop_with("2s")
    api.create_ok(points=495, locale="lt")
    shop.deliver("shopify", paid_now(), "orders/paid")
    run_jobs(shop.ctx, rounds=1, horizon=0)
    assert api.calls("transactions/create") == []
    assert shop.job().get_status() == JobStatus.SCHEDULED                     # held by RQ's scheduler, no worker
    due = shop.record().due
    assert due is not None and due.delay == 2
    # The sweep of open jobs leaves it alone until it is due (held for days, it would cost every run).
    opened = shop.ctx.connection.zscore(shop.ctx.events.open_jobs_key, PAID_JOB)
    assert opened == datetime.fromisoformat(due.due_at).timestamp()
    (recent,) = recent_events(shop.ctx.events, [SHOP])
    assert recent.outcome == f"pending until {due.due_at}"
    assert 'bridge_pending_awards{store="coffee-shopify"} 1.0' in render(shop.ctx.connection, "loyalty")[0].decode()
    run_jobs(shop.ctx, horizon=3)
    assert len(api.calls("transactions/create")) == 1
    record = shop.record()
    assert record.award is not None and record.due is None and shop.ctx.ledger.pending_awards(SHOP) == 0
    end = shop.ctx.events.ended(PAID_JOB)
    assert end is not None and end.outcome == "awarded"


def test_a_partial_refund_during_the_delay_makes_one_create_for_what_was_kept(shop_with: Callable[[str], Shop],
                                                                               api: FakeApi) -> None:
    shop = shop_with("2s")
    api.create_ok(points=375, locale="lt")
    shop.deliver("shopify", paid_now(), "orders/paid")
    shop.deliver("shopify", fixture_json("shopify", "refunds_create_partial"), "refunds/create")  # 1 of 2 bags
    run_jobs(shop.ctx, horizon=3)
    assert api.calls("transactions/deduct-points") == []
    (body,) = api.bodies("transactions/create")
    # 49.50 paid, 12.00 of it back: 37.50 kept; the bag line keeps one of its two bags.
    assert body["order_total"] == 37.5
    assert [(i["product_id"], i["quantity"]) for i in body["cart_items"]] == [(8234567001, 1), (8234567002, 1)]
    record = shop.record()
    assert (record.award.order_total, record.award.points) == (Decimal("37.50"), 375)
    absorbed = record.refunds["929361465"]
    assert absorbed.points == 0 and "award delay" in absorbed.source and record.pending == {}
    shop.deliver("shopify", fixture_json("shopify", "refunds_create_partial"), "refunds/create")   # redelivered
    run_jobs(shop.ctx)
    assert api.calls("transactions/deduct-points") == [] and len(api.calls("transactions/create")) == 1


def test_a_cancellation_during_the_delay_means_no_call_at_all(shop_with: Callable[[str], Shop],
                                                              api: FakeApi) -> None:
    shop = shop_with("2s")
    shop.deliver("shopify", paid_now(), "orders/paid")
    shop.deliver("shopify", fixture_json("shopify", "orders_cancelled"), "orders/cancelled")
    run_jobs(shop.ctx, horizon=3)
    assert len(api.mock.calls) == 0
    record = shop.record()
    assert record.skipped is not None and "cancelled before its award was due" in record.skipped.reason
    assert record.refunds["cancel"].points == 0 and record.pending == {} and record.due is None


def test_refunds_of_everything_during_the_delay_mean_no_award(shop_with: Callable[[str], Shop], api: FakeApi) -> None:
    shop = shop_with("2s")
    shop.deliver("shopify", paid_now(), "orders/paid")
    for case in ("refunds_create_partial", "refunds_create_full"):
        shop.deliver("shopify", fixture_json("shopify", case), "refunds/create")
    run_jobs(shop.ctx, horizon=3)
    assert len(api.mock.calls) == 0
    assert "refunded in full during the award delay" in shop.record().skipped.reason


def test_a_refund_after_the_award_is_one_deduct(shop_with: Callable[[str], Shop], api: FakeApi) -> None:
    shop = shop_with("1s")
    api.create_ok(points=495, locale="lt")
    api.deduct_ok(locale="lt")
    shop.deliver("shopify", paid_now(), "orders/paid")
    run_jobs(shop.ctx, horizon=2)
    assert len(api.calls("transactions/create")) == 1
    shop.deliver("shopify", fixture_json("shopify", "refunds_create_partial"), "refunds/create")
    run_jobs(shop.ctx)
    assert [b["points"] for b in api.bodies("transactions/deduct-points")] == [120]


def test_a_replay_does_not_award_early_but_now_does(shop_with: Callable[[str], Shop], api: FakeApi) -> None:
    shop = shop_with("14d")
    api.create_ok(points=495, locale="lt")
    shop.deliver("shopify", paid_now(), "orders/paid")
    run_jobs(shop.ctx, rounds=1, horizon=0)
    due = shop.record().due.due_at
    requeue(shop.ctx.events, shop.job(), shop.ctx.retry_policy)             # `bridge replay SH-1001`
    run_jobs(shop.ctx, rounds=1, horizon=0)
    assert api.calls("transactions/create") == [] and shop.record().due.due_at == due
    assert due_now(shop.ctx.events, shop.ctx.ledger, shop.job()) == f"was pending until {due}: due now"
    run_jobs(shop.ctx, rounds=2)                                              # `bridge replay SH-1001 --now`
    assert len(api.calls("transactions/create")) == 1 and shop.record().award is not None


def test_changing_the_delay_affects_only_orders_paid_after(shop_with: Callable[[str], Shop], settings: Settings,
                                                          redis_conn: Redis, api: FakeApi) -> None:
    held = shop_with("14d")
    held.deliver("shopify", paid_now(), "orders/paid")
    run_jobs(held.ctx, rounds=1, horizon=0)
    now = shop_with("0")                                                       # the owner turns the delay off
    api.create_ok(locale="lt")
    requeue(now.ctx.events, now.job(), now.ctx.retry_policy)
    now.deliver("shopify", paid_now("orders_paid_contact_email"), "orders/paid")
    run_jobs(now.ctx, rounds=1, horizon=0)
    assert [b["order_id"] for b in api.bodies("transactions/create")] == ["SH-1002"]
    assert now.record().due is not None                                        # SH-1001 keeps its due time


def test_an_order_paid_longer_ago_than_the_delay_is_awarded_at_once(shop_with: Callable[[str], Shop],
                                                                     api: FakeApi) -> None:
    """A backfill of last month's orders: their return window has passed already."""
    shop = shop_with("14d")
    api.create_ok(locale="lt")
    shop.deliver("shopify", fixture_json("shopify", "orders_paid") | {"processed_at": "2026-10-01T10:00:00+03:00"},
                 "orders/paid")
    run_jobs(shop.ctx, rounds=1, horizon=0)
    assert len(api.calls("transactions/create")) == 1
