"""Prometheus metrics: what the intake, the jobs and the Loyalty.lt calls did, and the queue depths.

Counters and histograms are prometheus-client objects, updated where things happen. Under gunicorn
(several processes) they are aggregated through ``PROMETHEUS_MULTIPROC_DIR`` (set by
``bridge/gunicorn_conf.py``). Queue depths and the failed count are read from Redis at scrape time
(:class:`QueueCollector`), so they are right whichever process is scraped.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, make_wsgi_app
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from werkzeug.datastructures import Authorization

from config.settings import Settings
from workers.ledger import Ledger
from workers.platforms import ADAPTERS

WEBHOOKS = Counter("bridge_webhooks_total", "Webhook deliveries by platform, store and outcome.",
                   ["platform", "store", "outcome"])
WEBHOOK_SECONDS = Histogram("bridge_webhook_seconds", "Time to answer a webhook.", ["platform"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
JOBS = Counter("bridge_jobs_total", "Jobs by event and outcome.", ["event", "outcome"])
API_SECONDS = Histogram("bridge_loyalty_request_seconds", "Loyalty.lt call latency by endpoint.", ["endpoint"],
                        buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
API_RESPONSES = Counter("bridge_loyalty_responses_total", "Loyalty.lt answers by endpoint and status code "
                        "(status 0: no answer, e.g. a timeout).", ["endpoint", "status"])
SHOP_RUNS = Counter("bridge_shop_runs_total", "Runs against the shops' APIs by store, task (sync, backfill, watch) "
                    "and outcome (ok, retry_later, unreachable, refused, error).", ["store", "task", "outcome"])
SHOP_EVENTS = Counter("bridge_shop_sync_events_total", "What the shop sync and backfill found, by store and result "
                      "(queued, known, ignored).", ["store", "result"])
SHOP_SUBSCRIPTIONS = Counter("bridge_shop_subscription_problems_total", "Webhook subscriptions the watch found "
                             "wrong or mended, by store, topic and problem (missing, disabled, paused, changed; "
                             "reactivated, recreated).",
                             ["store", "topic", "problem"])
ALERT_DELIVERIES = Counter("bridge_alert_deliveries_total", "Alert notifications by kind, receiver (its position "
                           "in BRIDGE_ALERT_WEBHOOKS) and outcome (sent; failed: tried again later; given_up; "
                           "refused: a 4xx no retry changes).", ["alert", "receiver", "outcome"])


@lru_cache(maxsize=1024)
def _webhook_series(platform: str, store: str, outcome: str) -> tuple[Counter, Histogram]:
    # labels() takes a lock and builds its key on every call; the intake calls this per webhook.
    return WEBHOOKS.labels(platform, store, outcome), WEBHOOK_SECONDS.labels(platform)


def observe_webhook(fields: dict[str, Any]) -> None:
    """Count one answered webhook (the intake's log fields)."""
    status = fields.get("http_status")
    outcome = f"rejected_{status}" if status in (401, 404, 413, 400, 503) else str(fields.get("outcome", "unknown"))
    # Unknown store ids and platforms come from the internet: do not let them create label values.
    if status == 404:
        platform = str(fields.get("platform")) if fields.get("platform") in ADAPTERS else "unknown"
        store = "unknown"
    else:
        platform, store = str(fields.get("platform", "unknown")), str(fields.get("store"))
    count, seconds = _webhook_series(platform, store, outcome)
    count.inc()
    if "duration_ms" in fields:
        seconds.observe(float(fields["duration_ms"]) / 1000)


def observe_job(event: str, outcome: str) -> None:
    """Count one job run by its outcome (awarded, skipped, retry, wait, failed, ...)."""
    JOBS.labels(event, outcome).inc()


def observe_api(endpoint: str, status: int | None, seconds: float) -> None:
    """Record one Loyalty.lt call (the client's ``on_response`` hook)."""
    API_SECONDS.labels(endpoint).observe(seconds)
    API_RESPONSES.labels(endpoint, str(status or 0)).inc()


class QueueCollector(Collector):
    """Queue depths by state and the failed count, read from Redis when scraped."""

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue_name = queue_name

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("bridge_queue_jobs", "Jobs of the bridge's queue by state.",
                                  labels=["queue", "state"])
        queue = Queue(self.queue_name, connection=self.connection)
        registries = {"scheduled": ScheduledJobRegistry, "started": StartedJobRegistry,
                      "deferred": DeferredJobRegistry, "failed": FailedJobRegistry}
        pending = GaugeMetricFamily("bridge_pending_awards", "Awards held back by the store's award delay.",
                                    labels=["store"])
        try:
            depth.add_metric([self.queue_name, "queued"], queue.count)
            for state, registry in registries.items():
                depth.add_metric([self.queue_name, state], registry(queue=queue).get_job_count(cleanup=False))
            for key in self.connection.scan_iter(match=Ledger.due_key("*"), count=100):
                store = key.decode().removeprefix(Ledger.due_key(""))
                pending.add_metric([store], float(self.connection.zcard(key)))  # type: ignore[arg-type]
        except RedisError:
            return
        yield depth
        yield pending


class ShopCollector(Collector):
    """When each store's last sync and watch ran and whether it went well, read from Redis when scraped."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from workers.shop.state import ShopState

        last = GaugeMetricFamily("bridge_shop_last_run_timestamp_seconds", "When each store's last run against "
                                 "its shop's API ended.", labels=["store", "task"])
        ok = GaugeMetricFamily("bridge_shop_last_run_ok", "1 when the store's last run against its shop's API "
                               "succeeded, 0 when it failed (see bridge check).", labels=["store", "task"])
        try:
            statuses = ShopState(self.connection).statuses()
        except RedisError:
            return
        for (store, task), status in sorted(statuses.items()):
            last.add_metric([store, task], status.at.timestamp())
            ok.add_metric([store, task], 1.0 if status.ok else 0.0)
        yield last
        yield ok


class AlertCollector(Collector):
    """What the alerts look at, read from Redis when scraped: the conditions firing, the outbox, the
    workers alive and the waiting events (the Redis server's gauges are RedisServerCollector's)."""

    def __init__(self, connection: Redis, queue_name: str) -> None:
        self.connection = connection
        self.queue_name = queue_name

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from workers.alerts.checks import backlog
        from workers.alerts.records import CONDITIONS
        from workers.alerts.state import AlertState

        state = AlertState(self.connection, receivers=0, repeat=0)
        try:
            firing: dict[str, int] = {}
            for record in state.firing():
                firing[record.alert] = firing.get(record.alert, 0) + 1
            pending = state.pending()
            seen = backlog(self.connection, self.queue_name)
        except RedisError:
            return
        alerts = GaugeMetricFamily("bridge_alerts_firing", "Alert conditions firing now, by kind (bridge alerts).",
                                   labels=["alert"])
        for kind in CONDITIONS:
            alerts.add_metric([kind], float(firing.get(kind, 0)))
        yield alerts
        yield GaugeMetricFamily("bridge_alert_outbox", "Alert notifications not yet delivered (due or waiting "
                                "for a retry).", value=float(pending))
        yield GaugeMetricFamily("bridge_workers", "Workers alive on the bridge's queue.", value=float(seen.workers))
        yield GaugeMetricFamily("bridge_waiting_events", "Events whose time has come and that no worker has "
                                "finished yet.", value=float(seen.waiting))
        yield GaugeMetricFamily("bridge_oldest_waiting_event_age_seconds", "How long the oldest waiting event "
                                "has waited.", value=seen.oldest_age)


def _registry(connection: Redis, queue_name: str, stores: Iterable[str], min_replicas: int = 0) -> CollectorRegistry:
    """This process's metrics (or all processes' in multiprocess mode), the queue gauges and the Redis
    server's (eviction policy, persistence, memory, replicas against ``min_replicas``: :mod:`workers.redis_checks`)."""
    from workers.redis_checks import RedisServerCollector

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(QueueCollector(connection, queue_name))
    registry.register(ShopCollector(connection))
    registry.register(RedisServerCollector(connection, stores, min_replicas))
    registry.register(AlertCollector(connection, queue_name))
    return registry


def render(connection: Redis, queue_name: str, stores: Iterable[str] = (), min_replicas: int = 0) -> tuple[bytes, str]:
    """The metrics page (the web app's ``/metrics``); ``stores`` give the Redis gauges the rate of orders,
    ``min_replicas`` (``BRIDGE_REDIS_MIN_REPLICAS``) the replicas required."""
    return generate_latest(_registry(connection, queue_name, stores, min_replicas)), CONTENT_TYPE_LATEST


# The answer to a scrape without the token (body, status, headers).
UNAUTHORIZED = ("Bearer token required\n", 401, {"WWW-Authenticate": 'Bearer realm="loyalty-bridge metrics"'})


def token_of(settings: Settings) -> bytes | None:
    """The token scrapes must bear (``BRIDGE_METRICS_TOKEN``), or None when the metrics are open."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    return token.encode() or None


def bearer_ok(header: str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header bears ``token`` (compared in constant time)."""
    auth = Authorization.from_header(header)
    given = (auth.token or "") if auth is not None and auth.type == "bearer" else ""
    return hmac.compare_digest(given.encode(), token)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _bearer_only(app: WsgiApp, token: bytes) -> WsgiApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if bearer_ok(environ.get("HTTP_AUTHORIZATION"), token):
            return app(environ, start_response)
        body, status, headers = UNAUTHORIZED
        start_response(f"{status} Unauthorized", [("Content-Type", "text/plain"), *headers.items()])
        return [body.encode()]
    return guarded


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Scrapes are not logged (prometheus-client's own server does the same)."""


def serve_metrics(port: int, connection: Redis, queue_name: str, token: bytes | None = None,
                  host: str = "0.0.0.0", stores: Iterable[str] = (), min_replicas: int = 0) -> WSGIServer:
    """Serve the metrics page on ``port`` from a background thread (the workers' ``--metrics-port``);
    with ``token``, only to scrapes bearing it; ``stores`` give the Redis gauges the rate of orders.
    prometheus-client's ``start_http_server`` takes no token, so this is its server with the check in front."""
    app: WsgiApp = make_wsgi_app(_registry(connection, queue_name, stores, min_replicas))
    if token:
        app = _bearer_only(app, token)
    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server
