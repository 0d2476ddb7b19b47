"""The application factory: the only place the web app is assembled.

The Procfile (through gunicorn), ``bridge web``, ``bridge dev`` and the tests all call
:func:`create_app`. Settings, stores and the Redis connection are built here once per process (or
passed in by tests), never at import time.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge.dashboard import mount_dashboard
from bridge.intake import EXTENSION, Intake, blueprint
from config.log_format import log
from config.settings import Settings
from config.stores import ConfigError, Stores, load_stores
from workers import metrics
from workers.alerts.loop import AlertLoop
from workers.alerts.reports import Alerts
from workers.connection import connect
from workers.event_queue import EventQueue
from workers.redis_checks import replicas, warn_at_start

logger = logging.getLogger("bridge.app")
# Redis for the intake: a shop waits for the answer, so fail fast and answer 503.
INTAKE_REDIS_TIMEOUT = 2.0
ALERTS = "loyalty_bridge_alerts"


def create_app(settings: Settings | None = None, stores: Stores | None = None,
               connection: Redis | None = None) -> Flask:
    """Build the bridge's web app.

    Raises :class:`config.ConfigError` with a one-line message when the stores file is unusable.
    """
    settings = settings or Settings()
    stores = stores if stores is not None else load_stores(settings.stores_file)
    if connection is None:
        if not settings.redis_url:
            raise ConfigError("REDIS_URL is not set (`bridge dev` starts an embedded Redis for you)")
        connection = connect(settings.redis_url, timeout=INTAKE_REDIS_TIMEOUT)

    app = Flask("bridge")
    # Werkzeug refuses a larger Content-Length up front, and stops a chunked body at this length;
    # one byte over the limit lets the intake tell "at the limit" from "over it" (see intake.py).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if settings.proxy_hops:
        # Trust that many proxies' X-Forwarded-For/-Proto/-Host/-Port: the request's address is then the
        # one the browser used, which the dashboard's same-origin check compares with.
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops,  # type: ignore[method-assign]
                                x_port=hops)
    intake = Intake(settings=settings, stores=stores, events=EventQueue(connection, settings),
                    observe=metrics.observe_webhook)
    app.extensions[EXTENSION] = intake
    app.register_blueprint(blueprint)
    dashboard = mount_dashboard(app, settings, connection)
    # Started by whoever serves the app (bridge web, gunicorn's post_worker_init): the web processes
    # send alerts too, and are what still runs when the workers are down.
    app.extensions[ALERTS] = AlertLoop(Alerts(connection, settings))

    @app.get("/healthz")
    def healthz() -> Response:
        """The process is up (no dependency checked)."""
        return jsonify(status="ok")

    required = settings.redis_min_replicas

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Ready to take webhooks: Redis answers, and with ``BRIDGE_REDIS_MIN_REPLICAS`` that many
        replicas are in sync (else every webhook would be answered 503)."""
        try:
            if not required:
                connection.ping()
                return jsonify(status="ok", redis="ok", stores=len(stores)), 200
            copies = replicas.inspect(connection, required)
        except RedisError as exc:
            return jsonify(status="unavailable", redis=type(exc).__name__), 503
        held = f"{copies.in_sync} of {required} required in sync"
        if reason := replicas.problem(copies):
            return jsonify(status="unavailable", redis="ok", replicas=held, reason=reason), 503
        return jsonify(status="ok", redis="ok", replicas=held, stores=len(stores)), 200

    metrics_token = metrics.token_of(settings)

    @app.get("/metrics")
    def metrics_page() -> Response:
        """Prometheus metrics (all gunicorn processes, and the queue depths read from Redis); with
        ``BRIDGE_METRICS_TOKEN`` set, only for ``Authorization: Bearer <token>``."""
        if metrics_token and not metrics.bearer_ok(request.headers.get("Authorization"), metrics_token):
            return Response(*metrics.UNAUTHORIZED)
        body, content_type = metrics.render(connection, settings.queue_name, stores, required)
        return Response(body, content_type=content_type)

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[Response, int]:
        return jsonify(status="error", error="not found"), 404

    @app.errorhandler(405)
    def wrong_method(_: Exception) -> tuple[Response, int]:
        return jsonify(status="error", error="method not allowed"), 405

    # An evicting policy, no persistence, too little memory or too few replicas: said once, as the process starts.
    warn_at_start(connection, stores, "web", required)
    log(logger, "app ready", stores=sorted(stores), stores_source=stores.source, dashboard=dashboard)
    return app

