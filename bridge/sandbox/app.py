"""The sandbox's web app: the Shop API's routes in its envelope, faults, and admin endpoints.

``create_sandbox_app`` is the only place the app is assembled; its state and faults live on
``app.extensions[EXTENSION]`` (a :class:`Sandbox`), never in module globals.

Routes (``<locale>`` is ``en`` or ``lt``):
  Shop API auth (X-API-Key, X-API-Secret): POST /<locale>/shop/validate-credentials,
  POST .../transactions/create (alias .../transactions/award-points), POST .../transactions/deduct-points,
  GET .../transactions, GET .../loyalty-cards/balance.
  JWT auth (``Authorization: Bearer sandbox-jwt-<partner_id>``): POST .../points/award, POST .../points.
  Admin (no auth, not in the real API): /_sandbox/state, /_sandbox/balances, /_sandbox/config,
  /_sandbox/reset, /_sandbox/stats, /_sandbox/requests (the last requests, with their queries),
  /_sandbox/storm (POST {"seconds", "retry_after"}: a 429 storm).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from pydantic import BaseModel, Field, ValidationError
from werkzeug.exceptions import HTTPException

from bridge.sandbox.faults import Decision, Faults
from bridge.sandbox.persistence import StateFile
from bridge.sandbox.state import (BalanceQuery, CardAward, CardRedeem, CreateTransaction, DeductPoints, ListQuery,
                                  PartnerCredentials, SandboxConfig, SandboxError, SandboxState, prohibited_fields)

EXTENSION = "loyalty_sandbox"
JWT_PREFIX = "sandbox-jwt-"  # the sandbox's bearer tokens: "sandbox-jwt-<partner_id>"
ADMIN_PREFIX = "/_sandbox"
Model = TypeVar("Model", bound=BaseModel)

# Laravel-style messages, as the real API words its 422 errors; other pydantic errors keep their text.
MESSAGES = {
    "missing": "The {field} field is required.",
    "greater_than_equal": "The {field} must be at least {ge}.",
    "greater_than": "The {field} must be greater than {gt}.",
    "less_than_equal": "The {field} may not be greater than {le}.",
    "string_too_short": "The {field} must be at least {min_length} characters.",
    "string_too_long": "The {field} may not be greater than {max_length} characters.",
    "literal_error": "The selected {field} is invalid.",
    "int_parsing": "The {field} must be an integer.",
    "float_parsing": "The {field} must be a number.",
    "date_from_datetime_parsing": "The {field} is not a valid date.",
}


@dataclass
class Sandbox:
    """What one sandbox app holds: its data, its faults and the configuration it started with."""

    state: SandboxState
    faults: Faults
    initial: SandboxConfig
    saved: StateFile | None = None  # where the data is kept across restarts (`bridge dev`)

    @property
    def config(self) -> SandboxConfig:
        return self.state.config

    def configure(self, config: SandboxConfig) -> None:
        """Switch to ``config`` at runtime (faults, rules, switches, partners)."""
        self.state.config = config
        self.faults.configure(config)

    def reset(self, restore_config: bool = False) -> None:
        """Forget all data, counts and rate-limit windows; optionally go back to the first config."""
        if restore_config:
            self.configure(self.initial.model_copy(deep=True))
        self.state.reset()
        self.faults.reset()


def sandbox_of(app: Flask) -> Sandbox:
    """The :class:`Sandbox` of an app made by :func:`create_sandbox_app`."""
    return app.extensions[EXTENSION]


def _sandbox() -> Sandbox:
    return sandbox_of(current_app)


def envelope(data: Any = None, message: str = "OK", status: int = 200, code: str | int | None = None,
             errors: Any = None, meta: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> Response:
    """An answer in the API's envelope: {success, message, code, request_id, data, [errors], [meta]}."""
    body: dict[str, Any] = {"success": status < 400, "message": message, "code": status if code is None else code,
                            "request_id": str(uuid.uuid4()), "data": data}
    if errors is not None:
        body["errors"] = errors
    if meta is not None:
        body["meta"] = meta
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def parse(model: type[Model], data: Any) -> Model:
    """Validate ``data`` into ``model``, or raise a 422 with {field: [messages]}."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"]) or "body"
            template = MESSAGES.get(err["type"])
            ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in err.get("ctx", {}).items()}
            text = template.format(field=name.replace("_", " "), **ctx) if template else err["msg"]
            errors.setdefault(name, []).append(text)
        raise SandboxError(422, "Validation failed", "VALIDATION_ERROR", errors) from None


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _partner() -> PartnerCredentials:
    """The partner whose X-API-Key / X-API-Secret came with the request."""
    key, secret = request.headers.get("X-API-Key"), request.headers.get("X-API-Secret")
    if not key or not secret:
        raise SandboxError(400, "API key and secret are required in headers", 1010)
    if not key.startswith("lty_"):
        raise SandboxError(400, 'Invalid API key format. Must start with "lty_"', 1011)
    partner = _sandbox().state.authenticate(key, secret)
    if partner is None:
        raise SandboxError(401, "Partner not authenticated", 1004)
    return partner


def _jwt_partner() -> PartnerCredentials:
    """The partner named by a sandbox bearer token, ``sandbox-jwt-<partner_id>``."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    suffix = token.removeprefix(JWT_PREFIX)
    partner = _sandbox().state.partner(int(suffix)) if token.startswith(JWT_PREFIX) and suffix.isdigit() else None
    if partner is None:
        raise SandboxError(401, "Unauthenticated.", "UNAUTHENTICATED")
    return partner


# --- the Shop API ------------------------------------------------------------------------------

shop = Blueprint("shop", __name__, url_prefix="/<any(en, lt):locale>/shop")


@shop.url_value_preprocessor
def _drop_locale(endpoint: str | None, values: dict[str, Any] | None) -> None:
    if values:
        values.pop("locale", None)  # answers are the same in both locales


@shop.before_request
def _apply_faults() -> Response | None:
    """Latency, rate limit, timeout, errors and fail rules, before the request is processed."""
    identity = request.headers.get("X-API-Key") or request.headers.get("Authorization") or request.remote_addr
    decision = g.sandbox_decision = _sandbox().faults.before(str(identity), request.path, _body())
    if refusal := decision.refusal:
        return envelope(None, refusal.message, refusal.status, refusal.code, refusal.errors, headers=refusal.headers)
    return None


@shop.post("/validate-credentials")
def validate_credentials() -> Response:
    partner = _partner()
    return envelope({"valid": True, "partner": {"id": partner.partner_id, "name": partner.name, "status": "active"},
                     "environment": "sandbox"}, "Credentials are valid")


@shop.post("/transactions/create")
@shop.post("/transactions/award-points")
def create_transaction() -> Response:
    partner = _partner()
    data = _sandbox().state.create_purchase(partner, parse(CreateTransaction, _body()), _hidden_for())
    return envelope(data, "Points awarded successfully")


@shop.post("/transactions/deduct-points")
def deduct_points() -> Response:
    partner = _partner()
    body = _body()
    if _sandbox().config.strict_deduct and (errors := prohibited_fields(body)):
        raise SandboxError(422, "The given data was invalid.", "VALIDATION_ERROR", errors)
    data = _sandbox().state.deduct(partner, parse(DeductPoints, body), _hidden_for())
    return envelope(data, "Points deducted successfully")


def _hidden_for() -> float:
    """How long the list will not show this request's change (a slow commit, a slow list), in seconds."""
    config = _sandbox().config
    decision: Decision | None = g.get("sandbox_decision")
    slow = config.slow_commit_seconds if decision is not None and decision.slow_commit else 0.0
    return max(slow, config.list_lag_seconds)


@shop.get("/loyalty-cards/balance")
def card_balance() -> Response:
    partner = _partner()
    data = _sandbox().state.balance(partner, parse(BalanceQuery, request.args.to_dict()))
    return envelope(data, "Balance retrieved successfully")


@shop.get("/transactions")
def list_transactions() -> Response:
    partner = _partner()
    page, meta = _sandbox().state.list_transactions(partner, parse(ListQuery, request.args.to_dict()))
    return envelope(page, "Transactions retrieved successfully", meta=meta)


@shop.post("/points/award")
def award_points() -> Response:
    partner = _jwt_partner()
    return envelope(_sandbox().state.card_change(partner, parse(CardAward, _body())), "Points awarded successfully")


@shop.post("/points")
def redeem_points() -> Response:
    partner = _jwt_partner()
    return envelope(_sandbox().state.card_change(partner, parse(CardRedeem, _body())), "Points redeemed successfully")


# --- admin endpoints (tests, demos, benchmarks) ------------------------------------------------

admin = Blueprint("sandbox_admin", __name__, url_prefix=ADMIN_PREFIX)


def _public_config(config: SandboxConfig) -> dict[str, Any]:
    dump = config.model_dump()
    for partner in dump["partners"]:
        partner["api_secret"] = "***"  # secrets never go into answers, even the sandbox's
    return dump


@admin.get("/state")
def admin_state() -> Response:
    return envelope(_sandbox().state.snapshot())


@admin.get("/balances")
def admin_balances() -> Response:
    state = _sandbox().state
    if email := request.args.get("email"):
        return envelope(state.balances(email))
    snapshot = state.snapshot()
    return envelope({user["email"]: user["balance"] for user in snapshot["users"]})


@admin.get("/config")
def admin_config() -> Response:
    return envelope(_public_config(_sandbox().config))


@admin.patch("/config")
def admin_patch_config() -> Response:
    sandbox = _sandbox()
    sandbox.configure(parse(SandboxConfig, {**sandbox.config.model_dump(), **_body()}))
    return envelope(_public_config(sandbox.config), "Configuration updated")


@admin.post("/reset")
def admin_reset() -> Response:
    _sandbox().reset(restore_config=bool(_body().get("restore_config")))
    return envelope(None, "Sandbox reset")


class StormRequest(BaseModel):
    """Body of POST /_sandbox/storm."""

    seconds: float = Field(gt=0)
    retry_after: int = Field(1, ge=0)


@admin.post("/storm")
def admin_storm() -> Response:
    storm = parse(StormRequest, _body())
    until = _sandbox().faults.start_storm(storm.seconds, storm.retry_after)
    return envelope({"until": until, "retry_after": storm.retry_after}, "429 storm started")


@admin.get("/requests")
def admin_requests() -> Response:
    return envelope(_sandbox().state.recent_requests())


@admin.get("/stats")
def admin_stats() -> Response:
    sandbox = _sandbox()
    injected = dict(sandbox.faults.injected)
    return envelope({**sandbox.state.request_counts(), "rate_limited": injected.get("rate_limited", 0),
                     "faults": injected})


# --- assembly ---------------------------------------------------------------------------------

def _stats_key() -> str:
    if request.url_rule is None:
        return f"{request.method} (unmatched)"
    return f"{request.method} " + re.sub(r"^/(en|lt)/", "/{locale}/", request.path)


def _finish(response: Response) -> Response:
    """Save the data after a change, lose the answer of a committed change when asked to, add
    rate-limit headers, count the request."""
    sandbox = _sandbox()
    if sandbox.saved is not None and request.method != "GET":
        sandbox.saved.save(sandbox.state)  # even a refused answer: a lost answer's change happened
    if request.path.startswith(ADMIN_PREFIX + "/"):
        return response
    decision: Decision | None = g.get("sandbox_decision")
    if decision is not None:
        if decision.fail_after_commit and response.status_code < 400:
            sandbox.faults.note("error_after_commit")
            response = envelope(None, "Server Error", 500, "SERVER_ERROR")
        elif decision.slow_commit and response.status_code < 400:
            late = sandbox.faults.slow_answer()
            response = envelope(None, late.message, late.status, late.code)
        response.headers.update(decision.headers)
    sandbox.state.record_request(_stats_key(), response.status_code, request.path, request.args.to_dict())
    return response


def _sandbox_error(exc: SandboxError) -> Response:
    return envelope(None, exc.message, exc.status, exc.code, exc.errors)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return envelope(None, "Not found" if status == 404 else exc.name, status, "NOT_FOUND" if status == 404 else None)


def create_sandbox_app(config: SandboxConfig | None = None, *,
                       clock: Callable[[], datetime] | None = None, state_file: Path | None = None) -> Flask:
    """Build a sandbox app. ``config`` is copied (fail-rule counts change at runtime); ``clock``
    (returning aware UTC datetimes) stamps transactions, for tests of date filters; with
    ``state_file``, the data saved there is read now and saved after every change."""
    config = (config or SandboxConfig()).model_copy(deep=True)
    state = SandboxState(config, clock)
    saved = StateFile(state_file) if state_file is not None else None
    if saved is not None:
        saved.load(state)
    app = Flask("bridge.sandbox")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = Sandbox(state, Faults(config), initial=config.model_copy(deep=True), saved=saved)
    app.register_blueprint(shop)
    app.register_blueprint(admin)
    app.after_request(_finish)
    app.register_error_handler(SandboxError, _sandbox_error)
    app.register_error_handler(HTTPException, _http_error)
    return app
