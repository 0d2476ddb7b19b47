"""One adapter per shop platform, all with the same shape (see :class:`Adapter`).

Each platform is a package: ``webhooks.py`` is its adapter (the same names for every platform).
Adding a platform means adding one package here, and a fixture folder under ``tests/fixtures/<platform>/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from config.stores import StoreConfig
from workers.events import Event, Ignored
from workers.orders import Order, Refund
from workers.platforms.shopify import webhooks as shopify
from workers.platforms.woocommerce import webhooks as woocommerce


class Adapter(Protocol):
    """What every platform module provides."""

    PLATFORM: str
    SIGNATURE_HEADER: str
    TOPIC_HEADER: str
    # Names one delivery (logged and kept with the job), or "" when the platform has none.
    DELIVERY_HEADER: str

    def is_ping(self, body: bytes) -> bool: ...

    def classify(self, topic: str, body: bytes, store: StoreConfig) -> list[Event] | Ignored: ...

    def map_order(self, payload: Mapping[str, Any], store: StoreConfig) -> Order: ...

    def map_refund(self, payload: Mapping[str, Any], refund_id: str, store: StoreConfig) -> Refund: ...

    def order_reference(self, payload: Mapping[str, Any], store: StoreConfig) -> tuple[str, str]: ...

    def orders_to_redact(self, payload: Mapping[str, Any]) -> list[str]: ...


ADAPTERS: Mapping[str, Adapter] = {woocommerce.PLATFORM: woocommerce, shopify.PLATFORM: shopify}
