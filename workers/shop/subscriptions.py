"""The store's webhook subscriptions at its shop: create them (``bridge connect``), check them, mend them.

The bridge wants, per platform, one active subscription per topic pointing at
``<public URL>/webhooks/<platform>/<store id>``: WooCommerce ``order.created`` and ``order.updated``
signed with the store's current secret; Shopify ``ORDERS_PAID``, ``REFUNDS_CREATE`` and
``ORDERS_CANCELLED`` (Shopify signs with the app's client secret, which no API sets, and its privacy
topics are declared in the app's configuration, not through this API). A subscription is the
bridge's when its URL's path is the store's webhook path, whatever the host, so a new public address
updates it instead of adding a second one.

Connecting is idempotent: what is right is left alone; a subscription with another URL, another
secret (WooCommerce keeps it hidden, so the fingerprint of what the bridge last set is kept in
:class:`~workers.shop.state.ShopState`) or not active is updated; a missing one is created.

The watch (worker maintenance, ``BRIDGE_SHOP_WATCH_INTERVAL``) reports and counts what is wrong and
mends only what the shop itself broke: it re-activates a WooCommerce webhook WooCommerce ``disabled``
after failed deliveries (a ``paused`` one was paused by a person and stays so), and re-creates, at
the address connect last set, a Shopify subscription that is missing (Shopify removes one whose
deliveries keep failing; an app's subscriptions are not shown in the shop's admin for a person to
delete). A missing WooCommerce webhook was deleted by someone in WordPress: reported, not re-created.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel

from config.log_format import log
from config.stores import StoreConfig
from workers.metrics import SHOP_SUBSCRIPTIONS
from workers.platforms.shop_api import ShopApi, Subscription
from workers.shop.state import ConnectRecord, ShopState, fingerprint

logger = logging.getLogger("workers.shop.subscriptions")
TOPICS: dict[str, tuple[str, ...]] = {"woocommerce": ("order.created", "order.updated"),
                                      "shopify": ("ORDERS_PAID", "REFUNDS_CREATE", "ORDERS_CANCELLED")}
SIGNS_WITH_STORE_SECRET = {"woocommerce"}
Action = Literal["created", "updated", "reactivated"]


class TopicState(BaseModel):
    """One wanted topic: its subscription's state, what is wrong with it, and what was done."""

    topic: str
    status: Literal["active", "paused", "disabled", "missing"]
    url: str = ""
    id: str | None = None
    problems: list[str] = []
    action: Action | None = None

    @property
    def healthy(self) -> bool:
        return not self.problems or self.action is not None


def webhook_url(public_url: str, store: StoreConfig) -> str:
    """The store's webhook address at the bridge's public address."""
    return f"{public_url.rstrip('/')}/webhooks/{store.platform}/{store.id}"


def ours(subscription: Subscription, store: StoreConfig) -> bool:
    """Whether a subscription delivers to this store's webhook path (on any host)."""
    return urlsplit(subscription.url).path.rstrip("/").endswith(f"/webhooks/{store.platform}/{store.id}")


def inspect(store: StoreConfig, subscriptions: list[Subscription], url: str | None,
            record: ConnectRecord | None) -> list[TopicState]:
    """The state of each wanted topic; ``url`` (the expected address) when known."""
    secret = fingerprint(store.webhook_secrets[0].get_secret_value())
    found = []
    for topic in TOPICS[store.platform]:
        mine = [s for s in subscriptions if s.topic == topic and ours(s, store)]
        if not mine:
            found.append(TopicState(topic=topic, status="missing", problems=["missing"]))
            continue
        sub = next((s for s in mine if s.url == url), mine[0])
        problems: list[str] = [] if sub.status == "active" else [sub.status]
        if url is not None and sub.url != url:
            problems.append(f"delivers to {sub.url}")
        if store.platform in SIGNS_WITH_STORE_SECRET and (record is None or record.secrets.get(sub.id) != secret):
            problems.append("secret not set by the bridge" if record is None or sub.id not in record.secrets
                            else "signed with an older secret")
        found.append(TopicState(topic=topic, status=sub.status, url=sub.url, id=sub.id, problems=problems))
    return found


def connect(api: ShopApi, store: StoreConfig, state: ShopState, public_url: str) -> list[TopicState]:
    """Make every wanted subscription exist, active, at ``public_url`` with the store's secret."""
    url = webhook_url(public_url, store)
    secret = store.webhook_secrets[0].get_secret_value()
    record = state.connected(store.id)
    subscriptions = api.subscriptions()
    topics = inspect(store, subscriptions, url, record)
    secrets = dict(record.secrets) if record else {}
    for topic in topics:
        if topic.status == "missing":
            created = api.create_subscription(topic.topic, url, secret)
            topic.id, topic.url, topic.status, topic.action = created.id, created.url, created.status, "created"
        elif topic.problems:
            current = next(s for s in subscriptions if s.id == topic.id)
            updated = api.update_subscription(current, url, secret)
            topic.url, topic.status = updated.url, updated.status
            topic.action = "reactivated" if current.status != "active" and current.url == url else "updated"
        if topic.id is not None:
            secrets[topic.id] = fingerprint(secret)
    state.save_connected(store.id, ConnectRecord(url=url, at=datetime.now(UTC), secrets=secrets))
    return topics


def check(api: ShopApi, store: StoreConfig, state: ShopState, public_url: str | None = None) -> list[TopicState]:
    """The wanted subscriptions' state, against ``public_url`` or the address connect last set."""
    record = state.connected(store.id)
    url = webhook_url(public_url, store) if public_url else (record.url if record else None)
    return inspect(store, api.subscriptions(), url, record)


def watch(api: ShopApi, store: StoreConfig, state: ShopState) -> list[TopicState]:
    """Worker maintenance's look: log and count what is wrong; re-activate what WooCommerce disabled and
    re-create what Shopify removed."""
    record = state.connected(store.id)
    subscriptions = api.subscriptions()
    topics = inspect(store, subscriptions, record.url if record else None, record)
    for topic in topics:
        for problem in topic.problems:
            kind = problem.split(" ")[0] if problem in ("missing", "disabled", "paused") else "changed"
            SHOP_SUBSCRIPTIONS.labels(store.id, topic.topic, kind).inc()
            log(logger, "webhook subscription needs attention", logging.WARNING, store=store.id, topic=topic.topic,
                problem=problem, subscription=topic.id)
        if store.platform == "woocommerce" and topic.status == "disabled" and topic.id is not None:
            current = next(s for s in subscriptions if s.id == topic.id)
            secret = store.webhook_secrets[0].get_secret_value()
            updated = api.update_subscription(current, current.url, secret)
            topic.status, topic.action = updated.status, "reactivated"
            if record is not None:
                record.secrets[topic.id] = fingerprint(secret)
                state.save_connected(store.id, record)
            SHOP_SUBSCRIPTIONS.labels(store.id, topic.topic, "reactivated").inc()
            log(logger, "re-activated a webhook WooCommerce had disabled", logging.WARNING, store=store.id,
                topic=topic.topic, subscription=topic.id)
        elif store.platform == "shopify" and topic.status == "missing" and record is not None:
            created = api.create_subscription(topic.topic, record.url, store.webhook_secrets[0].get_secret_value())
            topic.id, topic.url, topic.status, topic.action = created.id, created.url, created.status, "created"
            SHOP_SUBSCRIPTIONS.labels(store.id, topic.topic, "recreated").inc()
            log(logger, "re-created a webhook subscription Shopify had removed", logging.WARNING, store=store.id,
                topic=topic.topic, subscription=topic.id)
    return topics
