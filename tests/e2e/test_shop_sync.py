"""The shops' own APIs with real processes: the emulated WooCommerce and Shopify shops over HTTP, a
gunicorn web process, `bridge worker` processes, the `bridge` command, a real Redis and the Loyalty.lt
sandbox. An order whose webhook never arrived is awarded once, by a backfill (Shopify's through a bulk
operation, which may fail and is run again) or by the periodic sync, which reads an order once and
then leaves it until it changes; and a webhook WooCommerce disabled is found and turned back on."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.cluster import BIN, SECRETS, Cluster, wait_until
from bridge.embedded_redis import free_port
from bridge.samples import sample_order
from bridge.sandbox.shopify import ShopifyShopConfig
from bridge.sandbox.shops import ShopsConfig, ShopsServer
from bridge.sandbox.woocommerce import WooShopConfig
from workers.ledger import Ledger

pytestmark = pytest.mark.e2e
KEY, SECRET, TOKEN = "ck_cluster", "cs_cluster", "shpat_cluster"


@pytest.fixture
def shops() -> Iterator[ShopsServer]:
    config = ShopsConfig(woocommerce=[WooShopConfig(name="woo", consumer_key=KEY, consumer_secret=SECRET)],
                         shopify=[ShopifyShopConfig(name="shop", access_token=TOKEN, client_secret=SECRETS["shop"])])
    with ShopsServer(config) as server:
        yield server


def store_fields(shops: ShopsServer) -> dict[str, dict[str, str]]:
    return {"woo": {"shop_url": shops.shops.shop_url("woocommerce", "woo"), "shop_consumer_key": KEY,
                    "shop_consumer_secret": SECRET},
            "shop": {"shop_url": shops.shops.shop_url("shopify", "shop"), "shop_access_token": TOKEN}}


def bridge(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bridge"), *args], cwd=cluster.workdir, env=cluster.env, capture_output=True,
                          text=True, timeout=120)


def purchases(cluster: Cluster) -> Counter[str]:
    return Counter(str(t["reference_number"]) for t in cluster.transactions() if t["type"] == "purchase")


def place_lost_orders(shops: ShopsServer, first_id: int) -> tuple[str, str]:
    """One order in each shop whose webhook cannot arrive (the bridge is down); their references."""
    dead = f"http://127.0.0.1:{free_port()}"
    woo, shopify = shops.shops.woocommerce["woo"], shops.shops.shopify["shop"]
    woo.create_webhook({"topic": "order.created", "delivery_url": f"{dead}/webhooks/woocommerce/woo",
                        "secret": SECRETS["woo"]})
    woo.create_order(sample_order("woocommerce", first_id, f"lost-{first_id}@example.com"))
    shopify.create_order(sample_order("shopify", first_id + 1, f"lost-{first_id + 1}@example.com"))
    assert shops.shops.deliverer.drain()
    assert shops.shops.snapshot()["deliveries"][-1]["ok"] is False
    return f"WC-{first_id}", f"SH-{(first_id + 1) % 100000}"


def test_backfill_awards_an_order_placed_while_the_bridge_was_stopped_once(tmp_path: Path,
                                                                           shops: ShopsServer) -> None:
    woo_ref, shop_ref = place_lost_orders(shops, 9_100_001)
    env = {"BRIDGE_SHOP_SYNC_INTERVAL": "0", "BRIDGE_SHOP_WATCH_INTERVAL": "0"}
    with Cluster(tmp_path, webs=1, workers=1, env=env, store_fields=store_fields(shops)) as cluster:
        today = time.strftime("%Y-%m-%d", time.gmtime())
        # Shopify's bulk operation fails halfway (its TIMEOUT): the backfill says so and queues nothing.
        requests.post(f"{store_fields(shops)['shop']['shop_url']}/_emulator/bulk",
                      json={"fail_next": "FAILED:TIMEOUT"}, timeout=10).raise_for_status()
        failed = bridge(cluster, "backfill", "--store", "shop", "--since", today)
        assert failed.returncode == 1 and "ended FAILED (TIMEOUT)" in failed.stderr, failed.stdout + failed.stderr
        assert "nothing is lost: run the backfill again" in failed.stderr
        for store in ("woo", "shop"):
            done = bridge(cluster, "backfill", "--store", store, "--since", today)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "orders read 1, events queued 1, already known 0" in done.stdout
        cluster.wait_drained(60)
        assert purchases(cluster) == {woo_ref: 1, shop_ref: 1}
        calls = cluster.sandbox.sandbox.state.request_counts()["total"]

        shopify = shops.shops.shopify["shop"].snapshot()
        assert [op["status"] for op in shopify["bulk_operations"]] == ["FAILED", "COMPLETED"]
        assert "BridgeOrder" not in shopify["operations"]  # read through the bulk file, not order by order
        for store in ("woo", "shop"):
            again = bridge(cluster, "backfill", "--store", store, "--since", today)
            assert again.returncode == 0, again.stdout + again.stderr
            assert "events queued 0, already known 0, ignored 0, unchanged since last read 1" in again.stdout
        cluster.wait_drained(60)
        assert cluster.sandbox.sandbox.state.request_counts()["total"] == calls  # no second call at all
        status = bridge(cluster, "status", woo_ref, "--store", "woo")
        assert "queued    order.updated backfill-" in status.stdout, status.stdout


def test_the_periodic_sync_awards_lost_orders_once_with_two_workers(tmp_path: Path, shops: ShopsServer) -> None:
    woo_ref, shop_ref = place_lost_orders(shops, 9_200_001)
    env = {"BRIDGE_SHOP_SYNC_INTERVAL": "1", "BRIDGE_SHOP_WATCH_INTERVAL": "0",
           "BRIDGE_WORKER_MAINTENANCE_INTERVAL": "1"}
    with Cluster(tmp_path, webs=1, workers=2, env=env, store_fields=store_fields(shops)) as cluster:
        ledger = Ledger(cluster.connection(), retention=86400)

        def awarded(store: str, reference: str) -> bool:
            return ledger.get(store, reference).award is not None

        wait_until(lambda: awarded("woo", woo_ref) and awarded("shop", shop_ref), 60, "the sync to award both orders")
        # An order lost while everything runs is found by a later run.
        later = sample_order("woocommerce", 9_200_009, "lost-later@example.com")
        shops.shops.woocommerce["woo"].create_order(later, deliver=False)
        wait_until(lambda: awarded("woo", "WC-9200009"), 60, "the sync to award the later order")
        requests_then = shops.shops.woocommerce["woo"].requests
        wait_until(lambda: shops.shops.woocommerce["woo"].requests >= requests_then + 3, 30, "more sync runs")
        cluster.wait_drained(60)
        assert purchases(cluster) == {woo_ref: 1, shop_ref: 1, "WC-9200009": 1}
        # One run at a time across both workers: the WooCommerce server never saw two requests at once.
        assert shops.shops.woocommerce["woo"].max_in_flight == 1
        # Every run lists the lost Shopify order; only the first read it whole.
        shopify = shops.shops.shopify["shop"].snapshot()["operations"]
        assert shopify["BridgeOrders"] >= 3 and shopify["BridgeOrder"] == 1, shopify
        status = bridge(cluster, "status", shop_ref, "--store", "shop")
        assert "orders/paid sync-" in status.stdout, status.stdout
        check = bridge(cluster, "check")
        assert "last sync" in check.stdout and "FAIL" not in check.stdout, check.stdout


def test_a_webhook_disabled_after_five_failures_is_reported_and_turned_back_on(tmp_path: Path,
                                                                               shops: ShopsServer) -> None:
    woo = shops.shops.woocommerce["woo"]
    env = {"BRIDGE_SHOP_SYNC_INTERVAL": "0", "BRIDGE_SHOP_WATCH_INTERVAL": "1",
           "BRIDGE_WORKER_MAINTENANCE_INTERVAL": "1"}
    with Cluster(tmp_path, webs=1, workers=0, env=env, store_fields=store_fields(shops)) as cluster:
        # The bridge's address is down (a redeploy on a busy day): five deliveries in a row fail.
        down = f"http://127.0.0.1:{free_port()}"
        connected = bridge(cluster, "connect", "woo", "--url", down)
        assert connected.returncode == 0 and connected.stdout.count("active  created") == 2, connected.stdout
        again = bridge(cluster, "connect", "woo", "--url", down)
        assert again.returncode == 0 and again.stdout.count("active  -") == 2, again.stdout
        for i in range(5):
            woo.create_order(sample_order("woocommerce", 9_300_000 + i))
        assert shops.shops.deliverer.drain()
        hooks = {h["topic"]: h for h in woo.snapshot()["webhooks"]}
        assert hooks["order.created"]["status"] == "disabled"
        woo.update_webhook(int(hooks["order.updated"]["id"]), {"status": "paused"})  # a person paused this one

        check = bridge(cluster, "connect", "woo", "--check")
        assert check.returncode == 1, check.stdout
        assert "order.created  disabled" in check.stdout and "order.updated  paused" in check.stdout

        cluster.start_worker()
        wait_until(lambda: {h["topic"]: h["status"] for h in woo.snapshot()["webhooks"]}["order.created"] == "active",
                   30, "maintenance to re-enable the disabled webhook")
        assert {h["topic"]: h["status"] for h in woo.snapshot()["webhooks"]}["order.updated"] == "paused"
        fixed = bridge(cluster, "connect", "woo", "--check", "--fix")
        assert fixed.returncode == 0 and "reactivated" in fixed.stdout, fixed.stdout
        assert {h["status"] for h in woo.snapshot()["webhooks"]} == {"active"}
