"""Orders read from the shops' APIs take the webhooks' path: real Redis, the emulated shops and the
Loyalty.lt sandbox over HTTP, jobs worked by RQ's own worker. Backfill (Shopify's through a bulk
operation, and what Shopify documents going wrong with one), the periodic sync, its watermark and
the versions it skips, the per-store lock, bad input, the subscriptions (connect, check, watch) and
the commands."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from redis import Redis
from rq.registry import FailedJobRegistry
from werkzeug.serving import make_server

from bridge.app import create_app

from bridge.cli import main
from bridge.samples import sample_order
from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.sandbox.shopify import ShopifyShopConfig
from bridge.sandbox.shops import ShopsConfig, ShopsServer
from bridge.sandbox.woocommerce import WooShopConfig
from config.settings import Settings
from config.stores import Stores, build_store
from tests.conftest import SHOPIFY_SECRET, WOO_SECRETS, fixture_bytes, fixture_json, run_jobs, webhook_headers
from workers import context
from workers.context import WorkerContext
from workers.platforms import shop_api_for
from workers.platforms.shop_api import OrdersPage, ShopGarbled, ShopRefused, ShopRetryLater
from workers.platforms.shopify.api import ShopifyApi
from workers.shop import subscriptions
from workers.shop.state import ShopState
from workers.shop.sync import read_window, sync_store
from workers.shop.tasks import run_due

KEY, SECRET, TOKEN = "ck_test", "cs_test", "shpat_test"
EARLY, LATE = datetime(2020, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(rate_limit_per_minute=0, partners=[
            {"api_key": "lty_sandbox_demo", "api_secret": "sandbox-secret", "partner_id": 1, "name": "P"}])) as server:
        yield server


@pytest.fixture
def shops() -> Iterator[ShopsServer]:
    config = ShopsConfig(woocommerce=[WooShopConfig(name="coffee", consumer_key=KEY, consumer_secret=SECRET)],
                         shopify=[ShopifyShopConfig(name="coffee-lt", access_token=TOKEN, client_secret=SHOPIFY_SECRET)])
    with ShopsServer(config) as server:
        yield server


def tables(sandbox: SandboxServer, shops: ShopsServer) -> dict[str, dict[str, Any]]:
    common = {"api_key": "lty_sandbox_demo", "api_secret": "sandbox-secret", "api_url": sandbox.url}
    return {
        "coffee-woo": {**common, "platform": "woocommerce", "webhook_secrets": WOO_SECRETS,
                       "shop_url": shops.shops.shop_url("woocommerce", "coffee"), "shop_consumer_key": KEY,
                       "shop_consumer_secret": SECRET},
        "coffee-shopify": {**common, "platform": "shopify", "webhook_secrets": [SHOPIFY_SECRET],
                           "shop_url": shops.shops.shop_url("shopify", "coffee-lt"), "shop_access_token": TOKEN},
    }


@pytest.fixture
def stores(sandbox: SandboxServer, shops: ShopsServer) -> Stores:
    return Stores({sid: build_store(sid, raw, {}, "tests") for sid, raw in tables(sandbox, shops).items()}, "tests")


@pytest.fixture
def ctx(settings: Settings, stores: Stores, redis_conn: Redis) -> Iterator[WorkerContext]:
    # No periodic shop tasks from the test worker's maintenance; the tests of run_due switch them on.
    quiet = settings.model_copy(update={"shop_sync_interval": 0, "shop_watch_interval": 0})
    built = WorkerContext.build(quiet, stores, redis_conn)
    context.install(built)
    yield built
    context.install(None)


def api(ctx: WorkerContext, store: str) -> Any:
    return shop_api_for(ctx.stores[store], ctx.settings)


def calls(sandbox: SandboxServer) -> int:
    return int(sandbox.sandbox.state.request_counts()["total"])


# --- backfill: the webhooks' path ------------------------------------------------------------------

def test_woocommerce_backfill_awards_refunds_and_cancels_and_twice_costs_nothing(
        ctx: WorkerContext, shops: ShopsServer, sandbox: SandboxServer) -> None:
    woo = shops.shops.woocommerce["coffee"]
    for case in ("two_refunds", "pending", "cancelled_after_payment"):
        woo.create_order(fixture_json("woocommerce", case), deliver=False)
    store = ctx.stores["coffee-woo"]
    summary = read_window(ctx, store, api(ctx, "coffee-woo"), EARLY, LATE, task="backfill")
    # 4210: paid and two refunds; 4214 (cancelled): the cancellation; 4211 (pending): nothing
    assert (summary.orders_read, summary.events_queued, summary.already_known) == (3, 4, 0)
    assert summary.ignored == {"order is pending and not paid: nothing to award yet": 1}
    run_jobs(ctx)
    paid = ctx.ledger.get(store.id, "WC-4210")
    assert paid.award is not None and set(paid.refunds) == {"4301", "4302"}
    # Never awarded here: the cancellation waits in the ledger for an award that would apply it.
    assert "cancel" in ctx.ledger.get(store.id, "WC-4214").pending
    arrival = ctx.events.arrivals("paid-coffee-woo-4210")[0]
    assert (arrival.topic, arrival.delivery_id) == ("order.updated", summary.run_id)
    assert summary.run_id.startswith("backfill-")

    before = calls(sandbox)
    again = read_window(ctx, store, api(ctx, "coffee-woo"), EARLY, LATE, task="backfill")
    run_jobs(ctx)
    # Nothing changed at the shop: no order is fed again.
    assert (again.orders_unchanged, again.orders_read, again.events_queued) == (3, 0, 0)
    assert calls(sandbox) == before


def test_shopify_backfill_yields_the_award_each_refund_and_the_cancellation(
        ctx: WorkerContext, shops: ShopsServer, sandbox: SandboxServer) -> None:
    shops.shops.shopify["coffee-lt"].create_order(fixture_json("shopify", "orders_cancelled"), deliver=False)
    store = ctx.stores["coffee-shopify"]
    summary = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="backfill")
    assert (summary.orders_read, summary.events_queued) == (1, 5)
    run_jobs(ctx)
    # The order as the shop has it now is refunded and cancelled: its paid event earns nothing, so its
    # refunds take nothing back, and Loyalty.lt is never called (an award made earlier by a webhook
    # would be in the ledger, and the refunds would take it back).
    record = ctx.ledger.get(store.id, "SH-1001")
    assert record.award is None and record.skipped is not None and "refunded" in record.skipped.reason
    assert {k: v.points for k, v in record.refunds.items()} == {"929361465": 0, "929361467": 0,
                                                                "929361466": 0, "cancel": 0}
    assert calls(sandbox) == 0
    assert read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="backfill").orders_unchanged == 1


def test_a_dry_run_queues_nothing(ctx: WorkerContext, shops: ShopsServer) -> None:
    shops.shops.woocommerce["coffee"].create_order(fixture_json("woocommerce", "processing"), deliver=False)
    summary = read_window(ctx, ctx.stores["coffee-woo"], api(ctx, "coffee-woo"), EARLY, LATE, task="backfill",
                          dry_run=True)
    assert (summary.events_queued, summary.dry_run) == (1, True)
    assert ctx.events.queue.count == 0


def test_an_order_the_api_gives_that_cannot_be_read_ends_as_a_failed_job(ctx: WorkerContext,
                                                                         shops: ShopsServer) -> None:
    broken = {**fixture_json("woocommerce", "processing"), "id": 4299, "number": "4299"}
    del broken["total"]
    shops.shops.woocommerce["coffee"].create_order(broken, deliver=False)
    read_window(ctx, ctx.stores["coffee-woo"], api(ctx, "coffee-woo"), EARLY, LATE, task="sync")
    run_jobs(ctx)
    failed = FailedJobRegistry(queue=ctx.events.queue)
    assert failed.get_job_ids() == ["paid-coffee-woo-4299"]
    assert "total" in ctx.ledger.get("coffee-woo", "WC-4299").failed.reason  # type: ignore[union-attr]


# --- Shopify's bulk operation ---------------------------------------------------------------------

def shopify_with(shops: ShopsServer, *cases: str) -> Any:
    shop = shops.shops.shopify["coffee-lt"]
    for case in cases:
        shop.create_order(fixture_json("shopify", case), deliver=False)
    return shop


def test_a_shopify_backfill_reads_through_one_bulk_operation_and_each_refund_alone(
        ctx: WorkerContext, shops: ShopsServer) -> None:
    shop = shopify_with(shops, "orders_cancelled")
    store = ctx.stores["coffee-shopify"]
    summary = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="backfill", bulk=True)
    assert (summary.orders_read, summary.events_queued, summary.orders_total) == (1, 5, 1)
    calls_made = shop.snapshot()["operations"]
    assert calls_made["BridgeBulkRun"] == 1 and calls_made["BridgeRefund"] == 3 and "BridgeOrder" not in calls_made
    assert [op["status"] for op in shop.snapshot()["bulk_operations"]] == ["COMPLETED"]
    # The same events as the order read alone would give: the second reading finds them all known.
    ctx.connection.delete(*ctx.connection.keys("lb:shop:seen:*"))
    again = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="backfill")
    assert (again.orders_read, again.events_queued, again.already_known) == (1, 0, 5)


@pytest.mark.parametrize(("failure", "error", "said"), [
    ("FAILED:TIMEOUT", ShopRetryLater, "ended FAILED (TIMEOUT) after 1 orders; nothing of it was used"),
    ("CANCELED", ShopRetryLater, "ended CANCELED after 1 orders"),
    ("FAILED:ACCESS_DENIED", ShopRefused, "failed: ACCESS_DENIED (the app needs the read_orders scope)"),
])
def test_a_bulk_operation_that_fails_stops_the_run_saying_why_and_feeds_nothing(
        ctx: WorkerContext, shops: ShopsServer, failure: str, error: type[Exception], said: str) -> None:
    shop = shopify_with(shops, "orders_paid_contact_email", "orders_cancelled", "orders_paid_gift_card")
    shop.bulk.fail_next = failure
    with pytest.raises(error, match=re.escape(said)):
        read_window(ctx, ctx.stores["coffee-shopify"], api(ctx, "coffee-shopify"), EARLY, LATE, task="backfill",
                    bulk=True)
    assert ctx.events.queue.count == 0 and not ctx.connection.keys("lb:shop:seen:*")
    # Nothing is lost: the next run reads it all.
    summary = read_window(ctx, ctx.stores["coffee-shopify"], api(ctx, "coffee-shopify"), EARLY, LATE,
                          task="backfill", bulk=True)
    assert summary.orders_read == len(shop.orders) and summary.events_queued > 0


@pytest.mark.parametrize(("failure", "operations", "downloads"), [("EXPIRED_URL", 2, 2), ("PARTIAL", 1, 2)])
def test_an_expired_address_runs_the_query_again_and_a_short_file_is_downloaded_again(
        ctx: WorkerContext, shops: ShopsServer, failure: str, operations: int, downloads: int) -> None:
    shop = shopify_with(shops, "orders_paid")
    shop.bulk.fail_next = failure
    summary = read_window(ctx, ctx.stores["coffee-shopify"], api(ctx, "coffee-shopify"), EARLY, LATE,
                          task="backfill", bulk=True)
    assert (summary.orders_read, summary.events_queued) == (1, 1)
    state = shop.snapshot()
    assert (len(state["bulk_operations"]), state["bulk_downloads"]) == (operations, downloads)


def test_a_bulk_query_already_running_is_waited_for_then_named(ctx: WorkerContext, shops: ShopsServer) -> None:
    shop = shopify_with(shops, "orders_paid")
    shop.bulk.start("{ orders { edges { node { id } } } }", None, hold=30)   # an earlier run's, still going
    patient = ctx.settings.model_copy(update={"shop_max_wait": 0.5})
    with pytest.raises(ShopRetryLater, match=r"another bulk query holds the shop's slot \(bulk operation "
                                             r"gid://shopify/BulkOperation/1 \(RUNNING since"):
        read_window(ctx, ctx.stores["coffee-shopify"], shop_api_for(ctx.stores["coffee-shopify"], patient), EARLY,
                    LATE, task="backfill", bulk=True)
    shop.bulk.start("{ orders { edges { node { id } } } }", None)  # refused: the slot is held
    assert len(shop.bulk.operations) == 1


def test_a_sync_window_of_many_orders_is_read_through_a_bulk_operation(ctx: WorkerContext,
                                                                      shops: ShopsServer) -> None:
    shop = shopify_with(shops, "orders_paid_contact_email", "orders_cancelled", "orders_paid_gift_card")
    store = ctx.stores["coffee-shopify"]
    client = ShopifyApi(store.shop_url or "", TOKEN, bulk_from=2)  # after an outage: more than it reads alone
    summary = read_window(ctx, store, client, EARLY, LATE, task="sync")
    assert (summary.orders_read, summary.orders_total) == (3, 3)
    assert shop.snapshot()["operations"]["BridgeBulkRun"] == 1 and "BridgeOrder" not in shop.snapshot()["operations"]


def test_the_sync_does_not_read_an_order_again_until_it_changes(ctx: WorkerContext, shops: ShopsServer,
                                                                 sandbox: SandboxServer) -> None:
    shop = shopify_with(shops, "orders_paid_contact_email", "orders_cancelled")
    store = ctx.stores["coffee-shopify"]
    first = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="sync")
    reads = shop.snapshot()["operations"]["BridgeOrder"]
    points = shop.snapshot()["points"]
    second = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="sync")
    assert (first.orders_read, second.orders_read, second.orders_unchanged, second.events_queued) == (2, 0, 2, 0)
    assert shop.snapshot()["operations"]["BridgeOrder"] == reads          # neither order read again
    assert shop.snapshot()["points"] - points <= 3 * 2                   # a page of ids: a point or two an order
    shop.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)  # a refund a minute later
    shop.add_refund(5619882082370, {**fixture_json("shopify", "refunds_create_partial"), "id": 929399999},
                    deliver=False)
    third = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="sync")
    assert (third.orders_read, third.orders_unchanged, third.events_queued) == (1, 1, 1)  # the refund


@pytest.fixture
def intake(ctx: WorkerContext) -> Iterator[str]:
    """The bridge's web intake over HTTP, where the emulated shops deliver their webhooks."""
    server = make_server("127.0.0.1", 0, create_app(ctx.settings, ctx.stores, ctx.connection), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_orders_webhooks_brought_are_not_read_again_by_the_sync_until_they_change(
        ctx: WorkerContext, shops: ShopsServer, sandbox: SandboxServer, intake: str) -> None:
    shop = shops.shops.shopify["coffee-lt"]
    store = ctx.stores["coffee-shopify"]
    subscriptions.connect(api(ctx, "coffee-shopify"), store, ShopState(ctx.connection), intake)
    ids = [7_100_001 + n for n in range(4)]
    for order_id in ids:
        shop.create_order(sample_order("shopify", order_id, f"hook-{order_id}@example.com"))
    assert shops.shops.deliverer.drain()
    assert [d["ok"] for d in shops.shops.snapshot()["deliveries"]] == [True] * 4
    run_jobs(ctx)
    references = [f"SH-{order_id % 100000}" for order_id in ids]
    assert all(ctx.ledger.get(store.id, ref).award is not None for ref in references)
    awards = calls(sandbox)

    before = shop.snapshot()
    summary = sync_store(ctx, store, api(ctx, "coffee-shopify"))
    after = shop.snapshot()
    # Each order's version came with its webhook: the sync lists them and reads none whole.
    assert (summary.orders_unchanged, summary.orders_read, summary.events_queued) == (4, 0, 0)
    assert "BridgeOrder" not in after["operations"] and after["operations"]["BridgeOrders"] == 1
    assert after["points"] - before["points"] <= 3 * len(ids)            # its share of a page of ids

    # A minute later one order is refunded in the shop and its webhook is lost: changed, so read again.
    shop.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)
    shop.add_refund(ids[0], {"id": 7_199_001, "note": "Mug arrived broken", "refund_line_items": [],
                             "transactions": [{"kind": "refund", "status": "success", "amount": "13.61",
                                               "currency": "EUR"}]}, deliver=False)
    again = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="sync")
    assert (again.orders_unchanged, again.orders_read, again.events_queued, again.already_known) == (3, 1, 1, 1)
    assert shop.snapshot()["operations"]["BridgeOrder"] == 1
    run_jobs(ctx)
    refunded = ctx.ledger.get(store.id, references[0])
    assert refunded.refunds["7199001"].points > 0 and calls(sandbox) == awards + 1
    # Fed by the sync now, its new version is known too.
    assert read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="sync").orders_unchanged == 4


def test_woocommerce_orders_webhooks_brought_are_not_fed_again_by_the_sync(
        ctx: WorkerContext, shops: ShopsServer, intake: str) -> None:
    woo = shops.shops.woocommerce["coffee"]
    store = ctx.stores["coffee-woo"]
    subscriptions.connect(api(ctx, "coffee-woo"), store, ShopState(ctx.connection), intake)
    for order_id in (7_200_001, 7_200_002):
        woo.create_order(sample_order("woocommerce", order_id, f"hook-{order_id}@example.com"))
    woo.clock = lambda: datetime.now(UTC) + timedelta(minutes=1)
    woo.update_order(7_200_002, {"refunds": [{"id": 7_299_001, "reason": "broken mug", "total": "-13.61"}]})
    assert shops.shops.deliverer.drain()
    run_jobs(ctx)
    assert "7299001" in ctx.ledger.get(store.id, "WC-7200002").refunds
    summary = read_window(ctx, store, api(ctx, "coffee-woo"), EARLY, LATE, task="sync")
    # Both orders' latest versions came by webhook (the second's with its refund): nothing is fed again.
    assert (summary.orders_total, summary.orders_unchanged, summary.orders_read) == (2, 2, 0)


def test_a_job_remembers_the_version_its_delivery_fed_and_a_refused_write_costs_only_that(
        ctx: WorkerContext, intake: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def post(platform: str, store: str, case: str, topic: str) -> None:
        body = fixture_bytes(platform, case)
        requests.post(f"{intake}/webhooks/{platform}/{store}", data=body, headers=webhook_headers(platform, body, topic),
                      timeout=10).raise_for_status()

    post("shopify", "coffee-shopify", "orders_paid", "orders/paid")
    run_jobs(ctx)
    # The payload's updated_at, 2026-11-18T14:03:11+02:00, as the sync compares it: epoch seconds.
    key = "lb:shop:seen:coffee-shopify:5619882082369"
    assert ctx.connection.get(key) == b"1795003391"
    assert 0 < ctx.connection.ttl(key) <= 7 * 24 * 3600
    # Redis refuses the version's SET (here an expiry it rejects): the job still ends as it would.
    monkeypatch.setattr("workers.shop.state.VERSION_TTL", 0)
    post("woocommerce", "coffee-woo", "processing", "order.created")
    run_jobs(ctx)
    end = ctx.events.ended("paid-coffee-woo-4210")   # RQ deletes a finished job: its end is in the journal
    assert end is not None and end.outcome == "awarded"
    assert ctx.connection.get("lb:shop:seen:coffee-woo:4210") is None
    assert "order version not remembered" in caplog.text
    assert ctx.connection.zscore(ctx.events.open_jobs_key, "paid-coffee-woo-4210") is None


def test_a_webhook_version_is_remembered_only_when_the_delivery_fed_all_its_events(
        ctx: WorkerContext, shops: ShopsServer, intake: str) -> None:
    shop = shops.shops.shopify["coffee-lt"]
    store = ctx.stores["coffee-shopify"]
    subscriptions.connect(api(ctx, "coffee-shopify"), store, ShopState(ctx.connection), intake)
    # Cancelled with three refunds: its orders/cancelled delivery feeds the cancellation, not the refunds.
    shop.create_order(fixture_json("shopify", "orders_cancelled"), deliver=False)
    shop.cancel(5619882082369)
    assert shops.shops.deliverer.drain()
    run_jobs(ctx)
    assert "cancel" in ctx.ledger.get(store.id, "SH-1001").pending
    summary = read_window(ctx, store, api(ctx, "coffee-shopify"), EARLY, LATE, task="sync")
    # Read whole: the payment and the refunds are fed now, the cancellation was already.
    assert (summary.orders_unchanged, summary.orders_read, summary.events_queued, summary.already_known) == (0, 1, 4, 1)


# --- the periodic sync -----------------------------------------------------------------------------

class FakeApi:
    """The far side of a shop API: records the windows asked for, answers what it is told."""

    platform = "woocommerce"

    def __init__(self, pages: list[OrdersPage] | Exception | None = None) -> None:
        self.windows: list[tuple[datetime, datetime]] = []
        self.pages = pages or []

    def orders(self, since: datetime, until: datetime, **_: Any) -> Iterator[OrdersPage]:
        self.windows.append((since, until))
        if isinstance(self.pages, Exception):
            raise self.pages
        yield from self.pages


def test_the_sync_reads_from_its_watermark_less_the_overlap(ctx: WorkerContext) -> None:
    store, fake = ctx.stores["coffee-woo"], FakeApi()
    first = datetime(2026, 11, 18, 12, tzinfo=UTC)
    sync_store(ctx, store, fake, now=first)  # type: ignore[arg-type]
    sync_store(ctx, store, fake, now=first + timedelta(minutes=15))  # type: ignore[arg-type]
    lookback, overlap = ctx.settings.shop_sync_first_lookback, ctx.settings.shop_sync_overlap
    assert fake.windows == [(first - timedelta(seconds=lookback), first),
                            (first - timedelta(seconds=overlap), first + timedelta(minutes=15))]
    assert ShopState(ctx.connection).watermark(store.id) == first + timedelta(minutes=15)


def syncing(ctx: WorkerContext) -> WorkerContext:
    ctx.settings = ctx.settings.model_copy(update={"shop_sync_interval": 900})
    return ctx


def test_a_failing_shop_is_recorded_retried_next_run_and_never_raises(ctx: WorkerContext) -> None:
    syncing(ctx)
    state = ShopState(ctx.connection)
    garbage = FakeApi(ShopGarbled("orders page 1: the answer is not JSON (text/html, 12 bytes)"))
    run_due(ctx, api_for=lambda store: garbage)  # type: ignore[arg-type,return-value]
    statuses = state.statuses()
    assert statuses[("coffee-woo", "sync")].outcome == "garbled"
    assert not statuses[("coffee-woo", "sync")].ok
    assert state.watermark("coffee-woo") is None  # the window is read again next run
    refused = FakeApi(ShopRefused("401: wrong key"))
    run_due(ctx, api_for=lambda store: refused)  # type: ignore[arg-type,return-value]
    assert refused.windows == []  # not due yet: the next run is an interval away
    state.schedule("coffee-woo", "sync", 0)
    state.schedule("coffee-shopify", "sync", 0)
    run_due(ctx, api_for=lambda store: refused)  # type: ignore[arg-type,return-value]
    assert state.statuses()[("coffee-woo", "sync")].outcome == "refused"


def test_a_store_whose_lock_is_held_is_left_to_the_holder(ctx: WorkerContext) -> None:
    fake = FakeApi()
    syncing(ctx)
    held = ShopState(ctx.connection).lock("coffee-woo")
    assert held.acquire(blocking=False)
    run_due(ctx, api_for=lambda store: fake)  # type: ignore[arg-type,return-value]
    assert len(fake.windows) == 1  # only coffee-shopify ran
    held.release()


# --- subscriptions ---------------------------------------------------------------------------------

def test_connect_is_idempotent_and_updates_a_changed_url_or_secret(ctx: WorkerContext, shops: ShopsServer,
                                                                   stores: Stores, sandbox: SandboxServer) -> None:
    state, store = ShopState(ctx.connection), ctx.stores["coffee-woo"]
    first = subscriptions.connect(api(ctx, "coffee-woo"), store, state, "https://bridge.example.com")
    assert [t.action for t in first] == ["created", "created"]
    assert [t.action for t in subscriptions.connect(api(ctx, "coffee-woo"), store, state,
                                                    "https://bridge.example.com")] == [None, None]
    moved = subscriptions.connect(api(ctx, "coffee-woo"), store, state, "https://new.example.com")
    assert [t.action for t in moved] == ["updated", "updated"]
    rotated = store.model_copy(update={"webhook_secrets": [*store.webhook_secrets[::-1]]})
    assert [t.action for t in subscriptions.connect(api(ctx, "coffee-woo"), rotated, state,
                                                    "https://new.example.com")] == ["updated", "updated"]
    hooks = shops.shops.woocommerce["coffee"].webhooks
    assert len(hooks) == 2 and {h["secret"] for h in hooks.values()} == {WOO_SECRETS[1]}
    assert {h["delivery_url"] for h in hooks.values()} == {"https://new.example.com/webhooks/woocommerce/coffee-woo"}

    shopify = subscriptions.connect(api(ctx, "coffee-shopify"), ctx.stores["coffee-shopify"], state,
                                    "https://bridge.example.com")
    assert [(t.topic, t.action) for t in shopify] == [("ORDERS_PAID", "created"), ("REFUNDS_CREATE", "created"),
                                                     ("ORDERS_CANCELLED", "created")]
    shops.shops.shopify["coffee-lt"].subscriptions.popitem()  # Shopify removed one after failures
    checked = subscriptions.check(api(ctx, "coffee-shopify"), ctx.stores["coffee-shopify"], state)
    assert [t.status for t in checked] == ["active", "active", "missing"]


def test_the_watch_reenables_what_woocommerce_disabled_but_not_what_a_person_paused(
        ctx: WorkerContext, shops: ShopsServer) -> None:
    state, store = ShopState(ctx.connection), ctx.stores["coffee-woo"]
    subscriptions.connect(api(ctx, "coffee-woo"), store, state, "https://bridge.example.com")
    woo = shops.shops.woocommerce["coffee"]
    woo.update_webhook(1, {"status": "disabled"})
    woo.update_webhook(2, {"status": "paused"})
    topics = subscriptions.watch(api(ctx, "coffee-woo"), store, state)
    assert [(t.topic, t.status, t.action) for t in topics] == [("order.created", "active", "reactivated"),
                                                               ("order.updated", "paused", None)]
    assert [h["status"] for h in woo.webhooks.values()] == ["active", "paused"]


def test_the_watch_recreates_a_subscription_shopify_removed_at_the_address_connect_set(
        ctx: WorkerContext, shops: ShopsServer) -> None:
    state, store = ShopState(ctx.connection), ctx.stores["coffee-shopify"]
    subscriptions.connect(api(ctx, "coffee-shopify"), store, state, "https://bridge.example.com")
    shop = shops.shops.shopify["coffee-lt"]
    removed = next(sid for sid, sub in shop.subscriptions.items() if sub["topic"] == "REFUNDS_CREATE")
    del shop.subscriptions[removed]                      # as Shopify does after deliveries keep failing
    topics = subscriptions.watch(api(ctx, "coffee-shopify"), store, state)
    assert [(t.topic, t.action) for t in topics] == [("ORDERS_PAID", None), ("REFUNDS_CREATE", "created"),
                                                     ("ORDERS_CANCELLED", None)]
    assert sorted(sub["topic"] for sub in shop.subscriptions.values()) == [
        "ORDERS_CANCELLED", "ORDERS_PAID", "REFUNDS_CREATE"]
    assert {sub["url"] for sub in shop.subscriptions.values()} == {
        "https://bridge.example.com/webhooks/shopify/coffee-shopify"}
    assert [t.action for t in subscriptions.watch(api(ctx, "coffee-shopify"), store, state)] == [None] * 3


# --- the commands ----------------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path: Path, redis_url: str, sandbox: SandboxServer, shops: ShopsServer) -> dict[str, str]:
    import json

    path = tmp_path / "stores.toml"
    lines = []
    for sid, table in tables(sandbox, shops).items():
        lines.append(f"[stores.{sid}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    lines += ["[stores.plain]", 'platform = "woocommerce"', 'webhook_secrets = ["x"]', 'api_key = "lty_x"',
              'api_secret = "y"']
    path.write_text("\n".join(lines) + "\n")
    return {"REDIS_URL": redis_url, "BRIDGE_STORES_FILE": str(path), "BRIDGE_LOG_LEVEL": "WARNING"}


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "2999-01-01"], "--since is in the future"),
    (["--since", "2026-11-10", "--until", "2026-11-01"], "--since is after --until"),
])
def test_backfill_refuses_impossible_periods(env: dict[str, str], args: list[str], message: str) -> None:
    result = cli(env, "backfill", "--store", "coffee-woo", *args)
    assert result.exit_code == 2 and message in result.output


def test_backfill_and_connect_need_the_shop_api(env: dict[str, str]) -> None:
    result = cli(env, "backfill", "--store", "plain", "--since", "2026-11-01")
    assert result.exit_code == 1 and "plain has no shop API configured" in result.output
    assert "unexpected" not in cli(env, "connect", "plain", "--url", "https://x").output


def test_backfill_command_summarises_and_connect_check_reports(env: dict[str, str], shops: ShopsServer) -> None:
    shops.shops.woocommerce["coffee"].create_order(fixture_json("woocommerce", "processing"), deliver=False)
    result = cli(env, "backfill", "--store", "coffee-woo", "--since", "2020-01-01", "--json")
    assert result.exit_code == 0, result.output
    assert '"events_queued": 1' in result.output
    check = cli(env, "connect", "coffee-woo", "--check")
    assert check.exit_code == 1 and check.output.count("missing") >= 2
    assert cli(env, "connect", "coffee-woo", "--check", "--fix").exit_code == 2  # --fix needs --url the first time
    assert cli(env, "connect", "coffee-woo", "--url", "https://bridge.example.com").exit_code == 0
    assert cli(env, "connect", "coffee-woo", "--check").exit_code == 0
    health = cli(env, "check")
    assert "shop: WooCommerce REST API v3" in health.output and "shop: Shopify Admin API" in health.output
