"""Orders read from a shop's API, fed into the path a webhook takes: backfill and the periodic sync.

Each order arrives as the payloads its webhooks would carry (:mod:`workers.platforms.shop_api`).
Each payload goes through the platform adapter's ``classify`` and :meth:`EventQueue.submit`, exactly
as the intake does it, so the events, deterministic job ids, dedupe, arrivals and the order index
are the webhooks' own: an order already processed is a duplicate and costs no Loyalty.lt call.
The ledger is asked first, so an order whose job expired long ago (a backfill of last year) is still
"already known" rather than a new no-op job. Arrivals are noted with the topic and a delivery id
naming the run (``sync-…`` or ``backfill-…``), so ``bridge status`` shows where an order came from.

Each order fed in has its version (its last-modified time) remembered (:meth:`ShopState.remember_versions`),
and the next run does not read or feed an order that has not changed since: a Shopify order costs
its share of the page of ids instead of ~50 points, and a WooCommerce order re-queues nothing.

The periodic sync reads from the store's watermark (less an overlap, for late commits and clock
skew) to now, and moves the watermark only when the whole window was read; a run that fails (the
shop is down, refuses the keys, answers garbage) leaves it, and the next run reads the window again.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from pydantic import BaseModel, Field
from redis.lock import Lock
from rq.job import Job

from config.log_format import log
from config.stores import StoreConfig
from workers.context import WorkerContext
from workers.events import Event, Ignored
from workers.metrics import SHOP_EVENTS
from workers.platforms import ADAPTERS
from workers.platforms.shop_api import OrdersPage, ShopApi, ShopOrder
from workers.shop.state import ShopState

logger = logging.getLogger("workers.shop.sync")
_ORDER_NAME = re.compile(r"\border \S+ ")


class Summary(BaseModel):
    """What one run read and did."""

    run_id: str
    since: datetime
    until: datetime
    orders_read: int = 0
    orders_total: int | None = None
    events_queued: int = 0
    already_known: int = 0
    ignored: dict[str, int] = Field(default_factory=dict)
    dry_run: bool = False
    # Orders of the window left unread: not changed since a run fed them in.
    orders_unchanged: int = 0

    def line(self) -> str:
        """One line for a person: the counts and the reasons orders were ignored."""
        queued = "would queue" if self.dry_run else "events queued"
        text = (f"orders read {self.orders_read}, {queued} {self.events_queued}, "
                f"already known {self.already_known}, ignored {sum(self.ignored.values())}")
        if self.ignored:
            text += " (" + "; ".join(f"{n} × {reason}" for reason, n in sorted(self.ignored.items())) + ")"
        if self.orders_unchanged:
            text += f", unchanged since last read {self.orders_unchanged}"
        return text


def new_run_id(task: str, now: datetime | None = None) -> str:
    """A delivery id naming one run: ``sync-20261118T140311Z-3fa9``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{task}-{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def already_recorded(ctx: WorkerContext, event: Event) -> bool:
    """Whether the ledger already holds this event's outcome (awarded or skipped; refund applied)."""
    reference = event.reference or ctx.events.reference_for(event.store, event.order_id)
    if reference is None:
        return False
    record = ctx.ledger.get(event.store, reference)
    if event.kind == "paid":
        return record.award is not None or record.skipped is not None
    if event.kind in ("refund", "cancel"):
        return (event.refund_id or "cancel") in record.refunds
    return False


def _ignore(summary: Summary, reason: str) -> None:
    key = _ORDER_NAME.sub("order ", reason)
    summary.ignored[key] = summary.ignored.get(key, 0) + 1


def feed_order(ctx: WorkerContext, store: StoreConfig, order: ShopOrder, summary: Summary) -> None:
    """Classify and queue what one order's payloads mean, as the intake does for a delivery."""
    adapter = ADAPTERS[store.platform]
    summary.orders_read += 1
    if not order.deliveries:
        _ignore(summary, "neither paid, refunded nor cancelled: nothing to do yet")
        return
    counts: Counter[str] = Counter()
    for delivery in order.deliveries:
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
        result = adapter.classify(delivery.topic, body, store)
        if isinstance(result, Ignored):
            _ignore(summary, result.reason)
            counts["ignored"] += 1
            continue
        for event in result:
            if already_recorded(ctx, event) or (summary.dry_run and ctx.connection.exists(Job.key_for(event.job_id))):
                summary.already_known += 1
                counts["known"] += 1
            elif summary.dry_run:
                summary.events_queued += 1
            elif ctx.events.submit(event, body.decode(), delivery_id=summary.run_id, request_id=summary.run_id):
                summary.events_queued += 1
                counts["queued"] += 1
                log(logger, "queued from the shop's API", store=store.id, reference=event.reference,
                    order_id=event.order_id, event=event.kind, run=summary.run_id)
            else:
                summary.already_known += 1
                counts["known"] += 1
    if not summary.dry_run:
        for result_, n in counts.items():
            SHOP_EVENTS.labels(store.id, result_).inc(n)


def read_window(ctx: WorkerContext, store: StoreConfig, api: ShopApi, since: datetime, until: datetime, *,
                task: str, dry_run: bool = False, lock: Lock | None = None, bulk: bool = False,
                on_page: Callable[[OrdersPage, Summary], None] | None = None) -> Summary:
    """Read every order modified in [since, until] and feed it in; raises ShopApiError when a page fails.

    Orders whose version a run already fed in are left unread; each order fed in (not in a dry run)
    has its version remembered. ``bulk``: the API's way for large reads (a Shopify bulk operation).
    ``lock`` (the store's, held by the caller) is renewed after every page, so a long run keeps it.
    """
    summary = Summary(run_id=new_run_id(task), since=since, until=until, dry_run=dry_run)
    state = ShopState(ctx.connection)
    known = partial(state.known_versions, store.id)
    for page in api.orders(since, until, known=known, bulk=bulk):
        summary.orders_total = page.total if page.total is not None else summary.orders_total
        summary.orders_unchanged += page.unchanged
        for order in page.orders:
            feed_order(ctx, store, order, summary)
        if page.orders and not dry_run:
            state.remember_versions(store.id, {order.order_id: order.modified_at for order in page.orders})
        if on_page is not None:
            on_page(page, summary)
        if lock is not None:
            lock.reacquire()
    return summary


def sync_store(ctx: WorkerContext, store: StoreConfig, api: ShopApi, lock: Lock | None = None,
               now: datetime | None = None) -> Summary:
    """The periodic sync of one store: from its watermark (less the overlap) to now."""
    state = ShopState(ctx.connection)
    until = now or datetime.now(UTC)
    mark = state.watermark(store.id)
    settings = ctx.settings
    since = (mark - timedelta(seconds=settings.shop_sync_overlap) if mark
             else until - timedelta(seconds=settings.shop_sync_first_lookback))
    summary = read_window(ctx, store, api, since, until, task="sync", lock=lock)
    state.set_watermark(store.id, until)
    return summary
