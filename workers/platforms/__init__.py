"""One adapter per shop platform, all with the same shape (see :class:`Adapter`).

Each platform is a package: ``webhooks.py`` is its adapter (the same names for every platform), ``api.py``
the client of the shop's own API (:func:`shop_api_for` picks it; the shape they share is in
:mod:`workers.platforms.shop_api`).
Adding a platform means adding one package here, and a fixture folder under ``tests/fixtures/<platform>/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from config.stores import StoreConfig
from workers.events import Event, Ignored
from workers.orders import Order, Refund
from workers.platforms.shopify import webhooks as shopify
from workers.platforms.woocommerce import webhooks as woocommerce

if TYPE_CHECKING:
    from config.settings import Settings
    from workers.platforms.shop_api import ShopApi


class Adapter(Protocol):
    """What every platform module provides."""

    PLATFORM: str
    SIGNATURE_HEADER: str
    TOPIC_HEADER: str
    # Names one delivery (logged and kept with the job), or "" when the platform has none.
    DELIVERY_HEADER: str
    # Whether some of its events name the order only by the platform's id (a Shopify refund): then
    # the bridge keeps an index from order id to reference for as long as the ledger.
    NAMES_ORDERS_BY_ID: bool

    def is_ping(self, body: bytes) -> bool: ...

    def classify(self, topic: str, body: bytes, store: StoreConfig) -> list[Event] | Ignored: ...

    def map_order(self, payload: Mapping[str, Any], store: StoreConfig) -> Order: ...

    def map_refund(self, payload: Mapping[str, Any], refund_id: str, store: StoreConfig) -> Refund: ...

    def order_reference(self, payload: Mapping[str, Any], store: StoreConfig) -> tuple[str, str]: ...

    def orders_to_redact(self, payload: Mapping[str, Any]) -> list[str]: ...

    # The version (last-modified time) of the order whose every event the delivery of ``event``
    # (``payload``) fed, when that delivery proves it; the job remembers it for the sync.
    def fed_version(self, event: Event, payload: Mapping[str, Any], store: StoreConfig) -> datetime | None: ...


ADAPTERS: Mapping[str, Adapter] = {woocommerce.PLATFORM: woocommerce, shopify.PLATFORM: shopify}


def shop_api_for(store: StoreConfig, settings: Settings, *, sleep: Any = None) -> ShopApi:
    """The API client of a store's shop; raises ValueError when the store has no shop credentials."""
    if not store.has_shop_api:
        raise ValueError(f"store {store.id} has no shop_url and shop credentials")
    timeout = (settings.shop_connect_timeout, settings.shop_read_timeout)
    # Imported here: the intake needs ADAPTERS only, not requests nor the WooCommerce library.
    if store.platform == "woocommerce":
        from workers.platforms.woocommerce.api import WooCommerceApi

        assert store.shop_url and store.shop_consumer_key and store.shop_consumer_secret
        return WooCommerceApi(store.shop_url, store.shop_consumer_key.get_secret_value(),
                              store.shop_consumer_secret.get_secret_value(), timeout=timeout,
                              max_wait=settings.shop_max_wait, sleep=sleep)
    from workers.platforms.shopify.api import ShopifyApi

    assert store.shop_url and store.shop_access_token
    return ShopifyApi(store.shop_url, store.shop_access_token.get_secret_value(), timeout=timeout,
                      version=settings.shopify_api_version, max_wait=settings.shop_max_wait, sleep=sleep,
                      bulk_max_wait=settings.shop_bulk_max_wait)
