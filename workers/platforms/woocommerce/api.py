"""WooCommerce's REST API v3: the orders modified in a window, and the store's webhooks.

Requests go through ``woocommerce``, WooCommerce's own client: HTTP Basic with the consumer key and
secret over HTTPS, OAuth 1.0a (one-legged, signed query) over plain HTTP. Some servers strip the
Authorization header; WooCommerce then answers 401 as if no key came, and this client falls back
once to the keys as query parameters (WooCommerce's documented alternative) and keeps using them.

WooCommerce servers are often small shared hosts: a client makes one request at a time, and the
sync takes a per-store lock across processes (:mod:`workers.shop_sync`). Each order of the API is
the same object the ``order.*`` webhooks deliver, so it is passed on unchanged as an
``order.updated`` payload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack
from urllib.parse import urlsplit

import requests
from woocommerce import API

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
from workers.platforms.woocommerce.webhooks import modified_at

PLATFORM = "woocommerce"
API_VERSION = "wc/v3"
PER_PAGE = 100  # the REST API's maximum
# The topic an order read from the API is fed as: the whole order, like every order.* delivery.
ORDER_TOPIC = "order.updated"
# The total changed while paging (an order moved out of the window): read the window once more.
MAX_PASSES = 2
# Busy answers retried within one call, when the shop says how long to wait.
BUSY_RETRIES = 3


def _iso(moment: datetime) -> str:
    """WooCommerce's date parameters: ISO 8601 without a zone (``dates_are_gmt`` says UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _error_text(response: requests.Response) -> tuple[str, str]:
    """(code, message) of a WordPress REST error answer, or ('', '') when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if isinstance(body, dict):
        return str(body.get("code") or ""), str(body.get("message") or "")
    return "", ""


class WooCommerceApi:
    """One WooCommerce shop's REST API v3 (see :class:`workers.platforms.shop_api.ShopApi`)."""

    platform = PLATFORM

    def __init__(self, url: str, consumer_key: str, consumer_secret: str, *,
                 timeout: tuple[float, float] = (5.0, 30.0), max_wait: float = 60.0,
                 sleep: Callable[[float], Any] | None = None, per_page: int = PER_PAGE) -> None:
        self.url = url.rstrip("/")
        self._keys = (consumer_key, consumer_secret)
        self.timeout = timeout
        self.max_wait = max_wait
        self.sleep = sleep or time.sleep
        self.per_page = per_page
        self.https = self.url.startswith("https://")
        self.query_string_auth = False
        self._api = self._client()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WooCommerceApi({self.url!r})"

    def _client(self) -> API:
        return API(url=self.url, consumer_key=self._keys[0], consumer_secret=self._keys[1], version=API_VERSION,
                   timeout=self.timeout, query_string_auth=self.query_string_auth, user_agent=USER_AGENT)

    # --- plumbing -----------------------------------------------------------------------------------

    def _request(self, method: str, endpoint: str, params: dict[str, Any] | None = None,
                 data: dict[str, Any] | None = None) -> requests.Response:
        """One call, at most one at a time; raises a ShopApiError unless the answer is a 2xx."""
        path = urlsplit(f"{self.url}/wp-json/{API_VERSION}/{endpoint}").path
        where: CallSite = {"method": method, "path": path}
        with self._lock:
            for attempt in range(BUSY_RETRIES + 1):
                try:
                    if data is None:
                        response = getattr(self._api, method.lower())(endpoint, params=dict(params or {}),
                                                                      allow_redirects=False)
                    else:
                        response = getattr(self._api, method.lower())(endpoint, data, params=dict(params or {}),
                                                                      allow_redirects=False)
                except requests.RequestException as exc:
                    # Only the class name: some requests errors quote the URL, and keys may be in it.
                    raise ShopUnreachable(f"no answer ({type(exc).__name__})", **where) from None
                status = response.status_code
                if status == 401 and self.https and not self.query_string_auth and attempt == 0:
                    code, _ = _error_text(response)
                    if code != "woocommerce_rest_authentication_error":
                        # No key arrived at all: the server stripped the Authorization header.
                        self.query_string_auth = True
                        self._api = self._client()
                        continue
                if status in (429, 503) and attempt < BUSY_RETRIES:
                    wait = parse_retry_after(response.headers.get("Retry-After"))
                    if wait is not None and wait <= self.max_wait:
                        self.sleep(wait)
                        continue
                if 200 <= status < 300:
                    return response
                raise self._error(response, **where)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: requests.Response, **where: Unpack[CallSite]) -> ShopApiError:
        status = response.status_code
        code, message = _error_text(response)
        said = f"{code}: {message}" if code else (message or response.reason or "error")
        if status in (429, 408) or status >= 500:
            return ShopRetryLater(said, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After")),
                                  **where)
        if 300 <= status < 400:
            return ShopRefused(f"redirected to {response.headers.get('Location', '?')}: use that address as "
                               "shop_url", status=status, **where)
        if status in (401, 403):
            return ShopRefused(f"{said} (check shop_consumer_key/shop_consumer_secret and that the key may read "
                               "orders and write webhooks)", status=status, **where)
        if status == 404:
            if code == "rest_no_route":
                return ShopRefused("no WooCommerce REST API v3 here (rest_no_route): is WooCommerce active, and "
                                   "shop_url the site's root address?", status=status, **where)
            return ShopRefused(f"not found ({said}): is shop_url the WordPress site's root address?",
                               status=status, **where)
        return ShopRefused(said, status=status, **where)

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        """The answer's JSON; an answer that is not JSON is garbage this run cannot use."""
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        try:
            return response.json()
        except ValueError:
            raise ShopGarbled(f"{what}: the answer is not JSON ({kind}, {len(response.content)} bytes)",
                                 status=response.status_code, method=response.request.method or "",
                                 path=urlsplit(response.request.url or "").path) from None

    @staticmethod
    def _int_header(response: requests.Response, name: str) -> int | None:
        try:
            return int(response.headers[name])
        except (KeyError, ValueError):
            return None

    # --- the ShopApi shape ------------------------------------------------------------------------

    def check(self) -> ShopInfo:
        """``GET orders?per_page=1``: the URL, the keys and their read access in one call."""
        response = self._request("GET", "orders", {"per_page": 1})
        try:
            body = self._json(response, "orders")
        except ShopGarbled as exc:
            raise ShopRefused(f"not a WooCommerce site ({exc.message})", status=exc.status, method=exc.method,
                              path=exc.path) from None
        if not isinstance(body, list):
            raise ShopRefused("not a WooCommerce site (the orders endpoint did not answer a list)",
                              status=response.status_code, method="GET", path=urlsplit(response.url).path)
        total = self._int_header(response, "X-WP-Total")
        via = " (keys as query parameters: the server strips the Authorization header)" if self.query_string_auth \
            else ""
        return ShopInfo(platform=PLATFORM, name=urlsplit(self.url).netloc,
                        detail=f"WooCommerce REST API v3, orders: {total if total is not None else '?'}{via}")

    def orders(self, since: datetime, until: datetime, *, known: KnownVersions | None = None,
               bulk: bool = False) -> Iterator[OrdersPage]:
        """Orders modified in [since, until], oldest first, 100 a page, each as an ``order.updated`` payload.

        A page lists whole orders already, so ``known`` only keeps the unchanged ones from being fed
        (and re-queued) again; ``bulk`` changes nothing (WooCommerce has no bulk read).
        """
        # WooCommerce compares whole seconds and `modified_before` is exclusive: one second more keeps
        # an order changed in the run's last second (the next window overlaps anyway).
        params: dict[str, Any] = {"modified_after": _iso(since), "modified_before": _iso(until + timedelta(seconds=1)),
                                  "dates_are_gmt": "true", "per_page": self.per_page, "orderby": "date",
                                  "order": "asc"}
        for _ in range(MAX_PASSES):
            first_total: int | None = None
            total: int | None = None
            page = 1
            while True:
                response = self._request("GET", "orders", {**params, "page": page})
                body = self._json(response, f"orders page {page}")
                if not isinstance(body, list) or not all(isinstance(o, dict) for o in body):
                    raise ShopGarbled(f"orders page {page} is not a list of orders", status=response.status_code,
                                         method="GET", path=urlsplit(response.url).path)
                total = self._int_header(response, "X-WP-Total")
                first_total = total if page == 1 else first_total
                orders = [ShopOrder(order_id=str(o.get("id", "?")), modified_at=modified_at(o),
                                    deliveries=[Delivery(topic=ORDER_TOPIC, payload=o)]) for o in body]
                unchanged = known({o.order_id: o.modified_at for o in orders}) if known else set()
                yield OrdersPage(total=first_total, unchanged=len(unchanged),
                                 orders=[o for o in orders if o.order_id not in unchanged])
                pages = self._int_header(response, "X-WP-TotalPages")
                if not body or (pages is not None and page >= pages) or (pages is None and len(body) < self.per_page):
                    break
                page += 1
            # Offset paging skips an order when one before it leaves the window meanwhile: the
            # total says so, and one more pass finds it (what was already queued is a duplicate).
            if total == first_total:
                return

    def subscriptions(self) -> list[Subscription]:
        """Every webhook of the shop (``GET webhooks``, all pages)."""
        found: list[Subscription] = []
        page = 1
        while True:
            response = self._request("GET", "webhooks", {"per_page": PER_PAGE, "page": page})
            body = self._json(response, "webhooks")
            if not isinstance(body, list):
                raise ShopGarbled("webhooks: the answer is not a list", status=response.status_code,
                                     method="GET", path=urlsplit(response.url).path)
            found += [self._subscription(w) for w in body if isinstance(w, dict)]
            pages = self._int_header(response, "X-WP-TotalPages")
            if not body or pages is None or page >= pages:
                return found
            page += 1

    def create_subscription(self, topic: str, url: str, secret: str) -> Subscription:
        """``POST webhooks``: an active webhook of ``topic`` to ``url``, signed with ``secret``."""
        body = {"name": f"loyalty-bridge {topic}", "topic": topic, "delivery_url": url, "secret": secret,
                "status": "active"}
        return self._subscription(self._json(self._request("POST", "webhooks", data=body), "webhook"))

    def update_subscription(self, subscription: Subscription, url: str, secret: str) -> Subscription:
        """``PUT webhooks/<id>``: the URL, the secret, and active again (WooCommerce's way to re-enable)."""
        body = {"delivery_url": url, "secret": secret, "status": "active"}
        response = self._request("PUT", f"webhooks/{subscription.id}", data=body)
        return self._subscription(self._json(response, "webhook"))

    @staticmethod
    def _subscription(raw: Any) -> Subscription:
        if not isinstance(raw, dict) or "id" not in raw:
            raise ShopGarbled("a webhook in the answer has no id")
        status = raw.get("status")
        return Subscription(id=str(raw["id"]), topic=str(raw.get("topic", "")), url=str(raw.get("delivery_url", "")),
                            status=status if status in ("active", "paused", "disabled") else "disabled",
                            name=str(raw.get("name", "")))
