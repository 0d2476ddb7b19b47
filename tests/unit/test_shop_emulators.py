"""The emulated shops behave like the platforms where the bridge depends on it: WooCommerce disables a
webhook after 5 failed deliveries in a row and checks OAuth signatures; Shopify removes a subscription
that keeps failing, signs with the app's client secret and throttles by query cost."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests

from bridge.sandbox.deliveries import Deliverer
from bridge.sandbox.shopify import ShopifyShop, ShopifyShopConfig
from bridge.sandbox.shops import ShopsConfig, ShopsServer
from bridge.sandbox.woocommerce import WooShop, WooShopConfig
from bridge.signatures import verify
from tests.conftest import fixture_json


class Receiver:
    """A webhook receiver answering the status it is told, and keeping what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def deliverer() -> Iterator[Deliverer]:
    d = Deliverer(timeout=2)
    yield d
    d.close()


def test_woocommerce_disables_a_webhook_after_five_failures_in_a_row(receiver: Receiver,
                                                                     deliverer: Deliverer) -> None:
    shop = WooShop(WooShopConfig(name="w"), deliverer, base_url=lambda: "http://shop.test")
    hook = shop.create_webhook({"topic": "order.created", "delivery_url": receiver.url, "secret": "s3cret"})
    receiver.status = 500
    for i in range(4):
        shop.create_order({"id": 100 + i})
    receiver.status = 200
    shop.create_order({"id": 110})  # a success resets the count
    assert deliverer.drain()
    assert shop.webhooks[hook["id"]]["status"] == "active" and shop.webhooks[hook["id"]]["failure_count"] == 0
    receiver.status = 404
    for i in range(5):
        shop.create_order({"id": 200 + i})
    assert deliverer.drain()
    assert shop.webhooks[hook["id"]]["status"] == "disabled"
    shop.create_order({"id": 300})
    assert deliverer.drain() and len(receiver.received) == 10  # a disabled webhook delivers nothing
    headers, body = receiver.received[0]
    assert headers["X-WC-Webhook-Topic"] == "order.created" and headers["X-WC-Webhook-Source"] == "http://shop.test/"
    assert verify(body, headers["X-WC-Webhook-Signature"], [b"s3cret"])
    assert "secret" not in shop.webhook_view(shop.webhooks[hook["id"]])


def test_woocommerce_checks_oauth_signatures_over_plain_http() -> None:
    config = ShopsConfig(woocommerce=[WooShopConfig(name="w", consumer_key="ck_a", consumer_secret="cs_a")])
    with ShopsServer(config) as server:
        url = server.shops.shop_url("woocommerce", "w") + "/wp-json/wc/v3/orders"
        assert requests.get(url, timeout=5).json()["code"] == "woocommerce_rest_cannot_view"
        basic = requests.get(url, auth=("ck_a", "cs_a"), timeout=5)  # Basic is for HTTPS only
        assert basic.status_code == 401
        from woocommerce import API

        good = API(url=server.shops.shop_url("woocommerce", "w"), consumer_key="ck_a", consumer_secret="cs_a")
        assert good.get("orders").status_code == 200
        signed = good.get("orders", params={"per_page": 5}).request.url
        tampered = signed.replace("per_page=5", "per_page=6", 1)
        refused = requests.get(tampered, timeout=5).json()
        assert refused["message"] == "Invalid signature - provided signature does not match."


def test_shopify_removes_a_subscription_that_keeps_failing_and_signs_with_the_client_secret(
        receiver: Receiver, deliverer: Deliverer) -> None:
    shop = ShopifyShop(ShopifyShopConfig(name="s", client_secret="app-secret", max_failures=8), deliverer)
    shop.graphql("BridgeWebhookCreate", {"topic": "ORDERS_PAID", "url": receiver.url})
    paid = fixture_json("shopify", "orders_paid")
    shop.create_order(paid)
    assert deliverer.drain()
    headers, body = receiver.received[0]
    assert headers["X-Shopify-Topic"] == "orders/paid" and headers["X-Shopify-Shop-Domain"] == "s.myshopify.com"
    expected = base64.b64encode(hmac.new(b"app-secret", body, hashlib.sha256).digest()).decode()
    assert headers["X-Shopify-Hmac-Sha256"] == expected and json.loads(body)["id"] == paid["id"]
    receiver.status = 503
    for i in range(8):
        shop.create_order({**paid, "id": 1000 + i})
    assert deliverer.drain()
    assert shop.subscriptions == {}


def test_shopify_throttles_by_query_cost() -> None:
    now = [0.0]
    shop = ShopifyShop(ShopifyShopConfig(name="s", bucket_size=100, restore_rate=10), Deliverer(),
                       monotonic=lambda: now[0])
    first = shop.graphql("BridgeOrders", {"first": 5, "query": "", "withCount": True})
    assert first["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 38
    throttled = shop.graphql("BridgeOrders", {"first": 5, "query": ""})
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    now[0] = 3.0  # 30 points restored
    assert "errors" not in shop.graphql("BridgeOrders", {"first": 5, "query": ""})
    assert "errors" in shop.graphql("SomethingElse", {})
