"""Shopify's GraphQL Admin API: the orders updated in a window, and the app's webhook subscriptions.

One ``POST /admin/api/<version>/graphql.json`` per call with ``X-Shopify-Access-Token`` (a custom
app's Admin API token; it needs ``read_orders``). Shopify limits each shop by a leaky bucket of
query cost: every answer says what is left (``extensions.cost.throttleStatus``), so the client waits
before a query the bucket cannot pay for yet, and a ``THROTTLED`` answer (or an HTTP 429 with
``Retry-After``) is waited out and sent again, up to ``max_wait`` seconds; beyond that the call
raises :class:`~workers.platforms.shop_api.ShopRetryLater` and the sync tries again next run.

Orders come back translated into the REST/webhook payloads (:mod:`.graphql`), paged by cursor on
``UPDATED_AT`` so an order changing while the run reads does not shift the pages. The webhook
signature is the app's client secret, which no API call sets: ``secret`` is ignored here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack
from urllib.parse import urlsplit

import requests

from workers.loyalty.client import USER_AGENT, parse_retry_after
from workers.platforms.shop_api import (
    CallSite,
    Delivery,
    OrdersPage,
    ShopApiError,
    ShopGarbled,
    ShopInfo,
    ShopOrder,
    ShopRefused,
    ShopRetryLater,
    ShopUnreachable,
    Subscription,
)
from workers.platforms.shopify import graphql as gql

PLATFORM = "shopify"
REQUIRED_SCOPE = "read_orders"
# Order ids per page (each order is then read alone: see graphql.py on query cost).
PAGE_SIZE = gql.ORDERS_FIRST
THROTTLE_RETRIES = 5
# The queries ask for fields of 2025-10 and later (Order.number, WebhookSubscription.uri) and are
# checked against the published 2026-04 schema; Shopify supports a version for a year.
DEFAULT_API_VERSION = "2026-04"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ShopifyApi:
    """One Shopify shop's Admin API (see :class:`workers.platforms.shop_api.ShopApi`)."""

    platform = PLATFORM

    def __init__(self, url: str, access_token: str, *, timeout: tuple[float, float] = (5.0, 30.0),
                 version: str = DEFAULT_API_VERSION, max_wait: float = 60.0, sleep: Callable[[float], Any] | None = None,
                 page_size: int = PAGE_SIZE, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/admin/api/{version}/graphql.json"
        self.path = urlsplit(self.endpoint).path
        self.version = version
        self.timeout = timeout
        self.max_wait = max_wait
        self.sleep = sleep or time.sleep
        self.page_size = page_size
        self.session = session or requests.Session()
        self._headers = {"X-Shopify-Access-Token": access_token, "Content-Type": "application/json",
                         "Accept": "application/json", "User-Agent": USER_AGENT}
        # The cost bucket as the last answer described it: (available, maximum, restore rate, when).
        self._bucket: tuple[float, float, float, float] | None = None
        self._costs: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"ShopifyApi({self.url!r})"

    # --- plumbing -----------------------------------------------------------------------------------

    def _wait_for_bucket(self, operation: str) -> None:
        """Sleep until the bucket holds what this operation asked for last time (no 'THROTTLED' round trip)."""
        cost = self._costs.get(operation)
        if self._bucket is None or cost is None:
            return
        available, maximum, rate, at = self._bucket
        now_available = min(maximum, available + rate * (time.monotonic() - at))
        if now_available < cost and rate > 0:
            self.sleep(min((cost - now_available) / rate, self.max_wait))

    def _note_cost(self, operation: str, extensions: Any) -> tuple[float, float]:
        """Remember the bucket; returns (requested cost, seconds until the bucket could pay it)."""
        cost = extensions.get("cost") if isinstance(extensions, dict) else None
        if not isinstance(cost, dict):
            return 0.0, 0.0
        status = cost.get("throttleStatus") or {}
        try:
            requested = float(cost.get("requestedQueryCost") or 0)
            available = float(status.get("currentlyAvailable", 0))
            rate = float(status.get("restoreRate", 0)) or 1.0
            self._bucket = (available, float(status.get("maximumAvailable", available)), rate, time.monotonic())
        except (TypeError, ValueError):
            return 0.0, 0.0
        # What must be in the bucket for the query to start is its requested cost (it then draws
        # only its actual cost), so that is what the next call of this operation waits for.
        if requested:
            self._costs[operation] = requested
        return requested, max(0.0, (requested - available) / rate)

    def _graphql(self, operation: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of one query or mutation; raises a ShopApiError when there is none to use."""
        where: CallSite = {"method": "POST", "path": self.path}
        waited = False
        for attempt in range(THROTTLE_RETRIES + 1):
            if not waited:  # after waiting out a throttle, the bucket has refilled already
                self._wait_for_bucket(operation)
            waited = False
            try:
                response = self.session.post(self.endpoint, json={"query": query, "variables": variables or {}},
                                             headers=self._headers, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise ShopUnreachable(f"no answer ({type(exc).__name__})", **where) from None
            status = response.status_code
            if status == 429:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                wait = 1.0 if wait is None else wait
                if wait <= self.max_wait and attempt < THROTTLE_RETRIES:
                    self.sleep(wait)
                    waited = True
                    continue
                raise ShopRetryLater("too many requests", status=429, retry_after=wait, **where)
            if not 200 <= status < 300:
                raise self._error(response, **where)
            try:
                body = response.json()
            except ValueError:
                kind = response.headers.get("Content-Type", "no content type").split(";")[0]
                raise ShopGarbled(f"{operation}: the answer is not JSON ({kind}, {len(response.content)} bytes)",
                                     status=status, **where) from None
            if not isinstance(body, dict):
                raise ShopGarbled(f"{operation}: the answer is not a GraphQL response", status=status, **where)
            _, wait = self._note_cost(operation, body.get("extensions"))
            errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
            codes = {str((e.get("extensions") or {}).get("code", "")) for e in errors}
            if "THROTTLED" in codes:
                if wait <= self.max_wait and attempt < THROTTLE_RETRIES:
                    self.sleep(max(wait, 0.1))
                    waited = True
                    continue
                raise ShopRetryLater("throttled (the query cost bucket is empty)", status=status, retry_after=wait,
                                     **where)
            messages = "; ".join(str(e.get("message", "")) for e in errors)
            if "ACCESS_DENIED" in codes:
                raise ShopRefused(f"access denied ({messages}): the app needs the {REQUIRED_SCOPE} scope",
                                  status=status, **where)
            if "MAX_COST_EXCEEDED" in codes:  # a bug of ours, not of the shop: say so, not "check the version"
                raise ShopRefused(f"{operation} asks for more than Shopify's single-query cost limit ({messages})",
                                  status=status, **where)
            data = body.get("data")
            if errors and not isinstance(data, dict):
                # The query itself was refused: this API version does not know a field the bridge asks for.
                raise ShopRefused(f"{operation} refused ({messages}); check BRIDGE_SHOPIFY_API_VERSION "
                                  f"({self.version})", status=status, **where)
            if not isinstance(data, dict):
                raise ShopGarbled(f"{operation}: the answer has no data", status=status, **where)
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _error(response: requests.Response, **where: Unpack[CallSite]) -> ShopApiError:
        status = response.status_code
        try:
            body = response.json()
            said = str(body.get("errors") or body.get("error") or "") if isinstance(body, dict) else ""
        except ValueError:
            said = ""
        said = said or response.reason or "error"
        if status >= 500 or status == 408:
            return ShopRetryLater(said, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After")),
                                  **where)
        if 300 <= status < 400:
            return ShopRefused(f"redirected to {response.headers.get('Location', '?')}: shop_url should be "
                               "https://<shop>.myshopify.com", status=status, **where)
        hints = {401: "the access token (shop_access_token) is wrong or revoked",
                 402: "the shop is frozen (its bill is unpaid)",
                 403: f"the app may not do this (it needs {REQUIRED_SCOPE} and webhook access)",
                 404: "no Shopify Admin API here: shop_url should be https://<shop>.myshopify.com",
                 423: "the shop is locked"}
        return ShopRefused(f"{said} ({hints[status]})" if status in hints else said, status=status, **where)

    # --- the ShopApi shape ------------------------------------------------------------------------

    def check(self) -> ShopInfo:
        """The shop's name and the app's scopes, in one query; a missing ``read_orders`` is refused."""
        try:
            data = self._graphql("BridgeCheck", gql.CHECK_QUERY)
        except ShopGarbled as exc:
            raise ShopRefused(f"not a Shopify Admin API ({exc.message})", status=exc.status, method=exc.method,
                              path=exc.path) from None
        shop = data.get("shop")
        shop = shop if isinstance(shop, dict) else {}
        installation = data.get("currentAppInstallation")
        installation = installation if isinstance(installation, dict) else {}
        handles = (s.get("handle") for s in installation.get("accessScopes") or [] if isinstance(s, dict))
        scopes = [h for h in handles if isinstance(h, str)]  # a scope without a handle names nothing
        if installation and REQUIRED_SCOPE not in scopes:
            raise ShopRefused(f"the app lacks the {REQUIRED_SCOPE} scope (it has: {', '.join(scopes) or 'none'})",
                              method="POST", path=self.path)
        return ShopInfo(platform=PLATFORM, name=str(shop.get("myshopifyDomain") or shop.get("name") or "?"),
                        detail=f"Shopify Admin API {self.version}, shop {shop.get('name', '?')!r}, "
                               f"scopes {', '.join(scopes) or '?'}")

    def orders(self, since: datetime, until: datetime) -> Iterator[OrdersPage]:
        """Orders updated in [since, until], oldest first, each as the webhook payloads of its state.

        A page lists the orders' ids; each order is then read whole (its line items, then each of its
        refunds), one query each, since Shopify refuses any query that asks for more than 1,000 points.
        """
        # Whole seconds: the upper bound rounds up, so an order changed in the run's last second is in.
        search = f"updated_at:>='{_iso(since)}' AND updated_at:<='{_iso(until + timedelta(seconds=1))}'"
        after: str | None = None
        page = 1
        total: int | None = None
        while True:
            data = self._graphql("BridgeOrders", gql.ORDERS_QUERY, {"first": self.page_size, "after": after,
                                                                     "query": search, "withCount": page == 1})
            if page == 1 and isinstance(data.get("ordersCount"), dict):
                count = data["ordersCount"].get("count")
                total = count if isinstance(count, int) else None
            connection = data.get("orders")
            if not isinstance(connection, dict) or not isinstance(connection.get("nodes"), list):
                raise ShopGarbled(f"orders page {page}: unexpected shape", method="POST", path=self.path)
            ids = [n["id"] for n in gql.nodes(connection) if isinstance(n.get("id"), str)]
            yield OrdersPage(orders=[self._order(order_id) for order_id in ids], total=total)
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return
            after, page = info["endCursor"], page + 1

    def _order(self, order_gid: str) -> ShopOrder:
        """One order, whole: its fields, every line item and every refund."""
        node = self._graphql("BridgeOrder", gql.ORDER_QUERY, {"id": order_gid}).get("order")
        if not isinstance(node, dict):
            raise ShopGarbled(f"order {order_gid}: not in the answer", method="POST", path=self.path)
        lines = node.get("lineItems")
        if isinstance(lines, dict) and (lines.get("pageInfo") or {}).get("hasNextPage"):
            node = {**node, "lineItems": {"nodes": [*gql.nodes(lines), *self._more_lines(node, lines)]}}
        node = {**node, "refunds": [self._refund(r["id"]) for r in gql.nodes(node.get("refunds"))
                                    if isinstance(r.get("id"), str)]}
        order_id = gql.legacy_id(node.get("id"))
        return ShopOrder(order_id=str(order_id if order_id is not None else "?"), modified_at=gql.updated_at(node),
                         deliveries=[Delivery(topic=t, payload=p) for t, p in gql.deliveries(node)])

    def _refund(self, refund_gid: str) -> dict[str, Any]:
        """One refund, with all its refund line items (paged)."""
        refund: dict[str, Any] | None = None
        items: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            node = self._graphql("BridgeRefund", gql.REFUND_QUERY, {"id": refund_gid, "after": after}).get("refund")
            connection = node.get("refundLineItems") if isinstance(node, dict) else None
            if not isinstance(node, dict) or not isinstance(connection, dict):
                raise ShopGarbled(f"refund {refund_gid}: unexpected shape", method="POST", path=self.path)
            refund = refund or node
            items += gql.nodes(connection)
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return {**refund, "refundLineItems": {"nodes": items}}
            after = info["endCursor"]

    def _more_lines(self, node: dict[str, Any], lines: dict[str, Any]) -> list[dict[str, Any]]:
        """The line items past the first page of an order with very many."""
        more: list[dict[str, Any]] = []
        after = (lines.get("pageInfo") or {}).get("endCursor")
        while after:
            data = self._graphql("BridgeOrderLines", gql.ORDER_LINES_QUERY, {"id": node.get("id"), "after": after})
            connection = (data.get("order") or {}).get("lineItems")
            if not isinstance(connection, dict):
                raise ShopGarbled("order line items: unexpected shape", method="POST", path=self.path)
            more += gql.nodes(connection)
            info = connection.get("pageInfo") or {}
            after = info.get("endCursor") if info.get("hasNextPage") else None
        return more

    def subscriptions(self) -> list[Subscription]:
        """The app's webhook subscriptions (Shopify shows an app only its own)."""
        found: list[Subscription] = []
        after: str | None = None
        while True:
            data = self._graphql("BridgeWebhooks", gql.SUBSCRIPTIONS_QUERY, {"after": after})
            connection = data.get("webhookSubscriptions")
            if not isinstance(connection, dict):
                raise ShopGarbled("webhook subscriptions: unexpected shape", method="POST", path=self.path)
            found += [self._subscription(n) for n in gql.nodes(connection)]
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return found
            after = info["endCursor"]

    def create_subscription(self, topic: str, url: str, secret: str) -> Subscription:
        """``webhookSubscriptionCreate`` (JSON format) of ``topic`` to ``url``."""
        data = self._graphql("BridgeWebhookCreate", gql.SUBSCRIPTION_CREATE, {"topic": topic, "url": url})
        return self._mutation_result(data.get("webhookSubscriptionCreate"), f"create {topic}")

    def update_subscription(self, subscription: Subscription, url: str, secret: str) -> Subscription:
        """``webhookSubscriptionUpdate``: point the subscription at ``url``."""
        data = self._graphql("BridgeWebhookUpdate", gql.SUBSCRIPTION_UPDATE, {"id": subscription.id, "url": url})
        return self._mutation_result(data.get("webhookSubscriptionUpdate"), f"update {subscription.topic}")

    def _mutation_result(self, result: Any, what: str) -> Subscription:
        if not isinstance(result, dict):
            raise ShopGarbled(f"{what}: unexpected answer", method="POST", path=self.path)
        errors = [e for e in result.get("userErrors") or [] if isinstance(e, dict)]
        if errors:
            raise ShopRefused(f"{what}: " + "; ".join(str(e.get("message")) for e in errors), method="POST",
                              path=self.path)
        return self._subscription(result.get("webhookSubscription"))

    @staticmethod
    def _subscription(node: Any) -> Subscription:
        if not isinstance(node, dict) or not node.get("id"):
            raise ShopGarbled("a webhook subscription in the answer has no id")
        return Subscription(id=str(node["id"]), topic=str(node.get("topic", "")), url=str(node.get("uri") or ""),
                            status="active")
