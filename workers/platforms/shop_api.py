"""The shops' own APIs, as the bridge uses them: one shape for every platform, one error hierarchy.

Each platform package has an ``api.py`` beside its ``webhooks.py`` with a client of this shape
(:class:`ShopApi`): check the credentials with one cheap call, list the orders modified in a window
*as the payloads its webhooks would carry* (so they take exactly the webhooks' path through the
adapter, the queue and the ledger), and list, create and update webhook subscriptions.
:func:`workers.platforms.shop_api_for` builds a store's client; this module holds only what the
clients share, so it imports none of them.

Errors are sorted by what the caller does next, like :mod:`workers.loyalty.errors`:

- :class:`ShopRetryLater` — the shop is busy or answered something unreadable (429, 5xx, cost
  bucket empty; :class:`ShopGarbled` for a page of garbage): this run stops, the next one tries again;
- :class:`ShopUnreachable` — no answer at all (DNS, refused connection, timeout, TLS); also retried;
- :class:`ShopRefused` — the shop said no in a way retrying cannot fix (401, 403, a missing scope,
  a URL that is not a WooCommerce or Shopify API): a person must fix the stores file or the keys.

Messages carry the method, the path (never the query: WooCommerce keys may travel there), the
status and the shop's own words; never a credential.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal, Protocol, TypedDict

from pydantic import BaseModel, ConfigDict, Field

SubscriptionStatus = Literal["active", "paused", "disabled"]


class CallSite(TypedDict):
    """The call an error is about, as keyword arguments of every error here."""

    method: str
    path: str


class ShopApiError(Exception):
    """A call to a shop's API did not succeed. ``status`` is None when no answer came."""

    kind = "error"

    def __init__(self, message: str, *, status: int | None = None, method: str = "", path: str = "") -> None:
        self.message, self.status, self.method, self.path = message, status, method, path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path} -> " if self.method else ""
        status = f"{self.status}: " if self.status is not None else ""
        return f"{where}{status}{self.message}"


class ShopRetryLater(ShopApiError):
    """Busy, throttled, or an answer nobody can read; ``retry_after`` when the shop said how long."""

    kind = "retry_later"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class ShopGarbled(ShopRetryLater):
    """An answer nobody can read (not JSON, not the expected shape): this run stops, the next reads again."""

    kind = "garbled"


class ShopUnreachable(ShopRetryLater):
    """No answer: the shop (or the network to it) is down."""

    kind = "unreachable"


class ShopRefused(ShopApiError):
    """The shop refused, or is not the API the store says: fix the configuration."""

    kind = "refused"


class ShopInfo(BaseModel):
    """What one cheap call says about a shop, for ``bridge check``."""

    platform: str
    name: str
    detail: str = ""


class Delivery(BaseModel):
    """One payload the shop's webhooks would have delivered, with its topic."""

    topic: str
    payload: dict[str, Any]


class ShopOrder(BaseModel):
    """An order read from the API, as the webhook deliveries that describe its current state."""

    order_id: str
    modified_at: datetime | None = None
    deliveries: list[Delivery] = Field(default_factory=list)


class OrdersPage(BaseModel):
    """One page of orders; ``total`` (orders in the whole window) when the API says.

    ``unchanged`` counts the orders of the page left out because their version was already read
    (see :data:`KnownVersions`); ``status`` says what a long read is doing meanwhile (a page with no
    orders while Shopify runs a bulk operation), for progress.
    """

    orders: list[ShopOrder]
    total: int | None = None
    unchanged: int = 0
    status: str | None = None


# Given {order id: modified at} of the orders a page lists, the ids whose version the bridge
# already read and fed in: the client leaves those out instead of reading them whole.
KnownVersions = Callable[[dict[str, datetime | None]], set[str]]


class Subscription(BaseModel):
    """One webhook subscription at the shop, in the platform's own topic names."""

    model_config = ConfigDict(frozen=True)

    id: str
    topic: str
    url: str
    status: SubscriptionStatus = "active"
    name: str = ""


class ShopApi(Protocol):
    """What every platform's ``api.py`` client provides."""

    platform: str

    def check(self) -> ShopInfo:
        """One cheap call that proves the URL, the credentials and the read access to orders."""
        ...

    def orders(self, since: datetime, until: datetime, *, known: KnownVersions | None = None,
               bulk: bool = False) -> Iterator[OrdersPage]:
        """The orders modified in [since, until], page after page, as webhook payloads, but for those
        ``known`` says were read at this version already; ``bulk``: a long read (a backfill), done the
        platform's way for large reads where it has one."""
        ...

    def subscriptions(self) -> list[Subscription]:
        """Every webhook subscription of the shop (the bridge's and others')."""
        ...

    def create_subscription(self, topic: str, url: str, secret: str) -> Subscription:
        """Subscribe ``url`` to ``topic`` (active)."""
        ...

    def update_subscription(self, subscription: Subscription, url: str, secret: str) -> Subscription:
        """Point an existing subscription at ``url`` with ``secret`` and make it active."""
        ...
