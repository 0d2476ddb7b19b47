"""An emulated WooCommerce shop: the REST API v3 orders and webhooks, and webhooks that really deliver.

:class:`WooShop` is the shop (pure Python, testable without Flask); :data:`blueprint` serves it under
``/woocommerce/<shop>/wp-json/wc/v3/``, so a store's ``shop_url`` is ``http://<host>/woocommerce/<shop>``.
What it does as WooCommerce does:

- authentication: OAuth 1.0a (one-legged, HMAC-SHA256, signed query) over plain HTTP; HTTP Basic or
  ``consumer_key``/``consumer_secret`` query parameters only over HTTPS; a read-only key cannot
  change webhooks. Errors are WordPress REST errors (``{code, message, data: {status}}``);
- ``GET orders`` with ``modified_after``/``modified_before`` (``dates_are_gmt``), ``per_page`` (≤ 100),
  ``page``, ``orderby``/``order``, ``status``, and the ``X-WP-Total``/``X-WP-TotalPages`` headers;
- webhooks (``GET/POST webhooks``, ``GET/PUT webhooks/<id>``) whose deliveries are signed posts
  (base64 HMAC-SHA256 of the body with the webhook's secret) with the ``X-WC-Webhook-*`` headers; a
  delivery that fails (not 2xx/301/302) counts, and after ``max_failures`` in a row the webhook is
  ``disabled`` until someone sets it ``active`` again. The secret is never shown.

``/woocommerce/<shop>/_emulator/...`` (not in WooCommerce) creates and changes orders, with or
without delivering their webhooks, and shows the shop's state; it also counts how many API requests
ran at once, so tests can check the bridge's one-request-at-a-time promise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, Field
from woocommerce.oauth import OAuth

from bridge.sandbox.deliveries import Deliverer, Outgoing

PAID = {"processing", "completed"}
OAUTH_WINDOW = 15 * 60  # WooCommerce refuses OAuth timestamps more than 15 minutes off


class WooShopConfig(BaseModel):
    """One emulated WooCommerce shop and its REST key pair."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    consumer_key: str = "ck_emulated"
    consumer_secret: str = Field("cs_emulated", repr=False)
    permissions: Literal["read", "write", "read_write"] = "read_write"
    max_failures: int = Field(5, ge=1)


class WooError(Exception):
    """A WordPress REST error answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now() -> datetime:
    return datetime.now(UTC)


def _wc_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _parse_param_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise WooError(400, "rest_invalid_param", f"Invalid parameter(s): {raw!r} is not a valid date.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class WooShop:
    """The shop's orders and webhooks. One lock guards them (the server is threaded)."""

    def __init__(self, config: WooShopConfig, deliverer: Deliverer, base_url: Callable[[], str],
                 clock: Callable[[], datetime] = _now) -> None:
        self.config = config
        self.deliverer = deliverer
        self.base_url = base_url  # the shop's own address, for X-WC-Webhook-Source
        self.clock = clock
        self._lock = threading.Lock()
        self.orders: dict[int, dict[str, Any]] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self._next = {"order": 5000, "webhook": 1, "delivery": 1}
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0

    # --- orders ---

    def _stamp(self, order: dict[str, Any], created: bool) -> None:
        now = self.clock()
        if created:
            order.setdefault("date_created", _wc_time(now))
            order.setdefault("date_created_gmt", _wc_time(now))
        order["date_modified"] = order["date_modified_gmt"] = _wc_time(now)
        if order.get("status") in PAID and not order.get("date_paid"):
            order["date_paid"] = order["date_paid_gmt"] = _wc_time(now)

    def create_order(self, order: dict[str, Any], deliver: bool = True) -> dict[str, Any]:
        """Place an order (the id is the shop's unless given); fires ``order.created``."""
        with self._lock:
            order = dict(order)
            if "id" not in order:
                self._next["order"] += 1
                order["id"] = self._next["order"]
            order.setdefault("number", str(order["id"]))
            order.setdefault("status", "processing")
            order.setdefault("refunds", [])
            self._stamp(order, created=True)
            self.orders[int(order["id"])] = order
        if deliver:
            self.fire("order.created", order)
        return order

    def update_order(self, order_id: int, changes: dict[str, Any], deliver: bool = True) -> dict[str, Any]:
        """Change an order (status, refunds, ...); fires ``order.updated``."""
        with self._lock:
            if order_id not in self.orders:
                raise WooError(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            order = {**self.orders[order_id], **changes}
            self._stamp(order, created=False)
            self.orders[order_id] = order
        if deliver:
            self.fire("order.updated", order)
        return order

    def list_orders(self, args: dict[str, str]) -> tuple[list[dict[str, Any]], int, int]:
        """One page of orders and (total, pages), as ``GET orders`` filters and sorts them."""
        try:
            per_page, page = int(args.get("per_page", 10)), int(args.get("page", 1))
        except ValueError:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): per_page, page") from None
        if not 1 <= per_page <= 100 or page < 1:
            raise WooError(400, "rest_invalid_param", "Invalid parameter(s): per_page must be between 1 (inclusive) "
                                                       "and 100 (inclusive)")
        gmt = args.get("dates_are_gmt", "false").lower() in ("true", "1")
        field = "date_modified_gmt" if gmt else "date_modified"
        after, before = _parse_param_time(args.get("modified_after")), _parse_param_time(args.get("modified_before"))
        statuses = set(filter(None, args.get("status", "any").split(","))) - {"any"}
        orderby = args.get("orderby", "date")
        key_field = {"date": "date_created_gmt", "id": "id", "modified": "date_modified_gmt"}.get(orderby)
        if key_field is None:
            raise WooError(400, "rest_invalid_param", f"Invalid parameter(s): orderby ({orderby})")
        with self._lock:
            found = []
            for order in self.orders.values():
                moment = datetime.fromisoformat(order[field]).replace(tzinfo=UTC)
                if ((after is None or moment > after) and (before is None or moment < before)
                        and (not statuses or order.get("status") in statuses)):
                    found.append(order)
            found.sort(key=lambda o: (o[key_field], o["id"]), reverse=args.get("order", "desc") == "desc")
        total = len(found)
        return found[(page - 1) * per_page:page * per_page], total, max(1, math.ceil(total / per_page))

    # --- webhooks ---

    def webhook_view(self, hook: dict[str, Any]) -> dict[str, Any]:
        """A webhook as the REST API shows it (never its secret)."""
        return {k: v for k, v in hook.items() if k not in ("secret", "failure_count")}

    def create_webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        for required in ("topic", "delivery_url"):
            if not body.get(required):
                raise WooError(400, "rest_missing_callback_param", f"Missing parameter(s): {required}")
        with self._lock:
            hook_id = self._next["webhook"]
            self._next["webhook"] += 1
            now = _wc_time(self.clock())
            topic = str(body["topic"])
            hook = {"id": hook_id, "name": body.get("name") or f"Webhook created on {now}",
                    "status": body.get("status", "active"), "topic": topic, "resource": topic.split(".")[0],
                    "event": topic.split(".")[-1], "hooks": [f"woocommerce_{topic.replace('.', '_')}"],
                    "delivery_url": body["delivery_url"], "secret": body.get("secret") or "",
                    "failure_count": 0, "date_created": now, "date_created_gmt": now, "date_modified": now,
                    "date_modified_gmt": now}
            self.webhooks[hook_id] = hook
            return dict(hook)

    def update_webhook(self, hook_id: int, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            hook = self.webhooks.get(hook_id)
            if hook is None:
                raise WooError(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID.")
            for field in ("name", "status", "delivery_url", "secret", "topic"):
                if field in body:
                    hook[field] = body[field]
            if body.get("status") == "active":
                hook["failure_count"] = 0
            hook["date_modified"] = hook["date_modified_gmt"] = _wc_time(self.clock())
            return dict(hook)

    def fire(self, topic: str, order: dict[str, Any]) -> int:
        """Deliver ``order`` to every active webhook of ``topic``; returns how many deliveries were queued."""
        body = json.dumps(order).encode()
        queued = 0
        with self._lock:
            hooks = [dict(h) for h in self.webhooks.values() if h["topic"] == topic and h["status"] == "active"]
            for hook in hooks:
                delivery = self._next["delivery"]
                self._next["delivery"] += 1
                signature = base64.b64encode(hmac.new(hook["secret"].encode(), body, hashlib.sha256).digest()).decode()
                headers = {"Content-Type": "application/json", "X-WC-Webhook-Source": self.base_url() + "/",
                           "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": hook["resource"],
                           "X-WC-Webhook-Event": hook["event"], "X-WC-Webhook-Signature": signature,
                           "X-WC-Webhook-ID": str(hook["id"]), "X-WC-Webhook-Delivery-ID": str(delivery)}
                self.deliverer.submit(Outgoing(hook["delivery_url"], body, headers,
                                               done=partial(self._delivered, hook["id"])))
                queued += 1
        return queued

    def _delivered(self, hook_id: int, ok: bool, status: int | None) -> None:
        """A delivery's ``Outgoing.done``: only whether it went through counts, not the status."""
        with self._lock:
            hook = self.webhooks.get(hook_id)
            if hook is None:
                return
            if ok:
                hook["failure_count"] = 0
                return
            hook["failure_count"] += 1
            if hook["failure_count"] >= self.config.max_failures and hook["status"] == "active":
                hook["status"] = "disabled"

    # --- authentication ---

    def authenticate(self, method: str, base_url: str, args: dict[str, str], authorization: Any,
                     secure: bool) -> None:
        """Raise a 401 unless the request carries this shop's key pair the way WooCommerce accepts it."""
        key, secret = self.config.consumer_key, self.config.consumer_secret
        if secure and authorization is not None and authorization.type == "basic":
            given = (authorization.username or "", authorization.password or "")
        elif secure and "consumer_key" in args:
            given = (args.get("consumer_key", ""), args.get("consumer_secret", ""))
        elif "oauth_signature" in args:
            self._check_oauth(method, base_url, args)
            return
        else:
            raise WooError(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if not hmac.compare_digest(given[0], key):
            raise WooError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if not hmac.compare_digest(given[1], secret):
            raise WooError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")

    def _check_oauth(self, method: str, base_url: str, args: dict[str, str]) -> None:
        if not hmac.compare_digest(args.get("oauth_consumer_key", ""), self.config.consumer_key):
            raise WooError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        try:
            stamp = int(args.get("oauth_timestamp", "0"))
        except ValueError:
            stamp = 0
        if abs(time.time() - stamp) > OAUTH_WINDOW:
            raise WooError(401, "woocommerce_rest_authentication_error", "Invalid timestamp.")
        signer = OAuth(url=base_url, consumer_key=self.config.consumer_key,
                       consumer_secret=self.config.consumer_secret, version="wc/v3", method=method)
        params = {k: v for k, v in args.items() if k != "oauth_signature"}
        expected = signer.generate_oauth_signature(params, base_url)
        if not hmac.compare_digest(expected, args.get("oauth_signature", "")):
            raise WooError(401, "woocommerce_rest_authentication_error",
                           "Invalid signature - provided signature does not match.")

    def may_write(self) -> bool:
        return self.config.permissions in ("write", "read_write")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"platform": "woocommerce", "name": self.config.name, "orders": len(self.orders),
                    "webhooks": [{**self.webhook_view(h), "failure_count": h["failure_count"]}
                                 for h in self.webhooks.values()],
                    "requests": self.requests, "max_in_flight": self.max_in_flight}

    def request_started(self) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def request_ended(self) -> None:
        with self._lock:
            self.in_flight -= 1


# --- HTTP ------------------------------------------------------------------------------------------

blueprint = Blueprint("woocommerce_emulator", __name__, url_prefix="/woocommerce/<shop>")
EXTENSION = "shop_emulators"


def _shop(name: str) -> WooShop:
    shop = current_app.extensions[EXTENSION].woocommerce.get(name)
    if shop is None:
        raise WooError(404, "rest_no_route", "No route was found matching the URL and request method.")
    return shop


def _error(exc: WooError) -> Response:
    response = jsonify(code=exc.code, message=exc.message, data={"status": exc.status})
    response.status_code = exc.status
    return response


def _api(name: str, write: bool = False) -> WooShop:
    shop = _shop(name)
    shop.authenticate(request.method, request.base_url, request.args.to_dict(), request.authorization,
                      request.is_secure)
    if write and not shop.may_write():
        raise WooError(401, "woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources.")
    return shop


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise WooError(400, "rest_invalid_json", "Invalid JSON body passed.")
    return body


@blueprint.errorhandler(WooError)
def _woo_error(exc: WooError) -> Response:
    return _error(exc)


@blueprint.before_request
def _count_in() -> None:
    shop = current_app.extensions[EXTENSION].woocommerce.get((request.view_args or {}).get("shop", ""))
    if shop is not None and "/wp-json/" in request.path:
        shop.request_started()
        request.environ["emulator.woo_shop"] = shop


@blueprint.teardown_request
def _count_out(_: BaseException | None) -> None:
    shop = request.environ.pop("emulator.woo_shop", None)
    if shop is not None:
        shop.request_ended()


@blueprint.get("/wp-json/wc/v3/orders")
def list_orders(shop: str) -> Response:
    page, total, pages = _api(shop).list_orders(request.args.to_dict())
    response = jsonify(page)
    response.headers.update({"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)})
    return response


@blueprint.get("/wp-json/wc/v3/webhooks")
def list_webhooks(shop: str) -> Response:
    state = _api(shop)
    hooks = sorted(state.webhooks.values(), key=lambda h: h["id"])
    per_page, page = int(request.args.get("per_page", 10)), int(request.args.get("page", 1))
    response = jsonify([state.webhook_view(h) for h in hooks[(page - 1) * per_page:page * per_page]])
    response.headers.update({"X-WP-Total": str(len(hooks)),
                             "X-WP-TotalPages": str(max(1, math.ceil(len(hooks) / per_page)))})
    return response


@blueprint.post("/wp-json/wc/v3/webhooks")
def create_webhook(shop: str) -> Response:
    state = _api(shop, write=True)
    response = jsonify(state.webhook_view(state.create_webhook(_json_body())))
    response.status_code = 201
    return response


@blueprint.route("/wp-json/wc/v3/webhooks/<int:hook_id>", methods=["PUT", "POST", "PATCH"])
def update_webhook(shop: str, hook_id: int) -> Response:
    state = _api(shop, write=True)
    return jsonify(state.webhook_view(state.update_webhook(hook_id, _json_body())))


@blueprint.get("/wp-json/wc/v3/webhooks/<int:hook_id>")
def get_webhook(shop: str, hook_id: int) -> Response:
    state = _api(shop)
    hook = state.webhooks.get(hook_id)
    if hook is None:
        raise WooError(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID.")
    return jsonify(state.webhook_view(hook))


@blueprint.route("/wp-json/<path:rest>", methods=["GET", "POST", "PUT", "DELETE"])
def no_route(shop: str, rest: str) -> Response:
    _shop(shop)
    raise WooError(404, "rest_no_route", "No route was found matching the URL and request method.")


# --- the emulator's own controls (not WooCommerce) ---

@blueprint.post("/_emulator/orders")
def emulator_create_order(shop: str) -> Response:
    deliver = request.args.get("deliver", "1") not in ("0", "false")
    order = _shop(shop).create_order(_json_body(), deliver=deliver)
    response = jsonify(order)
    response.status_code = 201
    return response


@blueprint.put("/_emulator/orders/<int:order_id>")
def emulator_update_order(shop: str, order_id: int) -> Response:
    deliver = request.args.get("deliver", "1") not in ("0", "false")
    return jsonify(_shop(shop).update_order(order_id, _json_body(), deliver=deliver))


@blueprint.get("/_emulator/state")
def emulator_state(shop: str) -> Response:
    return jsonify(_shop(shop).snapshot())
