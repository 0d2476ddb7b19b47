"""The commands that talk to the shops' own APIs: ``bridge connect`` and ``bridge backfill``, and the
shop lines of ``bridge check`` and ``bridge send-test --lost``. The work is done in :mod:`workers.shop`."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
import requests
from redis.exceptions import RedisError

from config.stores import StoreConfig, Stores

if TYPE_CHECKING:
    from bridge.cli_state import CliState
    from workers.platforms.shop_api import ShopApi

# How long `bridge backfill` waits for a sync of the same store to finish.
LOCK_WAIT = 120.0
# A backfill shows a progress bar once it has taken this long (a quick one prints its summary only).
PROGRESS_AFTER = 1.0


def _store(state: CliState, store_id: str) -> StoreConfig:
    if store_id not in state.stores:
        raise click.ClickException(f"no store {store_id!r} (stores: {', '.join(state.stores) or 'none'})")
    store = state.stores[store_id]
    if not store.has_shop_api:
        needed = "shop_consumer_key and shop_consumer_secret" if store.platform == "woocommerce" \
            else "shop_access_token"
        raise click.ClickException(f"{store_id} has no shop API configured: set shop_url and {needed} in the "
                                   "stores file (see README, Connect a shop)")
    return store


def _api(state: CliState, store: StoreConfig) -> ShopApi:
    from workers.platforms import shop_api_for

    return shop_api_for(store, state.settings)


@click.command()
@click.argument("store_id")
@click.option("--url", help="The bridge's public address (https://bridge.example.com): where the shop delivers.")
@click.option("--check", "only_check", is_flag=True, help="Only show each subscription and its state.")
@click.option("--fix", is_flag=True, help="With --check: create what is missing, re-activate what is disabled or "
                                          "paused, and point the rest at the bridge.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def connect(state: CliState, store_id: str, url: str | None, only_check: bool, fix: bool, as_json: bool) -> None:
    """Create the store's webhook subscriptions through the shop's API (idempotent), or check them."""
    from bridge.tables import table
    from workers.platforms.shop_api import ShopApiError
    from workers.shop import subscriptions
    from workers.shop.state import ShopState

    if fix and not only_check:
        raise click.UsageError("--fix goes with --check (plain `bridge connect` already fixes everything)")
    if url is not None and not url.startswith(("https://", "http://")):
        raise click.UsageError("--url must be the bridge's public address, starting with https://")
    store = _store(state, store_id)
    shop_state = ShopState(state.connection)
    api = _api(state, store)
    try:
        record = shop_state.connected(store.id)
        if not only_check or fix:
            public = url or (record.url.split("/webhooks/")[0] if record else None)
            if public is None:
                raise click.UsageError("give --url, the bridge's public address (the first connect needs it)")
            topics = subscriptions.connect(api, store, shop_state, public)
        else:
            topics = subscriptions.check(api, store, shop_state, url)
    except ShopApiError as exc:
        raise click.ClickException(f"{store.id}: {exc}") from None
    except RedisError as exc:
        raise click.ClickException(f"Redis unavailable ({type(exc).__name__}): connect records what it set there")
    rows = [{"topic": t.topic, "status": t.status, "done": t.action or "-",
             "problems": ", ".join(t.problems) if not t.action else "-", "url": t.url, "id": t.id or "-"}
            for t in topics]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(table(rows, ["topic", "status", "done", "problems", "url", "id"]))
        if store.platform == "shopify":
            click.echo("Shopify signs deliveries with the app's client secret: it must be among the store's "
                       "webhook_secrets. The privacy topics are set in the app's configuration, not through the API.")
    if only_check and any(not t.healthy for t in topics):
        if not as_json:
            click.echo(f"{store.id}: subscriptions need attention; `bridge connect {store.id} --check --fix` mends them")
        sys.exit(1)


def _day(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


@click.command()
@click.option("--store", "store_id", required=True, help="The store whose shop to read.")
@click.option("--since", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD, UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day, included (default: up to now).")
@click.option("--dry-run", is_flag=True, help="Say what would be queued, queue nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
def backfill(state: CliState, store_id: str, since: datetime, until: datetime | None, dry_run: bool,
             as_json: bool) -> None:
    """Read the shop's orders modified in a period and queue what no webhook brought.

    Each order takes the webhooks' path (same events, job ids, dedupe and ledger): one already
    processed costs nothing, so running it twice is safe.
    """
    from redis.exceptions import LockError

    from workers.context import WorkerContext
    from workers.platforms.shop_api import ShopApiError
    from workers.shop.state import RunStatus, ShopState
    from workers.shop.sync import read_window

    now = datetime.now(UTC)
    start = _day(since)
    end = min(_day(until) + timedelta(days=1), now) if until else now
    if start > now:
        raise click.UsageError("--since is in the future")
    if until is not None and since > until:
        raise click.UsageError("--since is after --until")
    store = _store(state, store_id)
    api = _api(state, store)
    ctx = WorkerContext.build(state.settings, state.stores, state.connection)
    shop_state = ShopState(ctx.connection)
    lock = shop_state.lock(store.id)
    bar: Any = None
    status = ""
    started = time.monotonic()

    def progress(page: Any, summary: Any) -> None:
        """Click's progress bar on a terminal (not with --json): orders read and queued, the bulk status."""
        nonlocal bar, status
        status = page.status or status
        if bar is None and page.total and not as_json and sys.stderr.isatty() \
                and time.monotonic() - started > PROGRESS_AFTER:
            bar = click.progressbar(length=page.total, label=f"Reading {store.id}'s orders", file=sys.stderr,
                                    show_pos=True, item_show_func=lambda _: "; ".join(
                                        filter(None, [f"queued {summary.events_queued}", status])))
            bar.__enter__()
        if bar is not None:
            bar.update(summary.orders_read + summary.orders_unchanged - bar.pos)

    try:
        if not lock.acquire(blocking=True, blocking_timeout=LOCK_WAIT):
            raise click.ClickException(f"another run against {store.id}'s shop is going on (the periodic sync?); "
                                       "try again in a moment")
        try:
            summary = read_window(ctx, store, api, start, end, task="backfill", dry_run=dry_run, lock=lock,
                                  bulk=True, on_page=progress)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
            try:
                lock.release()
            except LockError:
                pass
    except ShopApiError as exc:
        shop_state.record(store.id, RunStatus(task="backfill", at=datetime.now(UTC), ok=False, outcome=exc.kind,
                                              message=str(exc)))
        raise click.ClickException(f"{store.id}: {exc} (nothing is lost: run the backfill again)") from None
    except RedisError as exc:
        raise click.ClickException(f"Redis unavailable ({type(exc).__name__})") from None
    if not dry_run:
        shop_state.record(store.id, RunStatus(task="backfill", at=datetime.now(UTC), ok=True, message=summary.line()))
    if as_json:
        click.echo(json.dumps(summary.model_dump(mode="json"), indent=2))
    else:
        click.echo(f"{store.id} {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC: {summary.line()}"
                   + (" (dry run: nothing queued)" if dry_run else ""))
        if summary.events_queued and not dry_run:
            click.echo("The workers process what was queued; follow an order with `bridge status <reference>`.")


def check_shops(state: CliState, stores: Stores) -> int:
    """``bridge check``'s shop lines: one cheap call per store with a shop API, and its last sync."""
    from workers.platforms.shop_api import ShopApiError
    from workers.shop.state import ShopState

    bad = 0
    last: dict[tuple[str, str], Any] = {}
    if state.settings.redis_url:
        try:
            last = ShopState(state.connection).statuses()
        except RedisError:
            last = {}
    for store in stores.values():
        if not store.has_shop_api:
            continue
        try:
            info = _api(state, store).check()
            line = f"  {store.id:<20} ok    shop: {info.detail}"
        except ShopApiError as exc:
            bad += 1
            line = f"  {store.id:<20} FAIL  shop ({exc.kind}): {exc}"
        click.echo(line)
        for task in ("sync", "watch"):
            status = last.get((store.id, task))
            if status is not None:
                ago = int((datetime.now(UTC) - status.at).total_seconds())
                word = "ok" if status.ok else f"FAILED ({status.outcome})"
                click.echo(f"  {'':<20}       last {task} {ago} s ago: {word}"
                           + ("" if status.ok else f": {status.message}"))
    return bad


def send_lost(store: StoreConfig, payload: bytes) -> str:
    """Create an order in the store's emulated shop without delivering its webhook; returns the shop's answer."""
    if not store.has_shop_api or store.shop_url is None:
        raise click.ClickException(f"--lost needs an emulated shop: {store.id} has no shop_url (run `bridge dev`)")
    try:
        resp = requests.post(f"{store.shop_url}/_emulator/orders", params={"deliver": "0"}, data=payload,
                             headers={"Content-Type": "application/json"}, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach the shop at {store.shop_url}: {type(exc).__name__}") from None
    if resp.status_code == 404:
        raise click.ClickException(f"--lost needs an emulated shop (bridge dev's): {store.shop_url} is not one")
    if resp.status_code >= 300:
        raise click.ClickException(f"the emulated shop answered {resp.status_code}: {resp.text.strip()[:200]}")
    return resp.text
