"""The Loyalty.lt Shop API sandbox: its rules, answers, faults and admin endpoints."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from bridge.sandbox import (FailRule, SandboxConfig, SandboxServer, SandboxState, create_sandbox_app,
                            sandbox_of)
from bridge.sandbox.state import CreateTransaction

AUTH = {"X-API-Key": "lty_sandbox_demo", "X-API-Secret": "sandbox-secret"}
JWT = {"Authorization": "Bearer sandbox-jwt-1"}
CREATE = "/en/shop/transactions/create"
DEDUCT = "/en/shop/transactions/deduct-points"
LIST = "/lt/shop/transactions"
EMAIL = "jonas@example.com"


def client_for(clock: Any = None, **config: Any) -> FlaskClient:
    return create_sandbox_app(SandboxConfig(**config), clock=clock).test_client()


def order(client: FlaskClient, order_id: str = "WC-1", total: float = 15.5, email: str | None = EMAIL,
          **extra: Any) -> Any:
    body = {"order_id": order_id, "order_total": total, **extra}
    if email:
        body["user_email"] = email
    return client.post(CREATE, json=body, headers=AUTH)


def deduct(client: FlaskClient, points: int, email: str = EMAIL, **extra: Any) -> Any:
    body = {"user_email": email, "order_id": "WC-1", "refund_id": "R-1", "points": points, **extra}
    return client.post(DEDUCT, json=body, headers=AUTH)


def listing(client: FlaskClient, **query: Any) -> Any:
    return client.get(LIST, query_string=query, headers=AUTH)


def transactions(client: FlaskClient) -> list[dict[str, Any]]:
    return client.get("/_sandbox/state").json["data"]["transactions"]


def balance(client: FlaskClient, email: str = EMAIL) -> int:
    return client.get("/_sandbox/balances", query_string={"email": email}).json["data"]["balance"]


@pytest.fixture
def client() -> FlaskClient:
    return client_for()


# --- award ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("total", "round_up", "expected"), [(15.50, True, 160), (15.55, True, 161),
                                                              (15.55, False, 160), (0.29, False, 7)])
def test_points_rule(total: float, round_up: bool, expected: int) -> None:
    client = client_for(points_per_visit=5, round_points_up=round_up)
    answer = order(client, total=total)
    assert answer.status_code == 200
    data = answer.json["data"]
    assert data["points_awarded"] == expected and data["points_balance"] == expected
    assert data["order_total"] == total and data["currency"] == "EUR"


def test_points_rule_without_flask() -> None:
    state = SandboxState(SandboxConfig(points_per_currency=1, currency_amount=2.5))
    assert state.points_for(9.99) == 3


def test_create_answers_in_the_envelope_and_records_a_purchase(client: FlaskClient) -> None:
    cart = [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}]
    answer = order(client, shop_id=12, cart_items=cart, meta_data={"source": "woocommerce"})
    body = answer.json
    assert body["success"] is True and body["code"] == 200
    assert uuid.UUID(body["request_id"]).version == 4
    data = body["data"]
    assert set(data) == {"transaction_id", "points_awarded", "points_balance", "loyalty_card_id", "card_number",
                         "user_id", "order_total", "currency"}
    [tx] = transactions(client)
    assert tx["id"] == data["transaction_id"] and tx["type"] == "purchase" and tx["status"] == "completed"
    assert tx["reference_number"] == "WC-1" and tx["description"] == "Pirkimas #WC-1" and tx["amount"] == 15.5
    assert tx["metadata"] == {"source": "woocommerce", "points_awarded": 155, "items_count": 2}
    assert tx["shop"] == {"id": 12} and tx["user"]["email"] == EMAIL
    assert tx["loyalty_card"]["number"] == data["card_number"] and tx["created_at"].endswith("Z")


def test_points_override_and_alias(client: FlaskClient) -> None:
    answer = client.post("/lt/shop/transactions/award-points", headers=AUTH,
                         json={"user_email": EMAIL, "order_id": "A-1", "order_total": 100, "points": 7})
    assert answer.json["data"]["points_awarded"] == 7


def test_unknown_user_is_enrolled_or_not_found() -> None:
    assert order(client_for(), email="new@example.com").status_code == 200
    strict = client_for(auto_enroll=False)
    answer = order(strict, email="new@example.com")
    assert answer.status_code == 404 and answer.json["message"] == "User not found"
    assert order(strict, email=None, user_id=999).status_code == 404
    strict.patch("/_sandbox/config", json={"auto_enroll": True})
    assert order(strict, email="new@example.com").status_code == 200
    strict.patch("/_sandbox/config", json={"auto_enroll": False})
    assert order(strict, order_id="WC-2", email="new@example.com").status_code == 200  # now known


def test_duplicate_order_is_409_and_changes_nothing(client: FlaskClient) -> None:
    order(client)
    again = order(client, total=99)
    assert again.status_code == 409
    assert again.json["code"] == "RESOURCE_ALREADY_EXISTS"
    assert again.json["message"] == "Transaction already processed for this order"
    assert balance(client) == 155 and len(transactions(client)) == 1


def test_validation_errors_are_422_by_field(client: FlaskClient) -> None:
    answer = client.post(CREATE, json={"order_total": -1}, headers=AUTH)
    assert answer.status_code == 422 and answer.json["code"] == "VALIDATION_ERROR"
    errors = answer.json["errors"]
    assert errors["order_id"] == ["The order id field is required."]
    assert errors["order_total"] == ["The order total must be at least 0."]
    assert "user_email" in errors
    bad_email = order(client, email="not-an-email")
    assert bad_email.status_code == 422 and "user_email" in bad_email.json["errors"]
    no_total = client.post(CREATE, json={"user_email": EMAIL, "order_id": "X"}, headers=AUTH)
    assert no_total.json["errors"] == {"order_total": ["The order total field is required."]}


def test_redeem_needs_enough_points(client: FlaskClient) -> None:
    order(client)  # 155 points
    short = order(client, order_id="WC-2", points_redeemed=500)
    assert short.status_code == 400 and short.json["code"] == "VALIDATION_ERROR"
    assert short.json["message"] == "Nepakanka taškų nuskaityti. Turimi: 155 taškų"
    assert order(client, order_id="WC-2", total=10, points_redeemed=100).json["data"]["points_balance"] == 155
    assert [tx["type"] for tx in listing(client, reference_number="WC-2").json["data"]] == ["purchase", "redeem"]


# --- deduct -----------------------------------------------------------------------------------

def test_deduct_records_a_negative_refund_and_is_not_deduplicated(client: FlaskClient) -> None:
    order(client)
    first = deduct(client, 50, refund_amount=5, reason="Prekė grąžinta")
    assert first.status_code == 200
    assert first.json["data"]["points_deducted"] == 50 and first.json["data"]["points_balance"] == 105
    assert deduct(client, 50).json["data"]["points_balance"] == 55
    refunds = listing(client, type="refund").json["data"]
    assert [tx["points"] for tx in refunds] == [-50, -50]
    assert refunds[1]["amount"] == 5 and refunds[1]["reference_number"] == "WC-1"
    assert refunds[1]["metadata"] == {"refund_id": "R-1", "reason": "Prekė grąžinta", "points_deducted": 50}


def test_deduct_below_zero_and_unknown_user() -> None:
    loose, strict = client_for(), client_for(allow_negative_balance=False)
    for client in (loose, strict):
        order(client, total=1)  # 10 points
    assert deduct(loose, 30).json["data"]["points_balance"] == -20
    refused = deduct(strict, 30)
    assert refused.status_code == 400 and refused.json["message"] == "Insufficient points"
    assert deduct(loose, 1, email="nobody@example.com").status_code == 404
    missing = loose.post(DEDUCT, json={"user_email": EMAIL, "order_id": "WC-1"}, headers=AUTH)
    assert missing.status_code == 422 and "points" in missing.json["errors"]


def test_deduct_by_card_as_loyalty_lts_own_clients_sent_it(client: FlaskClient) -> None:
    card = order(client).json["data"]["loyalty_card_id"]
    # sdk-php: {card_id, points, description}; no order, no customer.
    php = client.post(DEDUCT, json={"card_id": card, "points": 10, "description": "Refund 1 of WC-1"}, headers=AUTH)
    assert php.status_code == 200 and php.json["data"]["points_balance"] == 145
    # sdk-javascript: {card_id, card_number, points, description, shop_id}.
    number = client.get("/_sandbox/state").json["data"]["users"][0]["cards"][0]["number"]
    js = client.post(DEDUCT, json={"card_id": card, "card_number": number, "points": 5, "description": "x",
                                   "shop_id": 12}, headers=AUTH)
    assert js.status_code == 200
    assert [tx["description"] for tx in listing(client, type="refund").json["data"]] == ["x", "Refund 1 of WC-1"]
    wrong_number = client.post(DEDUCT, json={"card_id": card, "card_number": "000", "points": 1}, headers=AUTH)
    assert wrong_number.status_code == 422 and "card_number" in wrong_number.json["errors"]
    nobody = client.post(DEDUCT, json={"points": 1}, headers=AUTH)
    assert nobody.status_code == 422 and "card id field is required" in str(nobody.json["errors"])


def test_a_deduction_naming_an_order_needs_its_award_on_the_card(client: FlaskClient) -> None:
    card = order(client, order_id="WC-1").json["data"]["loyalty_card_id"]
    order(client, order_id="WC-2", email="other@example.com")
    refused = client.post(DEDUCT, json={"card_id": card, "order_id": "WC-2", "points": 1}, headers=AUTH)
    assert refused.status_code == 422 and refused.json["errors"] == {"order_id": ["No award for order WC-2 on this card."]}
    assert client.post(DEDUCT, json={"card_id": card, "order_id": "WC-1", "points": 1}, headers=AUTH).status_code == 200


def test_docs_listing_files_deductions_under_their_own_reference() -> None:
    client = client_for(deduction_listing="docs")
    card = order(client).json["data"]["loyalty_card_id"]
    client.post(DEDUCT, json={"card_id": card, "order_id": "WC-1", "refund_id": "77", "points": 5,
                              "description": "Refund 77 of WC-1", "reason": "Damaged",
                              "meta_data": {"refund_id": "77", "store": "s"}}, headers=AUTH)
    (tx,) = listing(client, type="refund").json["data"]
    assert tx["reference_number"].startswith("REFUND-") and tx["reference_number"] != "WC-1"
    assert tx["metadata"] == {"source": "api", "points_deducted": 5, "reason": "Damaged"}
    assert tx["description"] == "Refund 77 of WC-1"
    assert listing(client, reference_number="WC-1", type="refund").json["data"] == []


def test_a_slow_commit_changes_now_lists_later_and_answers_too_late() -> None:
    now = [datetime(2026, 11, 27, 12, tzinfo=timezone.utc)]
    app = create_sandbox_app(SandboxConfig(slow_commit_rate=1.0, slow_commit_seconds=5, timeout_seconds=7),
                             clock=lambda: now[0])
    waits: list[float] = []
    sandbox_of(app).faults.sleep = waits.append
    client = app.test_client()
    answer = order(client)
    assert answer.status_code == 504 and waits == [7]                  # the answer comes after the client gave up
    assert balance(client) == 155                                      # but the change is made
    assert listing(client).json["data"] == []                          # and not listed yet
    assert order(client).status_code == 409                            # a retry is refused as a duplicate
    now[0] += timedelta(seconds=5)
    assert [tx["reference_number"] for tx in listing(client).json["data"]] == ["WC-1"]
    assert client.get("/_sandbox/stats").json["data"]["faults"]["slow_commit"] == 1


def test_a_strict_deduct_refuses_every_field_the_sdks_never_sent_laravel_style() -> None:
    client = client_for(strict_deduct=True)
    card = order(client).json["data"]["loyalty_card_id"]
    full = client.post(DEDUCT, json={"card_id": card, "points": 5, "description": "Refund 1 of WC-1", "order_id": "WC-1",
                                     "refund_id": "1", "meta_data": {"store": "s"}}, headers=AUTH)
    assert full.status_code == 422 and full.json["code"] == "VALIDATION_ERROR"
    assert full.json["errors"] == {"meta_data": ["The meta data field is prohibited."],
                                   "order_id": ["The order id field is prohibited."],
                                   "refund_id": ["The refund id field is prohibited."]}
    assert balance(client) == 155                                      # refused: nothing taken
    sdk = client.post(DEDUCT, json={"card_id": card, "points": 5, "description": "Refund 1 of WC-1"}, headers=AUTH)
    assert sdk.status_code == 200 and balance(client) == 150


def test_a_slow_list_shows_every_change_only_after_its_lag() -> None:
    now = [datetime(2026, 11, 27, 12, tzinfo=timezone.utc)]
    client = client_for(clock=lambda: now[0], list_lag_seconds=2)
    assert order(client).status_code == 200                            # answered at once
    assert listing(client).json["data"] == []
    now[0] += timedelta(seconds=2)
    assert [tx["reference_number"] for tx in listing(client).json["data"]] == ["WC-1"]


def test_card_balance_by_id_number_or_user(client: FlaskClient) -> None:
    created = order(client).json["data"]
    url = "/en/shop/loyalty-cards/balance"
    expected = {"card_id": created["loyalty_card_id"], "card_number": created["card_number"], "points": 155}
    for query in ({"card_id": created["loyalty_card_id"]}, {"card_number": created["card_number"]},
                  {"user_id": created["user_id"]}):
        answer = client.get(url, query_string=query, headers=AUTH)
        assert answer.status_code == 200 and answer.json["data"] == expected
    assert client.get(url, headers=AUTH).json["code"] == 1100
    missing = client.get(url, query_string={"card_id": 9999}, headers=AUTH)
    assert missing.status_code == 404 and missing.json["code"] == 1200
    assert client.get(url, query_string={"card_id": created["loyalty_card_id"]}).status_code == 400  # Shop API auth


def test_recent_requests_keep_what_was_asked(client: FlaskClient) -> None:
    listing(client, reference_number="WC-1", type="refund")
    (seen,) = client.get("/_sandbox/requests").json["data"]
    assert seen == {"endpoint": "GET /{locale}/shop/transactions", "path": LIST,
                    "query": {"reference_number": "WC-1", "type": "refund"}, "status": 200}


# --- list -------------------------------------------------------------------------------------

def test_list_filters_and_paging() -> None:
    now = [datetime(2024, 12, 1, 12, tzinfo=timezone.utc)]
    client = client_for(clock=lambda: now[0])
    for n in range(1, 5):
        order(client, order_id=f"WC-{n}", email=f"u{n % 2}@example.com", shop_id=12 if n == 4 else None)
        now[0] += timedelta(days=1)
    deduct(client, 5, email="u1@example.com")  # on Dec 5
    everything = listing(client).json
    assert [tx["id"] for tx in everything["data"]] == sorted((tx["id"] for tx in everything["data"]), reverse=True)
    assert everything["meta"] == {"current_page": 1, "last_page": 1, "per_page": 15, "total": 5}
    assert [tx["reference_number"] for tx in listing(client, reference_number="WC-2").json["data"]] == ["WC-2"]
    assert len(listing(client, type="purchase").json["data"]) == 4
    assert {tx["user"]["email"] for tx in listing(client, user_email="U1@example.com").json["data"]} == {
        "u1@example.com"}
    assert [tx["reference_number"] for tx in listing(client, shop_id=12).json["data"]] == ["WC-4"]
    dated = listing(client, date_from="2024-12-02", date_to="2024-12-03").json["data"]
    assert [tx["reference_number"] for tx in dated] == ["WC-3", "WC-2"]
    page = listing(client, per_page=2, page=3).json
    assert page["meta"] == {"current_page": 3, "last_page": 3, "per_page": 2, "total": 5}
    assert [tx["reference_number"] for tx in page["data"]] == ["WC-1"]
    assert listing(client, per_page=101).status_code == 422
    assert listing(client, date_from="yesterday").status_code == 422


# --- auth and routing -------------------------------------------------------------------------

def test_validate_credentials(client: FlaskClient) -> None:
    url = "/en/shop/validate-credentials"
    good = client.post(url, headers=AUTH).json
    assert good["data"] == {"valid": True, "partner": {"id": 1, "name": "Sandbox Partner", "status": "active"},
                            "environment": "sandbox"}
    wrong = client.post(url, headers={**AUTH, "X-API-Secret": "nope"})
    assert wrong.status_code == 401 and wrong.json["code"] == 1004
    assert "nope" not in wrong.get_data(as_text=True)
    missing = client.post(url, headers={"X-API-Key": "lty_sandbox_demo"})
    assert missing.status_code == 400 and missing.json["code"] == 1010
    assert missing.json["message"] == "API key and secret are required in headers"
    assert client.post(url, headers={**AUTH, "X-API-Key": "key"}).json["code"] == 1011


def test_unknown_locale_and_paths_are_404_in_the_envelope(client: FlaskClient) -> None:
    for path in ("/de/shop/transactions", "/en/shop/nothing-here", "/"):
        answer = client.get(path, headers=AUTH)
        assert answer.status_code == 404 and answer.json["success"] is False and "request_id" in answer.json


# --- JWT card endpoints -----------------------------------------------------------------------

def test_card_award_and_redeem(client: FlaskClient) -> None:
    card_id = order(client).json["data"]["loyalty_card_id"]
    award = client.post("/en/shop/points/award", headers=JWT,
                        json={"card_id": card_id, "points": 50, "transaction_type": "bonus", "description": "Hi"})
    assert award.status_code == 200
    assert award.json["data"]["transaction"]["points_awarded"] == 50
    assert award.json["data"]["balance"] == {"current_points": 205, "previous_points": 155, "tier": "Bronze",
                                             "tier_upgraded": False, "next_tier_points": 795}
    redeem = {"card_id": card_id, "points": 100, "transaction_type": "redeem", "redemption_type": "voucher"}
    answer = client.post("/en/shop/points", headers=JWT, json=redeem)
    assert answer.json["data"]["transaction"]["points_redeemed"] == 100
    assert answer.json["data"]["balance"]["current_points"] == 105
    assert client.post("/en/shop/points", headers=JWT, json={**redeem, "points": 500}).status_code == 400
    assert client.post("/en/shop/points", headers=JWT, json={**redeem, "transaction_type": "bonus"}).status_code == 422
    assert client.post("/en/shop/points", headers={"Authorization": "Bearer forged"}, json=redeem).status_code == 401
    assert client.post("/en/shop/points", headers=AUTH, json=redeem).status_code == 401
    assert client.post("/en/shop/points/award", headers=JWT,
                       json={"card_id": 1, "points": 1, "transaction_type": "manual"}).status_code == 404


# --- faults -----------------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after() -> None:
    client = client_for(rate_limit_per_minute=3)
    answers = [client.post("/en/shop/validate-credentials", headers=AUTH) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3" and answers[0].headers["X-RateLimit-Remaining"] == "2"
    limited = answers[3]
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-RateLimit-Remaining"] == "0" and int(limited.headers["X-RateLimit-Reset"]) > 0
    other_key = {"X-API-Key": "lty_other", "X-API-Secret": "x"}
    assert client.post("/en/shop/validate-credentials", headers=other_key).status_code == 401
    stats = client.get("/_sandbox/stats").json["data"]
    assert stats["rate_limited"] == 1 and stats["by_endpoint"]["POST /{locale}/shop/validate-credentials"]["429"] == 1
    client.post("/_sandbox/reset")
    assert client.post("/en/shop/validate-credentials", headers=AUTH).status_code == 200


def test_a_429_storm_answers_every_call_429_with_its_retry_after_for_its_time() -> None:
    client = client_for(rate_limit_per_minute=0)
    started = client.post("/_sandbox/storm", json={"seconds": 0.3, "retry_after": 2})
    assert started.status_code == 200 and started.json["data"]["retry_after"] == 2
    answers = [order(client, f"WC-{n}") for n in range(3)] + [listing(client)]
    assert [a.status_code for a in answers] == [429] * 4
    assert {a.headers["Retry-After"] for a in answers} == {"2"} and answers[0].json["code"] == "RATE_LIMIT_EXCEEDED"
    assert transactions(client) == []                       # refused before processing
    assert client.get("/_sandbox/stats").json["data"]["faults"]["storm"] == 4
    time.sleep(0.3)
    assert order(client).status_code == 200                 # the storm is over
    assert client.post("/_sandbox/storm", json={"seconds": 0}).status_code == 422


def test_error_rate_refuses_before_processing() -> None:
    client = client_for(error_rate=1)
    answer = order(client)
    assert answer.status_code == 500 and answer.json["success"] is False
    assert transactions(client) == []


def test_error_after_commit_applies_then_answers_500() -> None:
    client = client_for(error_after_commit_rate=1)
    assert order(client).status_code == 500
    assert len(transactions(client)) == 1
    client.patch("/_sandbox/config", json={"error_after_commit_rate": 0})
    assert order(client).status_code == 409  # the retry learns the order had landed
    assert client.get("/_sandbox/stats").json["data"]["faults"]["error_after_commit"] == 1


def test_timeout_waits_then_refuses_without_processing() -> None:
    app = create_sandbox_app(SandboxConfig(timeout_rate=1, timeout_seconds=0.01))
    client = app.test_client()
    answer = order(client)
    assert answer.status_code == 504 and transactions(client) == []


def test_latency_and_timeout_wait_the_configured_time() -> None:
    app = create_sandbox_app(SandboxConfig(latency_ms=250, timeout_rate=1, timeout_seconds=7))
    waits: list[float] = []
    sandbox_of(app).faults.sleep = waits.append
    order(app.test_client())
    assert waits == [0.25, 7]


def test_seeded_error_rate_is_repeatable() -> None:
    def statuses() -> list[int]:
        client = client_for(error_rate=0.5, seed=7, rate_limit_per_minute=0)
        return [client.post("/en/shop/validate-credentials", headers=AUTH).status_code for _ in range(20)]

    first = statuses()
    assert first == statuses() and {200, 500} == set(first)


def test_fail_rules_match_path_and_body_and_count_down() -> None:
    rule = FailRule(path="transactions/create", match={"order_id": "WC-1001"}, status=422, code="VALIDATION_ERROR",
                    message="Bad order", errors={"order_id": ["nope"]}, remaining=2)
    client = client_for(fail_rules=[rule])
    assert order(client, order_id="WC-1002").status_code == 200
    failed = [order(client, order_id="WC-1001") for _ in range(3)]
    assert [a.status_code for a in failed] == [422, 422, 200]
    assert failed[0].json["errors"] == {"order_id": ["nope"]} and failed[0].json["message"] == "Bad order"
    assert client.get("/_sandbox/config").json["data"]["fail_rules"][0]["remaining"] == 0
    client.patch("/_sandbox/config", json={"fail_rules": [{"path": "deduct-points", "status": 503}]})
    assert [deduct(client, 1).status_code for _ in range(3)] == [503, 503, 503]


# --- admin ------------------------------------------------------------------------------------

def test_admin_endpoints(client: FlaskClient) -> None:
    order(client)
    state = client.get("/_sandbox/state").json["data"]
    assert state["partners"] == [{"partner_id": 1, "name": "Sandbox Partner", "api_key": "lty_sandbox_demo"}]
    assert state["users"][0]["email"] == EMAIL and state["users"][0]["balance"] == 155
    assert client.get("/_sandbox/balances").json["data"] == {EMAIL: 155}
    assert client.get("/_sandbox/balances?email=nobody@example.com").status_code == 404
    config = client.get("/_sandbox/config").json["data"]
    assert config["partners"][0]["api_secret"] == "***" and config["rate_limit_per_minute"] == 60
    patched = client.patch("/_sandbox/config", json={"latency_ms": 5, "auto_enroll": False})
    assert patched.json["data"]["latency_ms"] == 5 and patched.json["data"]["auto_enroll"] is False
    assert client.patch("/_sandbox/config", json={"error_rate": 2}).status_code == 422
    assert client.patch("/_sandbox/config", json={"no_such_switch": 1}).status_code == 422
    assert order(client).status_code == 409  # secrets survive a PATCH
    stats = client.get("/_sandbox/stats").json["data"]
    assert stats["by_status"] == {"200": 1, "409": 1} and stats["total"] == 2
    client.post("/_sandbox/reset")
    assert client.get("/_sandbox/state").json["data"]["users"] == []
    assert client.get("/_sandbox/config").json["data"]["latency_ms"] == 5
    client.post("/_sandbox/reset", json={"restore_config": True})
    assert client.get("/_sandbox/config").json["data"]["latency_ms"] == 0
    assert client.get("/_sandbox/stats").json["data"]["total"] == 0


def test_state_is_consistent_under_threads() -> None:
    state = SandboxState(SandboxConfig())
    partner = state.config.partners[0]

    def award(n: int) -> None:
        for i in range(25):
            state.create_purchase(partner, CreateTransaction(user_email=EMAIL, order_id=f"{n}-{i}", order_total=1))

    threads = [threading.Thread(target=award, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({tx.id for tx in state.transactions.values()}) == 200
    assert state.balances(EMAIL)["balance"] == 2000 and len(state.users) == 1


# --- over real HTTP ----------------------------------------------------------------------------

def test_server_over_http() -> None:
    with SandboxServer(SandboxConfig(rate_limit_per_minute=0)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        answer = requests.post(f"{server.url}{CREATE}", headers=AUTH, timeout=5,
                               json={"user_email": EMAIL, "order_id": "WC-9", "order_total": 2})
        assert answer.status_code == 200 and answer.json()["data"]["points_awarded"] == 20
        requests.patch(f"{server.url}/_sandbox/config", json={"timeout_rate": 1}, timeout=5)
        with pytest.raises(requests.ReadTimeout):  # the sandbox sleeps 30 s; stop() wakes it
            requests.post(f"{server.url}/en/shop/validate-credentials", headers=AUTH, timeout=0.2)
        assert server.sandbox.state.balances(EMAIL)["balance"] == 20


def test_the_data_survives_a_restart_with_a_state_file(tmp_path: Any) -> None:
    saved = tmp_path / "sandbox.json"
    first = create_sandbox_app(SandboxConfig(), state_file=saved).test_client()
    assert order(first, "WC-1").status_code == 200 and deduct(first, 50).status_code == 200
    before = first.get("/_sandbox/state").json["data"]
    again = create_sandbox_app(SandboxConfig(), state_file=saved).test_client()   # a new process
    assert again.get("/_sandbox/state").json["data"] == before
    assert order(again, "WC-1").status_code == 409          # it still knows the order
    second = order(again, "WC-2").json["data"]
    assert second["transaction_id"] == max(t["id"] for t in before["transactions"]) + 1
    again.post("/_sandbox/reset")
    assert transactions(create_sandbox_app(SandboxConfig(), state_file=saved).test_client()) == []


def test_an_unreadable_state_file_is_one_clear_error(tmp_path: Any) -> None:
    from bridge.sandbox.persistence import SavedStateError

    saved = tmp_path / "sandbox.json"
    saved.write_text("{not json")
    with pytest.raises(SavedStateError, match="sandbox.json.*--fresh"):
        create_sandbox_app(SandboxConfig(), state_file=saved)
