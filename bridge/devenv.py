"""``bridge dev``: the whole bridge on one machine, in one command, with nothing installed.

It starts what is missing — an embedded Redis when ``REDIS_URL`` is unset, the Loyalty.lt sandbox
and two demo stores when no stores are configured — then the web app and a worker, and stops all
of it on Ctrl-C. A session file (``.bridge/dev.json``) lets ``bridge send-test`` and
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


@dataclass
class DevSession:
    """Where a running ``bridge dev`` is, for commands run in another terminal."""

    pid: int
    redis_url: str
    web_url: str
    stores_file: str
    sandbox_url: str | None = None
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


def demo_stores_toml(sandbox_url: str) -> str:
    """Two demo stores, one per platform, pointed at the sandbox."""
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
"""
        for store_id, platform, fmt in (("demo-woo", "woocommerce", "WC-{number}"),
                                        ("demo-shopify", "shopify", "SH-{number}"))
    )


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


def forget_state(data_dir: Path) -> None:
    """Delete what earlier runs kept: the embedded Redis's data and the sandbox's."""
    shutil.rmtree(data_dir / REDIS_DIR, ignore_errors=True)
    (data_dir / SANDBOX_STATE_FILE).unlink(missing_ok=True)


def run_dev(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, sandbox_port: int = 8787,
            force_sandbox: bool = False, fresh: bool = False, data_dir: Path = DATA_DIR,
            echo: Callable[[str], None] = print) -> None:
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
        if not configured:
            sandbox = SandboxServer(SandboxConfig(), host=host, port=sandbox_port, state_file=sandbox_state)
            stores_file = data_dir / DEMO_STORES_FILE
            stores_file.write_text(demo_stores_toml(sandbox.url))
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
                             sandbox_url=sandbox.url if sandbox else None, dashboard_user=user,
                             dashboard_password=password.get_secret_value())
        session.save(data_dir)
        stack.callback((data_dir / SESSION_FILE).unlink, missing_ok=True)

        echo(f"Web          {web_url}")
        echo(f"Dashboard    {web_url}/rq  (user {user!r}, password {password.get_secret_value()!r})")
        echo(f"Metrics      {web_url}/metrics")
        for store in stores.values():
            secret = store.webhook_secrets[0].get_secret_value() if store.id in DEMO_SECRETS else "(from your stores file)"
            echo(f"Store        {store.id}: POST {web_url}/webhooks/{store.platform}/{store.id}  secret {secret}")
        echo("Try          bridge send-test demo-woo   (in another terminal), then bridge status <reference>")
        echo("Stop         Ctrl-C")

        run_worker(WorkerContext.build(settings, stores, connection), logging_level=settings.log_level)
