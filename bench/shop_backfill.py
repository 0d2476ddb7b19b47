"""Reading a shop's orders at scale, against the emulated shops over HTTP and a real Redis:

    python -m bench.shop_backfill [--orders 10000] [--refunded 0.03] [--cancelled 0.01]

For a Shopify shop on the Standard plan (the emulator refills its cost bucket at the published 100
points a second) and a WooCommerce shop, each holding ``--orders`` orders placed without webhooks:

1. the backfill (``bridge backfill``'s path: Shopify through a bulk operation, each refund read
   alone; WooCommerce 100 orders a page): seconds, queries, cost points, events queued;
2. a sync over the same window right after, every order known: Shopify's cost points per order
   through the pages of ids (a window of more than 250 orders goes through a bulk operation in
   production: measured too, as ``sync_all_known_bulk``), WooCommerce's requests, and how many
   events either queued again (none is the goal);
3. for reference, what reading orders one by one (the sync's way for an order it does not know)
   costs a Shopify order, measured on 20, and what 10,000 would take at that rate.

Events are queued, not worked (no worker runs): this measures the reading. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis

from bench.cluster import API_KEY, API_SECRET, SECRETS
from bridge.embedded_redis import EmbeddedRedis
from bridge.samples import sample_order
from bridge.sandbox.shopify import ShopifyShop, ShopifyShopConfig
from bridge.sandbox.shops import ShopsConfig, ShopsServer
from bridge.sandbox.woocommerce import WooShop, WooShopConfig
from config.settings import Settings
from config.stores import Stores, build_store
from workers.context import WorkerContext
from workers.platforms import shop_api_for
from workers.platforms.shopify.api import ShopifyApi
from workers.shop.sync import read_window

KEY, SECRET, TOKEN = "ck_bench", "cs_bench", "shpat_bench"
GOAL_SECONDS, GOAL_POINTS = 300.0, 3.0


def place_orders(shop: ShopifyShop | WooShop, platform: str, count: int, refunded: float, cancelled: float,
                 seed: int) -> dict[str, int]:
    """``count`` paid orders, a share refunded (one refund of one line) and a share cancelled, no webhooks."""
    rng = random.Random(seed)
    made = {"orders": 0, "refunded": 0, "cancelled": 0}
    for i in range(count):
        order_id = 8_000_000 + i
        order = sample_order(platform, order_id, f"bench-{i}@example.com")
        roll = rng.random()
        if platform == "woocommerce":
            if roll < refunded:
                order["refunds"] = [{"id": 90_000_000 + i, "reason": "broken mug", "total": "-13.61"}]
                made["refunded"] += 1
            elif roll < refunded + cancelled:
                order["status"] = "cancelled"
                made["cancelled"] += 1
            shop.create_order(order, deliver=False)  # type: ignore[union-attr]
        else:
            assert isinstance(shop, ShopifyShop)
            shop.create_order(order, deliver=False)
            if roll < refunded:
                line = order["line_items"][1]
                shop.add_refund(order_id, {
                    "id": 90_000_000 + i, "note": "broken mug",
                    "refund_line_items": [{"id": 91_000_000 + i, "line_item_id": line["id"], "quantity": 1,
                                           "subtotal": 13.30, "total_tax": 2.31, "line_item": line}],
                    "transactions": [{"id": 92_000_000 + i, "kind": "refund", "status": "success",
                                      "amount": "13.30", "currency": "EUR"}]}, deliver=False)
                made["refunded"] += 1
            elif roll < refunded + cancelled:
                shop.cancel(order_id, deliver=False)
                made["cancelled"] += 1
        made["orders"] += 1
    return made


def _shopify_counts(shop: ShopifyShop) -> dict[str, Any]:
    state = shop.snapshot()
    return {"requests": state["requests"], "points": state["points"], "throttled": state["throttled"],
            "operations": state["operations"]}


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    ops = {k: v - before["operations"].get(k, 0) for k, v in after["operations"].items()
           if v - before["operations"].get(k, 0)}
    return {"requests": after["requests"] - before["requests"], "points": round(after["points"] - before["points"], 1),
            "throttled": after["throttled"] - before["throttled"], "operations": ops}


def run(orders: int, refunded: float, cancelled: float, seed: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    config = ShopsConfig(woocommerce=[WooShopConfig(name="woo", consumer_key=KEY, consumer_secret=SECRET)],
                         shopify=[ShopifyShopConfig(name="shop", access_token=TOKEN, client_secret=SECRETS["shop"],
                                                    plan="standard")])
    result: dict[str, Any] = {"orders": orders, "seed": seed, "plan": "standard", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name, ShopsServer(config) as server:
        redis = EmbeddedRedis(Path(tmp_name) / "redis", persist=False).start()
        try:
            settings = Settings(REDIS_URL=redis.url, stores_file=Path(tmp_name) / "absent.toml",
                                shop_max_wait=120.0)
            common = {"api_key": API_KEY, "api_secret": API_SECRET, "api_url": "http://127.0.0.1:9"}
            stores = Stores({
                "woo": build_store("woo", {**common, "platform": "woocommerce", "webhook_secrets": [SECRETS["woo"]],
                                           "shop_url": server.shops.shop_url("woocommerce", "woo"),
                                           "shop_consumer_key": KEY, "shop_consumer_secret": SECRET}, {}, "bench"),
                "shop": build_store("shop", {**common, "platform": "shopify", "webhook_secrets": [SECRETS["shop"]],
                                             "shop_url": server.shops.shop_url("shopify", "shop"),
                                             "shop_access_token": TOKEN}, {}, "bench")}, "bench")
            ctx = WorkerContext.build(settings, stores, Redis.from_url(redis.url))
            shopify, woo = server.shops.shopify["shop"], server.shops.woocommerce["woo"]
            started = time.perf_counter()
            result["shopify_orders"] = place_orders(shopify, "shopify", orders, refunded, cancelled, seed)
            result["woocommerce_orders"] = place_orders(woo, "woocommerce", orders, refunded, cancelled, seed)
            result["placing_seconds"] = round(time.perf_counter() - started, 1)
            since, until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(minutes=1)

            for store_id, platform in (("shop", "shopify"), ("woo", "woocommerce")):
                store = stores[store_id]
                api = shop_api_for(store, settings)
                before = _shopify_counts(shopify)
                woo_requests = woo.requests
                started = time.perf_counter()
                backfill = read_window(ctx, store, api, since, until, task="backfill", bulk=True)
                seconds = time.perf_counter() - started
                after = _shopify_counts(shopify)
                woo_after_backfill = woo.requests
                # The pages of ids, whatever the window's size (the bulk switch off).
                paged = ShopifyApi(store.shop_url or "", TOKEN, bulk_from=10**9) if platform == "shopify" else api
                sync_started = time.perf_counter()
                sync = read_window(ctx, store, paged, since, until, task="sync")
                sync_seconds = time.perf_counter() - sync_started
                final = _shopify_counts(shopify)
                entry: dict[str, Any] = {
                    "backfill": {"seconds": round(seconds, 1), "orders_read": backfill.orders_read,
                                 "events_queued": backfill.events_queued},
                    "sync_all_known": {"seconds": round(sync_seconds, 2), "orders_listed": sync.orders_unchanged
                                       + sync.orders_read, "orders_read": sync.orders_read,
                                       "events_queued": sync.events_queued}}
                if platform == "shopify":
                    entry["backfill"].update(_delta(after, before))
                    entry["sync_all_known"].update(_delta(final, after))
                    entry["sync_all_known"]["points_per_order"] = round(
                        entry["sync_all_known"]["points"] / max(1, entry["sync_all_known"]["orders_listed"]), 2)
                    bulk_started = time.perf_counter()
                    by_bulk = read_window(ctx, store, api, since, until, task="sync")
                    entry["sync_all_known_bulk"] = {
                        "seconds": round(time.perf_counter() - bulk_started, 1), "orders_read": by_bulk.orders_read,
                        "orders_unchanged": by_bulk.orders_unchanged, "events_queued": by_bulk.events_queued,
                        **_delta(_shopify_counts(shopify), final)}
                else:
                    entry["backfill"]["requests"] = woo_after_backfill - woo_requests
                    entry["sync_all_known"]["requests"] = woo.requests - woo_after_backfill
                result[platform] = entry

            # The per-order reading (before bulk operations, and still the sync's way for an order it
            # does not know), on 20 orders with a fresh client that knows no version.
            before = _shopify_counts(shopify)
            one_by_one = ShopifyApi(server.shops.shop_url("shopify", "shop"), TOKEN, page_size=20, max_wait=120.0,
                                    bulk_from=10**9)
            page = next(iter(one_by_one.orders(since, until)))
            spent = _delta(_shopify_counts(shopify), before)
            per_order = spent["points"] / max(1, len(page.orders))
            result["per_order_reading"] = {"orders": len(page.orders), "points": spent["points"],
                                           "points_per_order": round(per_order, 1),
                                           "minutes_for_all_at_standard": round(per_order * orders / 100 / 60, 1)}
            result["seen_key_bytes"] = Redis.from_url(redis.url).memory_usage(next(iter(Redis.from_url(redis.url).scan_iter(
                "lb:shop:seen:shop:*"))))
        finally:
            redis.stop()
    result["load_before"] = [round(x, 2) for x in load_before]
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    shop_result = result["shopify"]
    result["goals"] = {
        "shopify_backfill_under_5_min": shop_result["backfill"]["seconds"] < GOAL_SECONDS,
        "shopify_sync_known_at_most_3_points_per_order": shop_result["sync_all_known"]["points_per_order"] <= GOAL_POINTS,
        "nothing_requeued": shop_result["sync_all_known"]["events_queued"] == 0
        and result["woocommerce"]["sync_all_known"]["events_queued"] == 0,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--refunded", type=float, default=0.03, help="share of orders with a refund")
    parser.add_argument("--cancelled", type=float, default=0.01, help="share of orders cancelled")
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    print(json.dumps(run(args.orders, args.refunded, args.cancelled, args.seed), indent=2))


if __name__ == "__main__":
    main()
