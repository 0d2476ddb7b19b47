"""Shopify's GraphQL Admin API: the orders updated in a window, and the app's webhook subscriptions.

One ``POST /admin/api/<version>/graphql.json`` per call with ``X-Shopify-Access-Token`` (a custom
app's Admin API token; it needs ``read_orders``). Shopify limits each shop by a leaky bucket of
query cost: every answer says what is left (``extensions.cost.throttleStatus``), so the client waits
before a query the bucket cannot pay for yet, and a ``THROTTLED`` answer (or an HTTP 429 with
``Retry-After``) is waited out and sent again, up to ``max_wait`` seconds; beyond that the call
raises :class:`~workers.platforms.shop_api.ShopRetryLater` and the sync tries again next run.

Orders come back translated into the REST/webhook payloads (:mod:`.graphql`), paged by cursor on
``UPDATED_AT`` so an order changing while the run reads does not shift the pages. A page lists
each order's id and ``updatedAt``, and an order whose version was already read is not read again
(a point of the page instead of ~50). A backfill reads through a bulk operation instead
(:mod:`.bulk`): one query that Shopify runs in the background, no cost per order. The webhook
signature is the app's client secret, which no API call sets: ``secret`` is ignored here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack
from urllib.parse import urlsplit

import requests

from workers.loyalty.client import USER_AGENT, parse_retry_after
from workers.platforms.shop_api import (
    CallSite,
    Delivery,
    KnownVersions,
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
from workers.platforms.shopify import bulk
from workers.platforms.shopify import graphql as gql

PLATFORM = "shopify"
REQUIRED_SCOPE = "read_orders"
# Order ids per page (each order is then read alone: see graphql.py on query cost).
PAGE_SIZE = gql.ORDERS_FIRST
THROTTLE_RETRIES = 5
# The queries ask for fields of 2025-10 and later (Order.number, WebhookSubscription.uri) and are
# checked against the published 2026-04 schema; Shopify supports a version for a year.
DEFAULT_API_VERSION = "2026-04"
# Orders fed per page of a bulk result (the file is read whole first: see bulk.py).
BULK_PAGE = 250
# A window of more orders than this is read through a bulk operation even by the sync (after an
# outage, say): read alone, 250 orders it does not know cost ~14,000 points, over two minutes of
# a Standard shop's bucket; a bulk operation costs a few points and seconds.
BULK_FROM = 250
# Polling a bulk operation: the first look soon (small shops finish in seconds), then less often.
BULK_POLL_FIRST, BULK_POLL_MAX = 0.25, 5.0


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ShopifyApi:
    """One Shopify shop's Admin API (see :class:`workers.platforms.shop_api.ShopApi`)."""

    platform = PLATFORM

    def __init__(self, url: str, access_token: str, *, timeout: tuple[float, float] = (5.0, 30.0),
                 version: str = DEFAULT_API_VERSION, max_wait: float = 60.0, sleep: Callable[[float], Any] | None = None,
                 page_size: int = PAGE_SIZE, session: requests.Session | None = None,
                 bulk_max_wait: float = 4 * 3600.0, bulk_from: int = BULK_FROM) -> None:
        self.url = url.rstrip("/")
        self.endpoint = f"{self.url}/admin/api/{version}/graphql.json"
        self.path = urlsplit(self.endpoint).path
        self.version = version
        self.timeout = timeout
        self.max_wait = max_wait
        self.sleep = sleep or time.sleep
        self.page_size = page_size
        self.bulk_max_wait = bulk_max_wait
        self.bulk_from = bulk_from
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

    @staticmethod
    def _search(since: datetime, until: datetime) -> str:
        # Whole seconds: the upper bound rounds up, so an order changed in the run's last second is in.
        return f"updated_at:>='{_iso(since)}' AND updated_at:<='{_iso(until + timedelta(seconds=1))}'"

    def orders(self, since: datetime, until: datetime, *, known: KnownVersions | None = None,
               bulk: bool = False) -> Iterator[OrdersPage]:
        """Orders updated in [since, until], oldest first, each as the webhook payloads of its state.

        A page lists the orders' ids and versions (``updatedAt``); each order ``known`` does not
        name is then read whole (its line items, then each of its refunds), one query each, since
        Shopify refuses any query that asks for more than 1,000 points. ``bulk``, or a window of more
        than ``bulk_from`` orders: through a bulk operation instead (:meth:`_bulk_orders`).
        """
        if bulk:
            yield from self._bulk_orders(since, until, known)
            return
        search = self._search(since, until)
        after: str | None = None
        page = 1
        total: int | None = None
        while True:
            data = self._graphql("BridgeOrders", gql.ORDERS_QUERY, {"first": self.page_size, "after": after,
                                                                     "query": search, "withCount": page == 1})
            if page == 1 and isinstance(data.get("ordersCount"), dict):
                count = data["ordersCount"].get("count")
                total = count if isinstance(count, int) else None
                if total is not None and total > self.bulk_from:
                    yield from self._bulk_orders(since, until, known)
                    return
            connection = data.get("orders")
            if not isinstance(connection, dict) or not isinstance(connection.get("nodes"), list):
                raise ShopGarbled(f"orders page {page}: unexpected shape", method="POST", path=self.path)
            listed = {n["id"]: gql.updated_at(n) for n in gql.nodes(connection) if isinstance(n.get("id"), str)}
            unchanged = self._unchanged(listed, known)
            yield OrdersPage(orders=[self._order(gid) for gid in listed if gid not in unchanged], total=total,
                             unchanged=len(unchanged))
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return
            after, page = info["endCursor"], page + 1

    @staticmethod
    def _unchanged(listed: dict[str, datetime | None], known: KnownVersions | None) -> set[str]:
        """The gids of ``listed`` ({gid: updatedAt}) whose version ``known`` says was read already."""
        if known is None:
            return set()
        by_id = {str(gql.legacy_id(gid)): gid for gid in listed}
        return {by_id[order_id] for order_id in known({i: listed[g] for i, g in by_id.items()})}

    def _order(self, order_gid: str) -> ShopOrder:
        """One order, whole: its fields, every line item and every refund."""
        node = self._graphql("BridgeOrder", gql.ORDER_QUERY, {"id": order_gid}).get("order")
        if not isinstance(node, dict):
            raise ShopGarbled(f"order {order_gid}: not in the answer", method="POST", path=self.path)
        lines = node.get("lineItems")
        if isinstance(lines, dict) and (lines.get("pageInfo") or {}).get("hasNextPage"):
            node = {**node, "lineItems": {"nodes": [*gql.nodes(lines), *self._more_lines(node, lines)]}}
        return self._whole(node)

    def _whole(self, node: dict[str, Any]) -> ShopOrder:
        """An order node with all its line items, its refunds read whole, as webhook deliveries."""
        node = {**node, "refunds": [self._refund(r["id"]) for r in gql.nodes(node.get("refunds"))
                                    if isinstance(r.get("id"), str)]}
        order_id = gql.legacy_id(node.get("id"))
        return ShopOrder(order_id=str(order_id if order_id is not None else "?"), modified_at=gql.updated_at(node),
                         deliveries=[Delivery(topic=t, payload=p) for t, p in gql.deliveries(node)])

    # --- bulk operations ----------------------------------------------------------------------------

    def _bulk_orders(self, since: datetime, until: datetime, known: KnownVersions | None) -> Iterator[OrdersPage]:
        """The orders of the window through one bulk operation (see :mod:`.bulk`).

        While Shopify runs it, pages without orders say its status (and keep the caller's lock
        alive); then the file is read, and its orders are fed in pages, those ``known`` names left out.
        """
        search = self._search(since, until)
        count = self._graphql("BridgeOrdersCount", bulk.ORDERS_COUNT, {"query": search}).get("ordersCount")
        total = count.get("count") if isinstance(count, dict) and isinstance(count.get("count"), int) else None
        query = bulk.orders_query(search)
        orders: dict[str, list[bytes]] = {}
        for attempt in (1, 2):
            operation = yield from self._bulk_run(query, total)
            try:
                orders = self._bulk_file(operation)
                break
            except bulk.ExpiredFile as exc:
                if attempt == 2:
                    raise ShopRetryLater(f"the result of bulk operation {operation.id} cannot be downloaded "
                                         f"({exc}), twice", method="GET", path="(bulk result)") from None
                yield OrdersPage(orders=[], total=total, status=f"the result's address expired ({exc}): "
                                                               "running the bulk query again")
        gids = list(orders)
        for start in range(0, len(gids), BULK_PAGE):
            chunk = {gid: bulk.assemble(orders.pop(gid)) for gid in gids[start:start + BULK_PAGE]}
            unchanged = self._unchanged({gid: gql.updated_at(n) for gid, n in chunk.items()}, known)
            yield OrdersPage(orders=[self._whole(n) for gid, n in chunk.items() if gid not in unchanged], total=total,
                             unchanged=len(unchanged))

    def _bulk_run(self, query: str, total: int | None) -> Generator[OrdersPage, None, bulk.BulkOperation]:
        """Start the bulk query (waiting for the shop's slot) and poll it until it is done; returns it.

        Yields a page without orders after each poll, for progress and the caller's lock.
        """
        waited = 0.0
        delay = BULK_POLL_FIRST
        while True:
            data = self._graphql("BridgeBulkRun", bulk.BULK_RUN, {"query": query}).get("bulkOperationRunQuery")
            if not isinstance(data, dict):
                raise ShopGarbled("bulkOperationRunQuery: unexpected answer", method="POST", path=self.path)
            errors = [e for e in data.get("userErrors") or [] if isinstance(e, dict)]
            if not errors and isinstance(data.get("bulkOperation"), dict):
                operation = bulk.BulkOperation.from_node(data["bulkOperation"])
                break
            said = "; ".join(f"{e.get('code') or ''} {e.get('message')}".strip() for e in errors) or "no operation"
            if not {str(e.get("code")) for e in errors} & bulk.BUSY_CODES:
                raise ShopRefused(f"bulkOperationRunQuery refused: {said}", method="POST", path=self.path)
            in_the_way = self._bulk_in_the_way()
            if waited >= self.max_wait:
                raise ShopRetryLater(f"another bulk query holds the shop's slot ({in_the_way}); waited {waited:.0f} s "
                                     "(BRIDGE_SHOP_MAX_WAIT): try again once it is done", method="POST",
                                     path=self.path)
            yield OrdersPage(orders=[], total=total, status=f"waiting for {in_the_way} to finish")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, BULK_POLL_MAX)
        waited, delay = 0.0, BULK_POLL_FIRST
        while operation.status not in bulk.FINISHED:
            yield OrdersPage(orders=[], total=total, status=operation.line())
            if waited >= self.bulk_max_wait:
                raise ShopRetryLater(f"bulk operation {operation.id} is still {operation.status} after {waited:.0f} s",
                                     method="POST", path=self.path)
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, BULK_POLL_MAX)
            node = self._graphql("BridgeBulkOperation", bulk.BULK_OPERATION, {"id": operation.id}).get("bulkOperation")
            if not isinstance(node, dict):
                raise ShopGarbled(f"bulk operation {operation.id}: not in the answer", method="POST", path=self.path)
            operation = bulk.BulkOperation.from_node(node)
        yield OrdersPage(orders=[], total=total, status=operation.line())
        if operation.status == "FAILED" and operation.error_code == "ACCESS_DENIED":
            raise ShopRefused(f"bulk operation {operation.id} failed: ACCESS_DENIED (the app needs the "
                              f"{REQUIRED_SCOPE} scope)", method="POST", path=self.path)
        if operation.status != "COMPLETED":
            code = f" ({operation.error_code})" if operation.error_code else ""
            raise ShopRetryLater(f"bulk operation {operation.id} ended {operation.status}{code} after "
                                 f"{operation.root_object_count} orders; nothing of it was used", method="POST",
                                 path=self.path)
        return operation

    def _bulk_in_the_way(self) -> str:
        """Names the app's running bulk query (another app's cannot be seen)."""
        data = self._graphql("BridgeBulkRunning", bulk.BULK_RUNNING)
        running = [bulk.BulkOperation.from_node(n) for n in gql.nodes(data.get("bulkOperations"))]
        if not running:
            return "a bulk query this app cannot see (another app's?)"
        first = running[0]
        return (f"bulk operation {first.id} ({first.status} since {first.created_at or '?'}, "
                f"{first.object_count} objects so far)")

    def _bulk_file(self, operation: bulk.BulkOperation) -> dict[str, list[bytes]]:
        """A completed operation's file, its lines by order; downloads it once more when it arrives short."""
        if operation.url is None:
            if not operation.root_object_count:
                return {}  # nothing matched: Shopify gives no file
            raise bulk.ExpiredFile("the operation gives no address")
        for attempt in (1, 2):
            try:
                return bulk.group(bulk.read_lines(self._download(operation.url), operation.file_size))
            except bulk.PartialFile as exc:
                if attempt == 2:
                    raise ShopRetryLater(f"the result of bulk operation {operation.id} arrived incomplete twice "
                                         f"({exc})", method="GET", path="(bulk result)") from None
            except ValueError as exc:
                raise ShopGarbled(f"the result of bulk operation {operation.id} cannot be read ({exc})",
                                  method="GET", path="(bulk result)") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _download(self, url: str) -> Iterator[bytes]:
        """The file's bytes. Its address is signed: it gets no access token (it is not Shopify's API)."""
        try:
            with requests.get(url, stream=True, timeout=self.timeout, headers={"User-Agent": USER_AGENT},
                              allow_redirects=True) as response:
                if response.status_code in (400, 401, 403, 404, 410):
                    raise bulk.ExpiredFile(f"HTTP {response.status_code}")
                if not 200 <= response.status_code < 300:
                    raise ShopRetryLater(f"the bulk result's host answered {response.status_code}",
                                         status=response.status_code, method="GET", path="(bulk result)")
                yield from response.iter_content(1 << 16)
        except requests.RequestException as exc:
            # Cut mid-transfer (or never connected): what arrived is short of fileSize, or nothing.
            raise bulk.PartialFile(f"the transfer broke off ({type(exc).__name__})") from None

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
