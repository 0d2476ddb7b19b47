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
from bridge.sandbox.query_cost import SINGLE_QUERY_LIMIT, requested_cost
from bridge.sandbox.shopify import ShopifyShop, ShopifyShopConfig
from bridge.sandbox.shops import ShopsConfig, ShopsServer
from bridge.sandbox.woocommerce import WooShop, WooShopConfig
from bridge.signatures import verify
from tests.conftest import fixture_json
from workers.platforms.shopify import graphql as gql


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
    shop.graphql(gql.SUBSCRIPTION_CREATE, {"topic": "ORDERS_PAID", "url": receiver.url})
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


def test_shopify_starts_a_query_when_its_requested_cost_is_in_the_bucket_and_charges_what_it_returned() -> None:
    now = [0.0]
    shop = ShopifyShop(ShopifyShopConfig(name="s", bucket_size=1000, restore_rate=50), Deliverer(),
                       monotonic=lambda: now[0])
    shop.create_order(fixture_json("shopify", "orders_paid"), deliver=False)
    order_id = f"gid://shopify/Order/{fixture_json('shopify', 'orders_paid')['id']}"
    first = shop.graphql(gql.ORDER_QUERY, {"id": order_id})["extensions"]["cost"]
    assert first["requestedQueryCost"] == requested_cost(gql.ORDER_QUERY) == 548
    assert first["actualQueryCost"] == 86                   # two line items, no refunds: far less than asked
    assert first["throttleStatus"]["currentlyAvailable"] == 914
    for _ in range(5):                                      # 914 → 484, each run while ≥ 548 is left
        assert "errors" not in shop.graphql(gql.ORDER_QUERY, {"id": order_id})
    throttled = shop.graphql(gql.ORDER_QUERY, {"id": order_id})
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"     # 484 left < 548 requested
    assert throttled["extensions"]["cost"]["actualQueryCost"] is None
    now[0] = 2.0  # 100 points restored
    assert "errors" not in shop.graphql(gql.ORDER_QUERY, {"id": order_id})
    assert "errors" in shop.graphql("query SomethingElse { shop { name } }", {})


def test_shopify_refuses_a_query_over_the_single_query_cost_limit_before_it_runs() -> None:
    shop = ShopifyShop(ShopifyShopConfig(name="s"), Deliverer())
    greedy = """query BridgeOrders($first: Int!) { orders(first: $first) { nodes { id
      lineItems(first: 100) { nodes { id } } } } }"""
    refused = shop.graphql(greedy, {"first": 25})
    assert refused["errors"][0]["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 2577, "maxCost": 1000}
    assert shop.requests == 0  # not run, not charged


def test_query_costs_follow_shopifys_published_rules() -> None:
    # shopify.dev's example: 2 for the products connection + 10 × (1 product + 2 + 5 variants).
    assert requested_cost("{ products(first: 10) { edges { node { title variants(first: 5) "
                          "{ edges { node { price } } } } } } }") == 82
    assert requested_cost("{ shop { name } }") == 1
    assert requested_cost(gql.SUBSCRIPTION_CREATE, {"topic": "ORDERS_PAID", "url": "https://x"}) == 10
    # Every query the bridge sends stays under the limit at the sizes it sends.
    for query, variables in ((gql.ORDERS_QUERY, {"first": gql.ORDERS_FIRST, "withCount": True}),
                             (gql.ORDER_QUERY, {}), (gql.ORDER_LINES_QUERY, {}), (gql.REFUND_QUERY, {}),
                             (gql.CHECK_QUERY, {}), (gql.SUBSCRIPTIONS_QUERY, {})):
        assert requested_cost(query, variables) <= SINGLE_QUERY_LIMIT
