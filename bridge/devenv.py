"""``bridge dev``: the whole bridge on one machine, in one command, with nothing installed.

It starts what is missing — an embedded Redis when ``REDIS_URL`` is unset, the Loyalty.lt sandbox
and two demo stores when no stores are configured, each with an emulated shop (WooCommerce and
Shopify, :mod:`bridge.sandbox.shops`) whose webhooks ``bridge connect`` points at the web app and
whose orders the worker syncs every 30 seconds — then the web app and a worker, and stops all of
it on Ctrl-C. A session file (``.bridge/dev.json``) lets ``bridge send-test`` and
``bridge status`` in another terminal find this session's Redis, stores and URL.

State is kept whole or not at all: the embedded Redis (queue, ledger) in ``.bridge/redis`` and the
sandbox's data (the Loyalty.lt side of the same orders) in ``.bridge/sandbox.json`` both survive a
restart, and ``fresh=True`` (``bridge dev --fresh``) starts both from nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr
from werkzeug.serving import BaseWSGIServer, make_server

from bridge.app import create_app
from bridge.embedded_redis import EmbeddedRedis
from bridge.sandbox import PartnerCredentials, SandboxConfig, SandboxServer
from bridge.sandbox.shopify import ShopifyShopConfig
from bridge.sandbox.shops import ShopsConfig, ShopsServer
from bridge.sandbox.woocommerce import WooShopConfig
from config.settings import Settings
from config.stores import ConfigError, Stores, load_stores
from workers.connection import connect
from workers.context import WorkerContext
from workers.worker import run_worker

DATA_DIR = Path(".bridge")
SESSION_FILE = "dev.json"
DEMO_STORES_FILE = "dev-stores.toml"
REDIS_DIR = "redis"
SANDBOX_STATE_FILE = "sandbox.json"
SANDBOX_KEY = "lty_sandbox_demo"
SANDBOX_SECRET = "sandbox-secret"
DEMO_SECRETS = {"demo-woo": "demo-woo-secret", "demo-shopify": "demo-shopify-secret"}
DEMO_SHOP_KEYS = {"demo-woo": ("ck_demo_woo", "cs_demo_woo"), "demo-shopify": "shpat_demo_shopify"}
# The dev environment syncs the emulated shops often, so a lost webhook shows up quickly.
DEV_SYNC_INTERVAL = 30
DEV_MAINTENANCE_INTERVAL = 10


@dataclass
class DevSession:
    """Where a running ``bridge dev`` is, for commands run in another terminal."""

    pid: int
    redis_url: str
    web_url: str
    stores_file: str
    sandbox_url: str | None = None
    shops_url: str | None = None
    dashboard_user: str | None = None
    dashboard_password: str | None = None

    def save(self, data_dir: Path) -> None:
        (data_dir / SESSION_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, data_dir: Path = DATA_DIR) -> DevSession | None:
        """The running session in ``data_dir``, or None (no file, or its process is gone)."""
        path = data_dir / SESSION_FILE
        try:
            session = cls(**json.loads(path.read_text()))
            os.kill(session.pid, 0)
        except (OSError, ValueError, TypeError):
            return None
        return session


def demo_shops() -> ShopsConfig:
    """The demo stores' emulated shops; the Shopify app signs with the demo store's webhook secret."""
    key, secret = DEMO_SHOP_KEYS["demo-woo"]
    return ShopsConfig(woocommerce=[WooShopConfig(name="demo-woo", consumer_key=key, consumer_secret=secret)],
                       shopify=[ShopifyShopConfig(name="demo-shopify", access_token=str(DEMO_SHOP_KEYS["demo-shopify"]),
                                                  client_secret=DEMO_SECRETS["demo-shopify"])])


def demo_stores_toml(sandbox_url: str, shops_url: str | None = None) -> str:
    """Two demo stores, one per platform, pointed at the sandbox (and at their emulated shops)."""
    def shop(store_id: str, platform: str) -> str:
        if shops_url is None:
            return ""
        keys = DEMO_SHOP_KEYS[store_id]
        credentials = (f'shop_consumer_key = "{keys[0]}"\nshop_consumer_secret = "{keys[1]}"\n'
                       if isinstance(keys, tuple) else f'shop_access_token = "{keys}"\n')
        return f'shop_url = "{shops_url}/{platform}/{store_id}"\n' + credentials

    return "".join(
        f"""
[stores.{store_id}]
platform = "{platform}"
webhook_secrets = ["{DEMO_SECRETS[store_id]}"]
api_key = "{SANDBOX_KEY}"
api_secret = "{SANDBOX_SECRET}"
locale = "en"
reference_format = "{fmt}"
api_url = "{sandbox_url}"
{shop(store_id, platform)}"""
        for store_id, platform, fmt in (("demo-woo", "woocommerce", "WC-{number}"),
                                        ("demo-shopify", "shopify", "SH-{number}"))
    )


def connect_demo_shops(settings: Settings, stores: Stores, connection: object, web_url: str,
                       echo: Callable[[str], None]) -> None:
    """`bridge connect` for each demo store: its emulated shop delivers to this web app."""
    from workers.platforms import shop_api_for
    from workers.platforms.shop_api import ShopApiError
    from workers.shop import subscriptions
    from workers.shop.state import ShopState

    for store in stores.values():
        if store.id not in DEMO_SECRETS or not store.has_shop_api:
            continue
        try:
            topics = subscriptions.connect(shop_api_for(store, settings), store, ShopState(connection),  # type: ignore[arg-type]
                                           web_url)
        except ShopApiError as exc:
            echo(f"Shop         {store.id}: could not connect ({exc})")
            continue
        echo(f"Shop         {store.id}: {store.shop_url} delivers {', '.join(t.topic for t in topics)}; "
             f"synced every {settings.shop_sync_interval} s")


def sandbox_for(stores: Stores) -> SandboxConfig:
    """A sandbox that accepts the API key pairs of ``stores``."""
    pairs = {(s.api_key, s.api_secret.get_secret_value()) for s in stores.values() if s.api_key.startswith("lty_")}
    partners = [PartnerCredentials(api_key=key, api_secret=secret, partner_id=i + 1, name=f"Sandbox partner {i + 1}")
                for i, (key, secret) in enumerate(sorted(pairs))]
    return SandboxConfig(partners=partners) if partners else SandboxConfig()


def _serve(app: object, host: str, port: int) -> BaseWSGIServer:
    server = make_server(host, port, app, threaded=True)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
    return server


def alert_lines(settings: Settings, sandbox_url: str | None) -> list[str]:
    """How to try the alerts (README, "Alerts") in this session."""
    urls = settings.alert_urls
    if urls:
        signed = "signed" if settings.alert_secret else "unsigned"
        lines = [f"Alerts       to {len(urls)} receiver(s), {signed}: bridge alerts test sends each a test alert; "
                 "bridge alerts lists what fires"]
    else:
        lines = ["Alerts       none sent (BRIDGE_ALERT_WEBHOOKS is not set; bridge alerts lists what fires). Try: "
                 "BRIDGE_ALERT_WEBHOOKS=<a Slack incoming webhook, or any URL> bridge dev, then bridge alerts test"]
    if sandbox_url:
        lines.append(f"Make one     curl -X PATCH {sandbox_url}/_sandbox/config -H 'Content-Type: application/json' "
                     """-d '{"fail_rules": [{"path": "transactions/create", "status": 401, "remaining": 1}]}' """
                     "then bridge send-test demo-woo: credentials_rejected now, job_failed a minute later")
    return lines


def forget_state(data_dir: Path) -> None:
    """Delete what earlier runs kept: the embedded Redis's data and the sandbox's."""
    shutil.rmtree(data_dir / REDIS_DIR, ignore_errors=True)
    (data_dir / SANDBOX_STATE_FILE).unlink(missing_ok=True)


def run_dev(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, sandbox_port: int = 8787,
            force_sandbox: bool = False, fresh: bool = False, data_dir: Path = DATA_DIR,
            echo: Callable[[str], None] = print, shops_port: int = 8788) -> None:
    """Run everything until Ctrl-C, then stop everything this started (``fresh``: from nothing)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        if settings.redis_url:
            raise ConfigError("--fresh empties the embedded Redis, and REDIS_URL names another: "
                             "empty that one yourself, or unset REDIS_URL")
        forget_state(data_dir)
    sandbox_state = data_dir / SANDBOX_STATE_FILE
    with ExitStack() as stack:
        redis_url = settings.redis_url
        if not redis_url:
            redis = stack.enter_context(EmbeddedRedis(data_dir / REDIS_DIR, persist=True))
            redis_url = redis.url
            echo(f"Redis        {redis_url} (embedded; data in {data_dir / REDIS_DIR})")

        stores_file = settings.stores_file
        configured = stores_file.exists() or any(k.startswith("BRIDGE_STORE_") for k in os.environ)
        sandbox: SandboxServer | None = None
        shops: ShopsServer | None = None
        if not configured:
            sandbox = SandboxServer(SandboxConfig(), host=host, port=sandbox_port, state_file=sandbox_state)
            shops = ShopsServer(demo_shops(), host=host, port=shops_port)
            stores_file = data_dir / DEMO_STORES_FILE
            stores_file.write_text(demo_stores_toml(sandbox.url, shops.url))
        stores = load_stores(stores_file)
        if force_sandbox and sandbox is None:
            sandbox = SandboxServer(sandbox_for(stores), host=host, port=sandbox_port, state_file=sandbox_state)
            stores = Stores({sid: s.model_copy(update={"api_url": sandbox.url}) for sid, s in stores.items()},
                            source=f"{stores.source}, pointed at the sandbox")
        if sandbox is not None:
            sandbox.start()
            stack.callback(sandbox.stop)
            echo(f"Sandbox      {sandbox.url} (a local Loyalty.lt; state at {sandbox.url}/_sandbox/state, "
                 f"kept in {sandbox_state})")
        if shops is not None:
            shops.start()
            stack.callback(shops.stop)
            echo(f"Shops        {shops.url} (emulated WooCommerce and Shopify; state at {shops.url}/_shops/state)")
            # Unless set otherwise, sync the emulated shops every 30 s, so a lost webhook shows up soon.
            tuned = {"shop_sync_interval": DEV_SYNC_INTERVAL,
                     "worker_maintenance_interval": min(settings.worker_maintenance_interval, DEV_MAINTENANCE_INTERVAL)}
            settings = settings.model_copy(update={k: v for k, v in tuned.items()
                                                   if f"BRIDGE_{k.upper()}" not in os.environ})

        user = settings.dashboard_user or "admin"
        password = settings.dashboard_password or SecretStr(secrets.token_urlsafe(12))
        settings = settings.model_copy(update={"redis_url": redis_url, "stores_file": stores_file,
                                               "dashboard_user": user, "dashboard_password": password})
        connection = connect(redis_url)
        app = create_app(settings, stores, connect(redis_url, timeout=2.0))
        web = _serve(app, host, port)
        stack.callback(web.shutdown)
        web_url = f"http://{host}:{web.server_port}"

        session = DevSession(pid=os.getpid(), redis_url=redis_url, web_url=web_url, stores_file=str(stores_file),
                             sandbox_url=sandbox.url if sandbox else None, shops_url=shops.url if shops else None,
                             dashboard_user=user,
                             dashboard_password=password.get_secret_value())
        session.save(data_dir)
        stack.callback((data_dir / SESSION_FILE).unlink, missing_ok=True)

        echo(f"Web          {web_url}")
        echo(f"Dashboard    {web_url}/rq  (user {user!r}, password {password.get_secret_value()!r})")
        echo(f"Metrics      {web_url}/metrics")
        for store in stores.values():
            secret = store.webhook_secrets[0].get_secret_value() if store.id in DEMO_SECRETS else "(from your stores file)"
            echo(f"Store        {store.id}: POST {web_url}/webhooks/{store.platform}/{store.id}  secret {secret}")
        if shops is not None:
            connect_demo_shops(settings, stores, connection, web_url, echo)
        echo("Try          bridge send-test demo-woo   (in another terminal), then bridge status <reference>")
        if sandbox is not None:
            probed = next(iter(stores))
            echo(f"Probe        bridge check {probed} --live   (every Loyalty.lt call on the sandbox: a probe order "
                 "awarded, taken back, found in the list; run it against staging before going live)")
        if shops is not None:
            echo("Lost         bridge send-test demo-woo --lost   (no webhook: the sync awards it within "
                 f"{settings.shop_sync_interval} s)")
        for line in alert_lines(settings, sandbox.url if sandbox else None):
            echo(line)
        echo("Stop         Ctrl-C")

        run_worker(WorkerContext.build(settings, stores, connection), logging_level=settings.log_level)
