"""The shops' API clients against faked HTTP (``responses``): authentication, paging, rate limits and
the error each failure becomes (retry later, unreachable, refused), with no credential in any message."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses

from workers.platforms.shop_api import ShopRefused, ShopRetryLater, ShopUnreachable
from workers.platforms.shopify.api import ShopifyApi
from workers.platforms.woocommerce.api import WooCommerceApi

WOO = "https://coffee.example.com"
ORDERS = f"{WOO}/wp-json/wc/v3/orders"
KEY, SECRET = "ck_live_key_do_not_log", "cs_live_secret_do_not_log"
SHOPIFY = "https://coffee-lt.myshopify.com"
GRAPHQL = f"{SHOPIFY}/admin/api/2026-04/graphql.json"
TOKEN = "shpat_token_do_not_log"
SINCE, UNTIL = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def woo(**kwargs: Any) -> WooCommerceApi:
    return WooCommerceApi(WOO, KEY, SECRET, **kwargs)


def wp_error(code: str, message: str, status: int) -> dict[str, Any]:
    return {"code": code, "message": message, "data": {"status": status}}


def no_secrets(exc: BaseException) -> None:
    for secret in (KEY, SECRET, TOKEN):
        assert secret not in str(exc) and secret not in repr(exc)


# --- WooCommerce -----------------------------------------------------------------------------------

def test_woocommerce_uses_basic_auth_over_https(mock: responses.RequestsMock) -> None:
    mock.get(ORDERS, json=[], headers={"X-WP-Total": "42"})
    assert "orders: 42" in woo().check().detail
    expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert mock.calls[0].request.headers["Authorization"] == expected
    assert "consumer_key" not in mock.calls[0].request.url


def test_woocommerce_falls_back_to_query_keys_when_the_server_strips_the_header(mock: responses.RequestsMock) -> None:
    mock.get(ORDERS, json=wp_error("woocommerce_rest_cannot_view", "Sorry, you cannot list resources.", 401),
             status=401, match=[responses.matchers.header_matcher({"Authorization": "Basic " + base64.b64encode(
                 f"{KEY}:{SECRET}".encode()).decode()})])
    mock.get(ORDERS, json=[], headers={"X-WP-Total": "3"},
             match=[responses.matchers.query_param_matcher({"per_page": "1", "consumer_key": KEY,
                                                            "consumer_secret": SECRET})])
    api = woo()
    assert "query parameters" in api.check().detail
    assert api.query_string_auth


def test_woocommerce_wrong_keys_are_refused_without_a_fallback(mock: responses.RequestsMock) -> None:
    mock.get(ORDERS, json=wp_error("woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401),
             status=401)
    with pytest.raises(ShopRefused, match="401: woocommerce_rest_authentication_error: Consumer secret is invalid") as e:
        woo().check()
    assert len(mock.calls) == 1
    no_secrets(e.value)


@pytest.mark.parametrize(("answer", "expected"), [
    ({"status": 404, "json": wp_error("rest_no_route", "No route", 404)}, "no WooCommerce REST API v3 here"),
    ({"status": 200, "body": "<html>Welcome to my blog</html>", "content_type": "text/html"},
     "not a WooCommerce site"),
    ({"status": 301, "headers": {"Location": "https://www.coffee.example.com/wp-json/wc/v3/orders"}},
     "redirected to https://www.coffee.example.com"),
    ({"status": 403, "json": wp_error("woocommerce_rest_cannot_view", "Sorry, you cannot list resources.", 403)},
     "may read orders"),
])
def test_woocommerce_check_says_what_is_wrong_in_one_line(mock: responses.RequestsMock, answer: dict[str, Any],
                                                          expected: str) -> None:
    mock.add(responses.GET, ORDERS, **answer)
    with pytest.raises(ShopRefused, match=expected) as e:
        woo().check()
    assert "\n" not in str(e.value)


def test_woocommerce_busy_and_down_are_retried_later(mock: responses.RequestsMock) -> None:
    mock.get(ORDERS, status=503, headers={"Retry-After": "600"})
    with pytest.raises(ShopRetryLater) as busy:
        woo(max_wait=5).check()
    assert busy.value.retry_after == 600 and not isinstance(busy.value, ShopUnreachable)
    mock.replace(responses.GET, ORDERS, body=requests.ConnectionError(f"refused {ORDERS}?consumer_key={KEY}"))
    with pytest.raises(ShopUnreachable, match="no answer \\(ConnectionError\\)") as down:
        woo().check()
    no_secrets(down.value)


def test_woocommerce_waits_out_a_short_retry_after(mock: responses.RequestsMock) -> None:
    slept: list[float] = []
    mock.get(ORDERS, status=429, headers={"Retry-After": "2"})
    mock.get(ORDERS, json=[], headers={"X-WP-Total": "0"})
    woo(sleep=slept.append).check()
    assert slept == [2.0]


def order(order_id: int) -> dict[str, Any]:
    return {"id": order_id, "number": str(order_id), "status": "processing", "date_modified_gmt": "2026-11-01T10:00:00"}


def test_woocommerce_pages_through_the_window_with_its_dates_in_gmt(mock: responses.RequestsMock) -> None:
    for page, ids in ((1, [1, 2]), (2, [3])):
        mock.get(ORDERS, json=[order(i) for i in ids], headers={"X-WP-Total": "3", "X-WP-TotalPages": "2"},
                 match=[responses.matchers.query_param_matcher({
                     "modified_after": "2026-11-01T00:00:00", "modified_before": "2026-11-02T00:00:01",
                     "dates_are_gmt": "true", "per_page": "2", "orderby": "date", "order": "asc", "page": str(page)})])
    pages = list(woo(per_page=2).orders(SINCE, UNTIL))
    assert [[o.order_id for o in p.orders] for p in pages] == [["1", "2"], ["3"]]
    assert pages[0].total == 3
    assert pages[0].orders[0].deliveries[0].topic == "order.updated"
    assert pages[0].orders[0].modified_at == datetime(2026, 11, 1, 10, tzinfo=UTC)


def test_woocommerce_reads_the_window_again_when_an_order_left_it_while_paging(mock: responses.RequestsMock) -> None:
    mock.get(ORDERS, json=[order(1), order(2)], headers={"X-WP-Total": "4", "X-WP-TotalPages": "2"})
    mock.get(ORDERS, json=[order(4)], headers={"X-WP-Total": "3", "X-WP-TotalPages": "2"})  # order 3 moved up
    mock.get(ORDERS, json=[order(1), order(3)], headers={"X-WP-Total": "3", "X-WP-TotalPages": "2"})
    mock.get(ORDERS, json=[order(4)], headers={"X-WP-Total": "3", "X-WP-TotalPages": "2"})
    seen = [o.order_id for p in woo(per_page=2).orders(SINCE, UNTIL) for o in p.orders]
    assert set(seen) == {"1", "2", "3", "4"}


def test_a_woocommerce_page_of_garbage_stops_the_run(mock: responses.RequestsMock) -> None:
    mock.get(ORDERS, body="<?php fatal error", content_type="text/html")
    with pytest.raises(ShopRetryLater, match="orders page 1: the answer is not JSON"):
        list(woo().orders(SINCE, UNTIL))
    mock.replace(responses.GET, ORDERS, json={"orders": "nope"})
    with pytest.raises(ShopRetryLater, match="orders page 1 is not a list of orders"):
        list(woo().orders(SINCE, UNTIL))


def test_woocommerce_webhooks_are_created_and_updated_with_their_secret(mock: responses.RequestsMock) -> None:
    hook = {"id": 7, "name": "loyalty-bridge order.created", "topic": "order.created", "status": "disabled",
            "delivery_url": "https://bridge.example.com/webhooks/woocommerce/coffee"}
    mock.post(f"{WOO}/wp-json/wc/v3/webhooks", json={**hook, "status": "active"}, status=201)
    mock.put(f"{WOO}/wp-json/wc/v3/webhooks/7", json={**hook, "status": "active"})
    api = woo()
    created = api.create_subscription("order.created", hook["delivery_url"], "whsec")
    assert (created.id, created.status) == ("7", "active")
    assert json.loads(mock.calls[0].request.body)["secret"] == "whsec"
    api.update_subscription(created, hook["delivery_url"], "whsec2")
    assert json.loads(mock.calls[1].request.body) == {"delivery_url": hook["delivery_url"], "secret": "whsec2",
                                                      "status": "active"}


# --- Shopify ---------------------------------------------------------------------------------------

def cost(requested: float, available: float, rate: float = 50.0, actual: float | None = None) -> dict[str, Any]:
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": requested if actual is None else actual,
                     "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": available,
                                        "restoreRate": rate}}}


def shopify(**kwargs: Any) -> ShopifyApi:
    return ShopifyApi(SHOPIFY, TOKEN, **kwargs)


CHECK_OK = {"data": {"shop": {"name": "Coffee LT", "myshopifyDomain": "coffee-lt.myshopify.com"},
                     "currentAppInstallation": {"accessScopes": [{"handle": "read_orders"}]}},
            "extensions": cost(2, 998)}


def test_shopify_sends_the_token_and_checks_the_scope(mock: responses.RequestsMock) -> None:
    mock.post(GRAPHQL, json=CHECK_OK)
    info = shopify().check()
    assert info.name == "coffee-lt.myshopify.com" and "read_orders" in info.detail
    assert mock.calls[0].request.headers["X-Shopify-Access-Token"] == TOKEN
    scopes = {"data": {**CHECK_OK["data"], "currentAppInstallation": {"accessScopes": [{"handle": "read_products"}]}}}
    mock.replace(responses.POST, GRAPHQL, json=scopes)
    with pytest.raises(ShopRefused, match="lacks the read_orders scope"):
        shopify().check()


def test_shopify_check_skips_a_scope_without_a_handle(mock: responses.RequestsMock) -> None:
    scopes = [{"handle": "read_orders"}, {"description": "no handle"}, {"handle": None}]
    mock.post(GRAPHQL, json={"data": {**CHECK_OK["data"], "currentAppInstallation": {"accessScopes": scopes}}})
    assert shopify().check().detail.endswith("scopes read_orders")
    mock.replace(responses.POST, GRAPHQL, json={"data": {**CHECK_OK["data"], "currentAppInstallation": "nope"}})
    assert shopify().check().detail.endswith("scopes ?")  # not readable: no crash, the orders query will tell


@pytest.mark.parametrize(("status", "body", "expected"), [
    (401, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"},
     "shop_access_token\\) is wrong"),
    (404, {"errors": "Not Found"}, "shop_url should be https://<shop>.myshopify.com"),
    (402, {"errors": "Unavailable Shop"}, "frozen"),
])
def test_shopify_refusals_say_what_to_fix(mock: responses.RequestsMock, status: int, body: dict[str, Any],
                                          expected: str) -> None:
    mock.post(GRAPHQL, json=body, status=status)
    with pytest.raises(ShopRefused, match=expected) as e:
        shopify().check()
    no_secrets(e.value)


def test_shopify_check_of_a_site_that_is_not_shopify_is_refused(mock: responses.RequestsMock) -> None:
    mock.post(GRAPHQL, body="<html>shop</html>", content_type="text/html")
    with pytest.raises(ShopRefused, match="not a Shopify Admin API"):
        shopify().check()


def test_shopify_throttled_waits_for_the_bucket_then_asks_again(mock: responses.RequestsMock) -> None:
    slept: list[float] = []
    mock.post(GRAPHQL, json={"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                             "extensions": cost(302, 2, rate=100)})
    mock.post(GRAPHQL, json=CHECK_OK)
    shopify(sleep=slept.append).check()
    assert slept == [3.0]  # (302 - 2) / 100 points per second


def test_shopify_waits_before_a_query_until_the_bucket_holds_what_it_asks_for(mock: responses.RequestsMock) -> None:
    """Shopify starts a query only when its requested cost is in the bucket (it then draws the actual
    cost): the client waits for the requested one, so it is not throttled first every time."""
    slept: list[float] = []
    mock.post(GRAPHQL, json={**CHECK_OK, "extensions": cost(548, 500, rate=100, actual=86)})
    api = shopify(sleep=slept.append)
    api.check()
    api.check()
    assert slept == [pytest.approx(0.48, abs=0.01)]  # (548 - 500) / 100, not (86 - 500) / 100


def test_shopify_429_and_long_throttles_are_left_for_the_next_run(mock: responses.RequestsMock) -> None:
    slept: list[float] = []
    mock.post(GRAPHQL, status=429, headers={"Retry-After": "2.0"})
    mock.post(GRAPHQL, json=CHECK_OK)
    shopify(sleep=slept.append).check()
    assert slept == [2.0]
    mock.replace(responses.POST, GRAPHQL, json={"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                                                "extensions": cost(1000, 0, rate=10)})
    with pytest.raises(ShopRetryLater, match="throttled") as e:
        shopify(max_wait=5).check()
    assert e.value.retry_after == 100


def test_shopify_access_denied_is_refused(mock: responses.RequestsMock) -> None:
    mock.post(GRAPHQL, json={"errors": [{"message": "Access denied for orders field.",
                                         "extensions": {"code": "ACCESS_DENIED"}}], "data": None})
    with pytest.raises(ShopRefused, match="needs the read_orders scope"):
        list(shopify().orders(SINCE, UNTIL))


def test_shopify_lists_ids_then_reads_each_order_its_long_line_items_and_refunds(
        mock: responses.RequestsMock) -> None:
    """A page names the orders; each is read alone, its line items past the first page and each refund
    (with its own paged refund line items) in queries of their own, all under Shopify's cost limit."""
    def node(order_id: int, lines: range, more: bool, refunds: list[str]) -> dict[str, Any]:
        return {"id": f"gid://shopify/Order/{order_id}", "legacyResourceId": str(order_id), "number": 1001,
                "name": "#1001", "currencyCode": "EUR", "displayFinancialStatus": "PARTIALLY_REFUNDED",
                "updatedAt": "2026-11-01T10:00:00Z", "refunds": [{"id": r} for r in refunds],
                "lineItems": {"pageInfo": {"hasNextPage": more, "endCursor": "c1" if more else None},
                              "nodes": [{"id": f"gid://shopify/LineItem/{i}", "quantity": 1, "name": f"Bag {i}"}
                                        for i in lines]}}

    def refund_line(n: int) -> dict[str, Any]:
        return {"id": f"gid://shopify/RefundLineItem/{n}", "quantity": 1, "lineItem": {"id": f"gid://shopify/LineItem/{n}"}}

    bodies: list[dict[str, Any]] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        bodies.append(body)
        variables = body["variables"]
        if "BridgeOrderLines" in body["query"]:
            data: dict[str, Any] = {"order": {"lineItems": {"pageInfo": {"hasNextPage": False, "endCursor": None},
                                                            "nodes": [{"id": "gid://shopify/LineItem/101",
                                                                       "quantity": 1}]}}}
        elif "BridgeRefund" in body["query"]:
            page = [refund_line(1)] if variables["after"] is None else [refund_line(101)]
            data = {"refund": {"id": variables["id"], "legacyResourceId": "55", "createdAt": "2026-11-01T09:00:00Z",
                               "refundLineItems": {"pageInfo": {"hasNextPage": variables["after"] is None,
                                                                "endCursor": "r2"}, "nodes": page}}}
        elif "BridgeOrder(" in body["query"]:
            data = {"order": node(1, range(1, 21), True, ["gid://shopify/Refund/55"])
                    if variables["id"].endswith("/1") else node(2, range(1, 3), False, [])}
        elif variables["after"] is None:
            data = {"ordersCount": {"count": 2}, "orders": {"pageInfo": {"hasNextPage": True, "endCursor": "p2"},
                                                            "nodes": [{"id": "gid://shopify/Order/1"}]}}
        else:
            data = {"orders": {"pageInfo": {"hasNextPage": False, "endCursor": None},
                               "nodes": [{"id": "gid://shopify/Order/2"}]}}
        return 200, {}, json.dumps({"data": data, "extensions": cost(10, 900)})

    mock.add_callback(responses.POST, GRAPHQL, callback=answer)
    pages = list(shopify(page_size=1).orders(SINCE, UNTIL))
    assert [p.total for p in pages] == [2, 2]
    first = pages[0].orders[0]
    paid, refunded = first.deliveries
    assert first.order_id == "1" and len(paid.payload["line_items"]) == 21
    assert refunded.topic == "refunds/create" and refunded.payload["id"] == 55
    # The refund's line items (both pages) carry the order's own line items, found by id.
    assert [r["line_item"].get("name") for r in refunded.payload["refund_line_items"]] == ["Bag 1", None]
    assert [r["line_item"]["id"] for r in refunded.payload["refund_line_items"]] == [1, 101]
    assert pages[1].orders[0].order_id == "2"
    operations = [b["query"].split("(", 1)[0].split()[-1] for b in bodies]
    assert operations == ["BridgeOrders", "BridgeOrder", "BridgeOrderLines", "BridgeRefund", "BridgeRefund",
                          "BridgeOrders", "BridgeOrder"]
    assert bodies[0]["variables"]["query"] == "updated_at:>='2026-11-01T00:00:00Z' AND updated_at:<='2026-11-02T00:00:01Z'"
    assert bodies[0]["variables"]["withCount"] is True and bodies[5]["variables"]["withCount"] is False


def test_shopify_names_a_query_over_the_cost_limit_as_such(mock: responses.RequestsMock) -> None:
    mock.post(GRAPHQL, json={"errors": [{"message": "Query cost is 3803428, which exceeds the single query max cost "
                                                    "limit (1000).", "extensions": {"code": "MAX_COST_EXCEEDED"}}]})
    with pytest.raises(ShopRefused, match="BridgeOrders asks for more than Shopify's single-query cost limit"):
        list(shopify().orders(SINCE, UNTIL))


def test_shopify_garbage_and_outages(mock: responses.RequestsMock) -> None:
    mock.post(GRAPHQL, json={"data": {"orders": "nope"}})
    with pytest.raises(ShopRetryLater, match="orders page 1: unexpected shape"):
        list(shopify().orders(SINCE, UNTIL))
    mock.replace(responses.POST, GRAPHQL, status=502, body="Bad gateway")
    with pytest.raises(ShopRetryLater) as e:
        list(shopify().orders(SINCE, UNTIL))
    assert e.value.status == 502
    mock.replace(responses.POST, GRAPHQL, body=requests.Timeout())
    with pytest.raises(ShopUnreachable):
        list(shopify().orders(SINCE - timedelta(days=1), UNTIL))


def test_shopify_subscription_user_errors_are_refused(mock: responses.RequestsMock) -> None:
    mock.post(GRAPHQL, json={"data": {"webhookSubscriptionCreate": {"webhookSubscription": None, "userErrors": [
        {"field": ["webhookSubscription", "uri"], "message": "Address is invalid"}]}}})
    with pytest.raises(ShopRefused, match="create ORDERS_PAID: Address is invalid"):
        shopify().create_subscription("ORDERS_PAID", "ftp://x", "")
