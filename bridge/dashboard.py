"""The RQ dashboard at ``/rq``, behind HTTP basic auth, or not at all; and what it may not do.

Job arguments hold customer emails, so the dashboard is only mounted when both
``BRIDGE_DASHBOARD_USER`` and ``BRIDGE_DASHBOARD_PASSWORD`` are set; otherwise ``/rq`` is a 404.

A browser sends cached basic credentials with every request to this origin, including a form or an
``<img>`` another site makes it send, and rq-dashboard has no CSRF protection of its own. So:

- a request that can change something (any method but GET/HEAD/OPTIONS, and any method on a route
  that also takes one, like rq-dashboard's ``GET /requeue/<queue>``) is refused with 403 unless its
  ``Origin`` (or, without one, its ``Referer``) is the bridge's own origin, as the request reached it
  (behind a proxy, the address ``BRIDGE_PROXY_HOPS`` proxies forwarded; see :mod:`bridge.app`);
- no job is deleted from here, by anyone: a queued, scheduled, started or deferred job is an order the
  intake acknowledged (its payload goes with it), and a failed one is dismissed with
  ``bridge failed --dismiss``, which records in the ledger who gave up on which order and why. The
  buttons are hidden (``RQ_DASHBOARD_DISABLE_DELETE``) and the routes refused, since rq-dashboard's own
  switch answers a crafted request 200;
- the pages cannot be framed by another site (clickjacking the Requeue button).
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, Request, Response, jsonify, request
from redis import Redis

from config.settings import Settings
from workers.connection import masked_url

PREFIX = "/rq"
REALM = "loyalty-bridge"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# rq-dashboard 0.9's views that delete jobs: "Empty" on any registry, and "Delete" on one job. The
# others that change state (requeue one, requeue all failed, compact) only put jobs back or drop ids
# of jobs that no longer exist, and stay, for same-origin requests.
DELETING_VIEWS = frozenset({"empty_queue", "delete_job_view"})
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def changes_state(req: Request) -> bool:
    """Whether ``req`` may change something: an unsafe method, or a route that also takes one."""
    if req.method not in SAFE_METHODS:
        return True
    methods = req.url_rule.methods if req.url_rule is not None else None
    return bool(methods and methods - SAFE_METHODS)


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL or ``Origin`` value; None for anything else ("null")."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def same_origin(req: Request) -> bool:
    """Whether ``req`` comes from a page of this bridge: its ``Origin``, or without one its ``Referer``,
    names the origin the request was sent to. Neither header: not shown to be ours, so no."""
    claimed = req.headers.get("Origin") or req.headers.get("Referer")
    own = origin_of(req.host_url)
    return claimed is not None and own is not None and origin_of(claimed) == own


def _refused(reason: str) -> Response:
    response = jsonify(status="error", error=reason)
    response.status_code = 403
    return response


def mount_dashboard(app: Flask, settings: Settings, connection: Redis) -> bool:
    """Mount rq-dashboard on ``app`` when credentials are configured; True when mounted."""
    if not settings.dashboard_user or settings.dashboard_password is None:
        return False
    user = settings.dashboard_user.encode()
    password = settings.dashboard_password.get_secret_value().encode()
    if not password:
        return False
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = True
    # The app's own connection (and so Sentinel's, when REDIS_URL names sentinels), not one
    # rq-dashboard builds from the URL on every request; the page shows the URL, so it gets it masked.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (masked_url(settings.redis_url or ""),)
    app.redis_conn = connection  # type: ignore[attr-defined]
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    own = app.before_request_funcs.get(rq_dashboard.blueprint.name, [])
    own[:] = [f for f in own if f is not rq_dashboard.web.push_rq_connection]

    # rq-dashboard's blueprint is one object shared by every app of the process, so the checks hang
    # on the app, not on the blueprint.
    def is_dashboard() -> bool:
        return request.blueprint == rq_dashboard.blueprint.name

    @app.before_request
    def guard_dashboard() -> Response | None:
        if not is_dashboard():
            return None
        auth = request.authorization
        given_user = (auth.username or "").encode() if auth else b""
        given_password = (auth.password or "").encode() if auth else b""
        # Compare both, always, in constant time.
        ok = hmac.compare_digest(given_user, user) & hmac.compare_digest(given_password, password)
        if auth is None or not ok:
            return Response("Authentication required", 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'})
        if (request.endpoint or "").rpartition(".")[2] in DELETING_VIEWS:
            return _refused("the dashboard deletes no job: a queued, scheduled, started or deferred job is an "
                            "order the bridge acknowledged; a failed one is dismissed with `bridge failed "
                            "--dismiss REF --reason ...`, which records who gave up on it and why")
        if changes_state(request) and not same_origin(request):
            return _refused(f"a request that changes something must come from the dashboard's own pages "
                            f"(Origin or Referer {request.host_url.rstrip('/')}); behind a proxy, set "
                            f"BRIDGE_PROXY_HOPS")
        return None

    @app.after_request
    def not_framed(response: Response) -> Response:
        if is_dashboard():
            response.headers.update(NOT_FRAMED)
        return response

    return True
