"""The RQ dashboard at ``/rq``, behind HTTP basic auth, or not at all.

Job arguments hold customer emails, so the dashboard is only mounted when both
``BRIDGE_DASHBOARD_USER`` and ``BRIDGE_DASHBOARD_PASSWORD`` are set; otherwise ``/rq`` is a 404.
"""

from __future__ import annotations

import hmac

import rq_dashboard
from flask import Flask, Response, request

from config.settings import Settings

PREFIX = "/rq"
REALM = "loyalty-bridge"


def mount_dashboard(app: Flask, settings: Settings) -> bool:
    """Mount rq-dashboard on ``app`` when credentials are configured; True when mounted."""
    if not settings.dashboard_user or settings.dashboard_password is None:
        return False
    user = settings.dashboard_user.encode()
    password = settings.dashboard_password.get_secret_value().encode()
    if not password:
        return False
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)

    @app.before_request
    def require_password() -> Response | None:
        # rq-dashboard's blueprint is one object shared by every app of the process, so the check
        # hangs on the app, not on the blueprint.
        if request.blueprint != rq_dashboard.blueprint.name:
            return None
        auth = request.authorization
        given_user = (auth.username or "").encode() if auth else b""
        given_password = (auth.password or "").encode() if auth else b""
        # Compare both, always, in constant time.
        ok = hmac.compare_digest(given_user, user) & hmac.compare_digest(given_password, password)
        if auth is not None and ok:
            return None
        return Response("Authentication required", 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'})

    return True
