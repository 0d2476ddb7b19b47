"""The emulated shops, served together: WooCommerce sites and Shopify shops on one local address.

``create_shops_app`` is the only place the app is assembled (its shops live on
``app.extensions["shop_emulators"]``, a :class:`ShopEmulators`); :class:`ShopsServer` serves it from a
thread, like :class:`bridge.sandbox.SandboxServer` serves the Loyalty.lt sandbox. Each shop's
``shop_url`` is ``<server url>/woocommerce/<name>`` or ``<server url>/shopify/<name>``;
``GET /_shops/state`` shows every shop, its orders count, its webhooks and their failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import BaseModel, Field

from bridge.sandbox.deliveries import Deliverer
from bridge.sandbox.server import BackgroundServer
from bridge.sandbox.shopify import ShopifyShop, ShopifyShopConfig
from bridge.sandbox.shopify import blueprint as shopify_blueprint
from bridge.sandbox.woocommerce import EXTENSION, WooShop, WooShopConfig
from bridge.sandbox.woocommerce import blueprint as woocommerce_blueprint


class ShopsConfig(BaseModel):
    """The shops to emulate."""

    woocommerce: list[WooShopConfig] = Field(default_factory=list)
    shopify: list[ShopifyShopConfig] = Field(default_factory=list)
    delivery_timeout: float = Field(5.0, gt=0)


@dataclass
class ShopEmulators:
    """Every emulated shop by name, and the deliverer their webhooks share."""

    deliverer: Deliverer
    woocommerce: dict[str, WooShop] = field(default_factory=dict)
    shopify: dict[str, ShopifyShop] = field(default_factory=dict)
    base_url: str = ""

    def shop_url(self, platform: str, name: str) -> str:
        """The address a store's ``shop_url`` should hold for this shop."""
        return f"{self.base_url}/{platform}/{name}"

    def snapshot(self) -> dict[str, Any]:
        return {"woocommerce": [s.snapshot() for s in self.woocommerce.values()],
                "shopify": [s.snapshot() for s in self.shopify.values()],
                "deliveries": list(self.deliverer.log[-50:])}


def shops_of(app: Flask) -> ShopEmulators:
    """The :class:`ShopEmulators` of an app made by :func:`create_shops_app`."""
    return app.extensions[EXTENSION]


def create_shops_app(config: ShopsConfig | None = None, base_url: str = "") -> Flask:
    """Build the emulated shops' app (``base_url``: where it is served, for links it gives out)."""
    config = config or ShopsConfig()
    deliverer = Deliverer(timeout=config.delivery_timeout)
    shops = ShopEmulators(deliverer=deliverer, base_url=base_url)
    for woo in config.woocommerce:
        shops.woocommerce[woo.name] = WooShop(woo, deliverer,
                                              base_url=partial(shops.shop_url, "woocommerce", woo.name))
    for shopify in config.shopify:
        shops.shopify[shopify.name] = ShopifyShop(shopify, deliverer,
                                                  base_url=partial(shops.shop_url, "shopify", shopify.name))
    app = Flask("bridge.sandbox.shops")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = shops
    app.register_blueprint(woocommerce_blueprint)
    app.register_blueprint(shopify_blueprint)

    @app.get("/_shops/state")
    def state() -> Response:
        return jsonify(shops.snapshot())

    return app


class ShopsServer(BackgroundServer):
    """The emulated shops served in the background; their links name the server's own URL."""

    thread_name = "shop-emulators"

    def __init__(self, config: ShopsConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.mount(create_shops_app(config, base_url=self.url))

    @property
    def shops(self) -> ShopEmulators:
        return shops_of(self.app)

    def closing(self) -> None:
        self.shops.deliverer.close()
