"""A whole bridge deployment on one machine, as real processes: for the fault suite, the chaos run
and the benchmarks.

Redis is the embedded one (a real redis-server; with ``replicas``, a primary, its replicas and a
sentinel, which every process reaches through a ``redis+sentinel://`` URL), Loyalty.lt is the sandbox
over HTTP, web processes run exactly as the Procfile says (gunicorn), and workers are ``bridge
worker`` processes that can be SIGKILLed and restarted at will.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests
from redis import Redis
from rq import Queue

from bridge.embedded_redis import EmbeddedRedis, EmbeddedSentinel, free_port
from bridge.sandbox import SandboxConfig, SandboxServer
from workers.connection import connect
from workers.event_queue import EventQueue

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
API_KEY, API_SECRET = "lty_cluster_key", "cluster-api-secret"
SECRETS = {"woo": "cluster-woo-secret", "shop": "cluster-shopify-secret", "net": "cluster-net-secret",
           "later": "cluster-later-secret"}

STORES_TOML = """
[stores.woo]
platform = "woocommerce"
webhook_secrets = ["{woo}"]
api_key = "{key}"
api_secret = "${{CLUSTER_API_SECRET}}"
api_url = "{api}"
rate_limit_per_minute = {rate}
{woo_extra}
[stores.shop]
platform = "shopify"
webhook_secrets = ["{shop}"]
api_key = "{key}"
api_secret = "${{CLUSTER_API_SECRET}}"
api_url = "{api}"
rate_limit_per_minute = {rate}
{shop_extra}

# Points on goods only: tax and shipping earn nothing, and refunds of them take nothing back.
[stores.net]
platform = "shopify"
webhook_secrets = ["{net}"]
api_key = "{key}"
api_secret = "${{CLUSTER_API_SECRET}}"
api_url = "{api}"
rate_limit_per_minute = {rate}
reference_format = "NET-{{number}}"
amount_basis = "total_excl_shipping_and_tax"

# Pending points: each award 3 s after payment, for what the customer kept.
[stores.later]
platform = "woocommerce"
webhook_secrets = ["{later}"]
api_key = "{key}"
api_secret = "${{CLUSTER_API_SECRET}}"
api_url = "{api}"
rate_limit_per_minute = {rate}
reference_format = "LT-{{number}}"
award_delay = "3s"
"""

# Fast retries, quick hand-over of a dead worker's job: a deployment tuned for tests.
FAST = {
    "BRIDGE_RETRY_BASE_DELAY": "0.2", "BRIDGE_RETRY_MAX_DELAY": "2", "BRIDGE_WAIT_DELAY": "0.3",
    "BRIDGE_JOB_TIMEOUT": "10", "BRIDGE_WORKER_HEARTBEAT_GRACE": "2", "BRIDGE_WORKER_MAINTENANCE_INTERVAL": "2",
    "BRIDGE_API_READ_TIMEOUT": "2", "BRIDGE_API_CONNECT_TIMEOUT": "1", "BRIDGE_LOG_LEVEL": "WARNING",
    # An unanswered call may land up to 6 s later (the sandbox's slow commits show after 2 s).
    "BRIDGE_UNKNOWN_CALL_SETTLE": "6",
    "BRIDGE_REDIS_WAIT_BASE_DELAY": "0.2", "BRIDGE_REDIS_WAIT_MAX_DELAY": "1",
}


def procfile(kind: str) -> list[str]:
    """The Procfile's command for a process type."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith(f"{kind}:"))
    return shlex.split(line.split(":", 1)[1])


class Cluster:
    """Redis, the sandbox, web processes and workers; ``with Cluster(...) as c:`` stops them all."""

    def __init__(self, workdir: Path, *, webs: int = 2, web_concurrency: int = 2, workers: int = 3,
                 sandbox: SandboxConfig | None = None, rate_limit_per_minute: int = 100_000,
                 env: dict[str, str] | None = None, log: bool = False,
                 store_fields: dict[str, dict[str, str]] | None = None, replicas: int = 0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.webs_wanted, self.workers_wanted = webs, workers
        self.web_concurrency = web_concurrency
        partner = {"api_key": API_KEY, "api_secret": API_SECRET, "partner_id": 1, "name": "Cluster"}
        config = sandbox or SandboxConfig(rate_limit_per_minute=0)
        self.sandbox = SandboxServer(SandboxConfig.model_validate({**config.model_dump(), "partners": [partner]}))
        self.redis = EmbeddedRedis(self.workdir / "redis", persist=True)
        self.replicas = [EmbeddedRedis(self.workdir / f"replica-{n}", persist=True, replica_of=self.redis.port)
                         for n in range(replicas)]
        self.sentinel = EmbeddedSentinel(self.workdir / "sentinel", self.redis.port) if replicas else None
        self.rate_limit = rate_limit_per_minute
        self.extra_env = {**FAST, **(env or {})}
        self.log = log
        # Extra fields per store ("woo", "shop"), e.g. the shop API's address and keys.
        self.store_fields = store_fields or {}
        self.webs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        """What the bridge's processes are given as REDIS_URL."""
        return self.sentinel.url if self.sentinel else self.redis.url

    def __enter__(self) -> Cluster:
        for server in [self.redis, *self.replicas]:
            server.start()
        if self.sentinel:
            self.sentinel.start()
            wait_until(lambda: self.redis.process and _replicas_online(self.redis.port) == len(self.replicas),
                       30, "the replicas to sync")
        self.sandbox.start()
        stores = self.workdir / "stores.toml"
        extra = {f"{sid}_extra": "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.store_fields.get(sid, {}).items())
                 for sid in ("woo", "shop")}
        stores.write_text(STORES_TOML.format(key=API_KEY, api=self.sandbox.url, rate=self.rate_limit, **SECRETS,
                                             **extra))
        self.env = {**os.environ, **self.extra_env, "REDIS_URL": self.redis_url, "BRIDGE_STORES_FILE": str(stores),
                    "CLUSTER_API_SECRET": API_SECRET, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                    "WEB_CONCURRENCY": str(self.web_concurrency)}
        for _ in range(self.webs_wanted):
            self.start_web()
        for _ in range(self.workers_wanted):
            self.start_worker()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        for process in [p for _, p in self.webs] + self.workers:
            if process.poll() is None:
                process.terminate()
        for process in [p for _, p in self.webs] + self.workers:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.webs, self.workers = [], []
        self.sandbox.stop()
        for server in [*([self.sentinel] if self.sentinel else []), self.redis, *self.replicas]:
            server.stop()

    def _output(self, name: str) -> int | object:
        if not self.log:
            return subprocess.DEVNULL
        return open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it

    def start_web(self) -> str:
        """Start one web process as the Procfile does; returns its URL once it answers."""
        port = free_port()
        process = subprocess.Popen(procfile("web"), cwd=ROOT, env={**self.env, "PORT": str(port)},
                                   stdout=self._output(f"web-{port}"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        self.webs.append((url, process))
        wait_until(lambda: _answers(url + "/healthz"), 30, f"web on {url}")
        return url

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        """Start one ``bridge worker`` process."""
        process = subprocess.Popen([str(BIN / "bridge"), "worker", *args], cwd=self.workdir, env=self.env,
                                   stdout=self._output("workers"), stderr=subprocess.STDOUT)
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes] | None = None, rng: random.Random | None = None) -> None:
        """SIGKILL a worker (a random one by default), as a lost machine would."""
        living = [p for p in self.workers if p.poll() is None]
        victim = process or (rng or random).choice(living)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.workers.remove(victim)

    def restart_redis(self, down_for: float = 1.0) -> None:
        """Stop Redis (gracefully: it writes its append-only file) and start it again on the same port."""
        self.redis.stop()
        time.sleep(down_for)
        self.redis.start()

    def kill_primary(self) -> int:
        """SIGKILL the Redis the sentinel names as primary (no chance to write anything more); its port."""
        assert self.sentinel is not None, "a Cluster with replicas"
        primary = self.sentinel.primary()
        victim = next(s for s in [self.redis, *self.replicas] if primary and s.port == primary[1])
        assert victim.process is not None
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        victim.stop()
        return victim.port

    def wait_for_promotion(self, old_port: int, timeout: float = 30) -> None:
        """Wait until the sentinel names another primary than the one on ``old_port``."""
        assert self.sentinel is not None, "a Cluster with replicas"
        sentinel = self.sentinel
        wait_until(lambda: (now := sentinel.primary()) is not None and now[1] != old_port, timeout,
                   "the sentinel to promote a replica")

    # --- reading the state ----------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [url for url, _ in self.webs]

    def connection(self) -> Redis:
        return connect(self.redis_url)

    def drained(self) -> bool:
        """Every job has reached its end: none is open in the bridge's index (queued, running,
        waiting, or taken by a worker that died), and the queue is empty."""
        conn = self.connection()
        try:
            return conn.zcard(EventQueue.open_jobs_key) == 0 and Queue("loyalty", connection=conn).count == 0
        finally:
            conn.close()

    def wait_drained(self, timeout: float) -> None:
        """Wait until every job has finished (twice in a row, so a job between states is not missed)."""
        wait_until(lambda: self.drained() and (time.sleep(0.5) or self.drained()), timeout, "the queue to drain")

    def transactions(self) -> list[dict[str, object]]:
        """Every transaction the sandbox holds."""
        return self.sandbox.sandbox.state.snapshot()["transactions"]  # type: ignore[no-any-return]

    def balances(self) -> dict[str, int]:
        return {u["email"]: u["balance"] for u in self.sandbox.sandbox.state.snapshot()["users"]}


def _replicas_online(port: int) -> int:
    """How many replicas the Redis on ``port`` has in sync."""
    client = Redis(port=port, socket_connect_timeout=0.5)
    try:
        info = client.info("replication")
    finally:
        client.close()
    return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
               and v.get("state") == "online")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until(condition: object, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
