"""The Loyalty.lt client against ``responses``: bodies, headers, paging, and every kind of failure."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses
from pydantic import ValidationError as PydanticValidationError
from responses import matchers

from tests.conftest import fixture_bytes

from workers.loyalty import (
    AlreadyDone,
    AuthenticationError,
    AwardPointsRequest,
    BalanceQuery,
    CartItem,
    CreateTransactionRequest,
    DeductPointsRequest,
    LoyaltyClient,
    LoyaltyError,
    NotFoundError,
    PermanentError,
    RateLimited,
    RedeemPointsRequest,
    RetryableError,
    TransactionFilters,
    ValidationError,
)

BASE = "https://api.loyalty.test"
KEY, SECRET = "lty_unit_key", "unit-secret-never-shown"
EMAIL = "jonas@example.com"
CREATE = f"{BASE}/lt/shop/transactions/create"
LIST = f"{BASE}/lt/shop/transactions"
Seen = list[tuple[str, int | None, float]]


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as m:
        yield m


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
def client(seen: Seen) -> LoyaltyClient:
    return LoyaltyClient(BASE, KEY, SECRET, "lt", connect_timeout=1.5, read_timeout=7.0,
                         on_response=lambda endpoint, status, seconds: seen.append((endpoint, status, seconds)))


def ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"success": True, "message": "OK", "code": 200, "request_id": "req-1", "data": data, **extra}


def page(rows: list[dict[str, Any]], current: int = 1, last: int = 1) -> dict[str, Any]:
    return ok(rows, meta={"current_page": current, "last_page": last, "per_page": 100, "total": len(rows)})


def order(**kw: Any) -> CreateTransactionRequest:
    return CreateTransactionRequest(**{"user_email": EMAIL, "order_id": "WC-1", "order_total": Decimal("15.50"), **kw})


def body_of(call: Any) -> Any:
    return json.loads(call.request.body)


# --- happy paths: exactly what is sent, and what comes back ----------------------------------------

def test_create_transaction_sends_the_exact_body_and_headers(mock: responses.RequestsMock, client: LoyaltyClient,
                                                            seen: Seen) -> None:
    mock.post(CREATE, json=ok({
        "transaction_id": 12345, "points_awarded": 160, "points_balance": 1750, "loyalty_card_id": 567,
        "card_number": "123-456-789", "user_id": 123, "order_total": 15.5, "currency": "EUR", "new_field": 1}))
    result = client.create_transaction(order(
        shop_id=12, points_redeemed=500, points_discount_amount=Decimal("5"), description="Order WC-1",
        cart_items=[CartItem(product_id=101, product_name="Beans", quantity=2, unit_price=Decimal("7.75"),
                             total_price=Decimal("15.50"), sku="B-1", category="Coffee")],
        meta_data={"platform": "woocommerce"}))
    assert (result.transaction_id, result.points_awarded, result.points_balance, result.user_id) == (12345, 160, 1750, 123)
    assert (result.loyalty_card_id, result.card_number, result.order_total, result.currency) == \
        (567, "123-456-789", Decimal("15.5"), "EUR")
    assert body_of(mock.calls[0]) == {
        "user_email": EMAIL, "order_id": "WC-1", "order_total": 15.5, "currency": "EUR", "description": "Order WC-1",
        "shop_id": 12, "points_redeemed": 500, "points_discount_amount": 5.0,
        "cart_items": [{"product_id": 101, "product_name": "Beans", "quantity": 2, "unit_price": 7.75,
                        "total_price": 15.5, "sku": "B-1", "category": "Coffee"}],
        "meta_data": {"platform": "woocommerce"}}
    request = mock.calls[0].request
    assert request.headers["X-API-Key"] == KEY and request.headers["X-API-Secret"] == SECRET
    assert request.headers["Accept"] == request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("loyalty-bridge/")
    assert "Authorization" not in request.headers
    assert request.req_kwargs["timeout"] == (1.5, 7.0)
    assert seen[0][:2] == ("transactions/create", 200)


def test_minimal_create_omits_unset_fields_and_sends_money_as_numbers(mock: responses.RequestsMock,
                                                                     client: LoyaltyClient) -> None:
    mock.post(CREATE, json=ok({"transaction_id": 1}))
    client.create_transaction(CreateTransactionRequest(user_id=7, order_id="WC-2", order_total=Decimal("10.005")))
    assert body_of(mock.calls[0]) == {"user_id": 7, "order_id": "WC-2", "order_total": 10.01, "currency": "EUR"}


@pytest.mark.parametrize(("model", "fields", "text"), [
    (CreateTransactionRequest, {"order_id": "WC-1", "order_total": 1}, "user_email or user_id"),
    (CreateTransactionRequest, {"user_id": 1, "order_id": "WC-1", "order_total": -1}, "greater than or equal"),
    (CreateTransactionRequest, {"user_id": 1, "order_id": "", "order_total": 1}, "at least 1 character"),
    (CreateTransactionRequest, {"user_id": 1, "order_id": "W", "order_total": 1, "colour": "red"}, "Extra inputs"),
    (DeductPointsRequest, {"order_id": "WC-1", "points": 1, "description": "d"}, "card_id, user_id or user_email"),
    (DeductPointsRequest, {"card_id": 1, "order_id": "WC-1", "points": 0, "description": "d"}, "greater than 0"),
    (DeductPointsRequest, {"card_id": 1, "order_id": "WC-1", "points": 1}, "description"),
    (TransactionFilters, {"per_page": 101}, "less than or equal"),
    (TransactionFilters, {"type": "gift"}, "purchase"),
    (AwardPointsRequest, {"card_id": 1, "points": 0, "transaction_type": "bonus"}, "greater than 0"),
    (AwardPointsRequest, {"card_id": 1, "points": 1, "transaction_type": "bonus", "description": "x" * 256},
     "at most 255"),
    (RedeemPointsRequest, {"card_id": 1, "points": 1, "redemption_type": "gift"}, "purchase_discount"),
])
def test_requests_are_checked_before_they_are_sent(model: Any, fields: dict[str, Any], text: str) -> None:
    with pytest.raises(PydanticValidationError, match=text):
        model(**fields)


def test_deduct_points_body(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/deduct-points",
              json=ok({"transaction_id": 7, "points_deducted": 48, "points_balance": 100}))
    result = client.deduct_points(DeductPointsRequest(
        card_id=501, card_number="000-000-501", user_id=77, points=48, description="Refund 4301 of WC-1", shop_id=3,
        order_id="WC-1", refund_id="4301", refund_amount=Decimal("4.84"), currency="EUR", reason="broken",
        meta_data={"kind": "refund"}))
    assert (result.transaction_id, result.points_deducted, result.points_balance) == (7, 48, 100)
    body = body_of(mock.calls[0])
    assert body == {
        "card_id": 501, "card_number": "000-000-501", "user_id": 77, "points": 48,
        "description": "Refund 4301 of WC-1", "shop_id": 3, "order_id": "WC-1", "refund_id": "4301",
        "refund_amount": 4.84, "currency": "EUR", "reason": "broken", "meta_data": {"kind": "refund"}}
    # What Loyalty.lt's own clients posted to this endpoint (REFERENCE.md): every field is here.
    assert {"card_id", "points", "description"} <= body.keys()                                  # sdk-php
    assert {"card_id", "card_number", "points", "description", "shop_id"} <= body.keys()      # sdk-javascript


def test_deduct_points_sdk_body_is_only_what_the_sdks_sent(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/deduct-points", json=ok({"transaction_id": 8}))
    request = DeductPointsRequest(card_id=501, card_number="000-000-501", user_id=77, points=48, description="Refund 1 of WC-1",
                                  order_id="WC-1", refund_id="1", meta_data={"kind": "refund"})
    client.deduct_points(request, body="sdk")
    # sdk-php's deductPoints(int $cardId, int $points, ?string $description), the one body both clients shared.
    assert body_of(mock.calls[0]) == {"card_id": 501, "points": 48, "description": "Refund 1 of WC-1"}
    with pytest.raises(ValueError, match="card_id is unknown"):
        DeductPointsRequest(user_id=77, points=1, description="d", order_id="WC-1").body("sdk")


def test_card_balance_reads_the_published_answer(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.get(f"{BASE}/lt/shop/loyalty-cards/balance", body=fixture_bytes("loyalty", "docs_loyalty_cards_balance_200"),
             content_type="application/json", match=[matchers.query_param_matcher({"card_id": "567"})])
    balance = client.card_balance(BalanceQuery(card_id=567))
    assert (balance.card_id, balance.card_number, balance.points) == (567, "123-456-789", 1250)
    assert mock.calls[0].request.headers["X-API-Secret"] == SECRET
    with pytest.raises(PydanticValidationError, match="card_id, card_number or user_id"):
        BalanceQuery()


def test_deduct_points_answer_is_read_leniently(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/deduct-points", json=ok({"deducted": True}))
    result = client.deduct_points(DeductPointsRequest(card_id=1, order_id="WC-1", points=1, description="d"))
    assert result.transaction_id is None and result.model_extra == {"deducted": True}


def test_list_sends_every_filter(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.get(LIST, json=page([{
        "id": 1235, "type": "refund", "points": -50, "amount": 0, "currency": "EUR", "description": "Grąžinimas",
        "reference_number": "WC-1", "status": "completed", "user": {"id": 124, "name": "P", "email": EMAIL},
        "loyalty_card": {"id": 568, "number": "234-567-890"}, "shop": None, "metadata": {"reason": "x"},
        "transaction_date": "2024-12-08T10:15:00.000Z", "created_at": "2024-12-08T10:15:00.000Z", "later": 1}]))
    filters = TransactionFilters(user_id=1, user_email=EMAIL, loyalty_card_id=2, shop_id=3, staff_id=4,
                                 category_id=5, reference_number="WC-1", type="refund",
                                 date_from=date(2026, 11, 1), date_to=date(2026, 11, 30), per_page=20, page=2)
    result = client.list_transactions(filters)
    assert mock.calls[0].request.url == (
        f"{LIST}?user_id=1&user_email=jonas%40example.com&loyalty_card_id=2&shop_id=3&staff_id=4&category_id=5"
        "&reference_number=WC-1&type=refund&date_from=2026-11-01&date_to=2026-11-30&per_page=20&page=2")
    tx = result.data[0]
    assert (result.meta.total, tx.points, tx.amount, tx.shop, tx.metadata) == (1, -50, Decimal("0"), None, {"reason": "x"})
    assert tx.user is not None and tx.user.email == EMAIL
    assert tx.loyalty_card is not None and tx.loyalty_card.number == "234-567-890"


def test_list_without_filters_asks_for_the_default_page(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.get(LIST, match=[matchers.query_string_matcher("per_page=15&page=1")], json=page([]))
    assert client.list_transactions().data == []


def test_iter_walks_every_page(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    for n in (1, 2, 3):
        mock.get(LIST, match=[matchers.query_param_matcher({"type": "purchase", "per_page": "100", "page": str(n)})],
                 json=page([{"id": n * 10 + i} for i in range(2)], current=n, last=3))
    assert [tx.id for tx in client.iter_transactions(TransactionFilters(type="purchase"))] == [10, 11, 20, 21, 30, 31]
    assert len(mock.calls) == 3


def test_iter_stops_even_when_the_server_repeats_its_page_number(mock: responses.RequestsMock,
                                                                 client: LoyaltyClient) -> None:
    for n in (1, 2):
        mock.get(LIST, match=[matchers.query_param_matcher({"per_page": "100", "page": str(n)})],
                 json=page([{"id": n}], current=1, last=2))
    assert [tx.id for tx in client.iter_transactions()] == [1, 2]


def test_find_transactions_asks_for_the_reference_and_checks_the_rows(mock: responses.RequestsMock,
                                                                      client: LoyaltyClient) -> None:
    mock.get(LIST, match=[matchers.query_param_matcher({"reference_number": "WC-9", "type": "refund",
                                                        "per_page": "100", "page": "1"})],
             json=page([{"id": 1, "type": "refund", "reference_number": "WC-9"},
                        {"id": 2, "type": "refund", "reference_number": "WC-99"},
                        {"id": 3, "type": "purchase", "reference_number": "WC-9"}]))
    assert [t.id for t in client.find_transactions("WC-9", type="refund")] == [1]


def test_validate_credentials(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/validate-credentials", json=ok({
        "valid": True, "environment": "staging", "partner": {"id": 45, "name": "Coffee", "status": "active"}}))
    info = client.validate_credentials()
    assert info.valid and info.environment == "staging"
    assert info.partner is not None and (info.partner.id, info.partner.name, info.partner.status) == (45, "Coffee", "active")
    assert mock.calls[0].request.headers["X-API-Key"] == KEY and mock.calls[0].request.body is None


def test_card_endpoints_send_exact_bodies_with_the_bearer_token(mock: responses.RequestsMock,
                                                                client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/points/award", json=ok({
        "transaction": {"id": 12345, "points_awarded": 50},
        "balance": {"current_points": 1300, "previous_points": 1250, "tier": "Gold", "tier_upgraded": False}}))
    mock.post(f"{BASE}/lt/shop/points", json=ok({
        "transaction": {"id": 12347, "points_redeemed": 100},
        "balance": {"current_points": 1200, "previous_points": 1300, "points_redeemed": 100, "tier": "Gold"}}))
    awarded = client.award_card_points("jwt-1", AwardPointsRequest(
        card_id=123, points=50, transaction_type="purchase", purchase_amount=Decimal("25.99"),
        description="Coffee", metadata={"order_id": "ORD-1"}))
    redeemed = client.redeem_card_points("jwt-1", RedeemPointsRequest(
        card_id=123, points=100, redemption_type="purchase_discount", purchase_amount=Decimal("50"),
        discount_amount=Decimal("5.00")))
    assert awarded.balance is not None and (awarded.balance.current_points, awarded.balance.tier) == (1300, "Gold")
    assert redeemed.balance is not None and redeemed.balance.previous_points == 1300
    assert redeemed.transaction == {"id": 12347, "points_redeemed": 100}
    assert body_of(mock.calls[0]) == {"card_id": 123, "points": 50, "transaction_type": "purchase",
                                      "purchase_amount": 25.99, "description": "Coffee",
                                      "metadata": {"order_id": "ORD-1"}}
    assert body_of(mock.calls[1]) == {"card_id": 123, "points": 100, "transaction_type": "redeem",
                                      "redemption_type": "purchase_discount", "purchase_amount": 50.0,
                                      "discount_amount": 5.0}
    for call in mock.calls:
        assert call.request.headers["Authorization"] == "Bearer jwt-1"
        assert "X-API-Key" not in call.request.headers and "X-API-Secret" not in call.request.headers


class RecordingSession(requests.Session):
    """A real session that remembers the keyword arguments of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.kwargs: list[dict[str, Any]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.kwargs.append(kwargs)
        return super().request(method, url, *args, **kwargs)


def test_every_call_uses_the_one_session_with_both_timeouts(mock: responses.RequestsMock) -> None:
    session = RecordingSession()
    client = LoyaltyClient(BASE, KEY, SECRET, session=session)
    mock.post(f"{BASE}/en/shop/transactions/create", json=ok({"transaction_id": 1}))
    mock.post(f"{BASE}/en/shop/transactions/deduct-points", json=ok({}))
    mock.get(f"{BASE}/en/shop/transactions", json=page([]))
    mock.post(f"{BASE}/en/shop/validate-credentials", json=ok({"valid": True}))
    mock.post(f"{BASE}/en/shop/points/award", json=ok({}))
    mock.post(f"{BASE}/en/shop/points", json=ok({}))
    client.create_transaction(order())
    client.deduct_points(DeductPointsRequest(card_id=1, order_id="WC-1", points=1, description="d"))
    client.find_transactions("WC-1")
    client.validate_credentials()
    client.award_card_points("t", AwardPointsRequest(card_id=1, points=1, transaction_type="bonus"))
    client.redeem_card_points("t", RedeemPointsRequest(card_id=1, points=1, redemption_type="voucher"))
    assert [kw["timeout"] for kw in session.kwargs] == [(3.05, 10.0)] * 6
    assert all(kw["allow_redirects"] is False for kw in session.kwargs)
    assert "X-API-Secret" not in session.headers  # a session passed in is not changed


# --- errors: chosen by what the caller must do next -------------------------------------------------

def error_body(status: int, code: Any = None, message: str = "nope", errors: Any = None) -> dict[str, Any]:
    body = {"success": False, "message": message, "code": code or status, "request_id": "req-9"}
    if errors is not None:
        body["errors"] = errors
    return body


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (400, error_body(400, "VALIDATION_ERROR", "Nepakanka taškų nuskaityti"), ValidationError,
     "400 VALIDATION_ERROR: Nepakanka taškų nuskaityti [request_id=req-9]"),
    (400, error_body(400, 1013, "Invalid API secret"), AuthenticationError, "400 1013: Invalid API secret [request_id=req-9]"),
    (401, error_body(401, None, "Authentication required",
                     [{"field": "authentication", "message": "Invalid API credentials", "code": "X"}]),
     AuthenticationError, "401: Authentication required (authentication: Invalid API credentials) [request_id=req-9]"),
    (403, error_body(403, None, "Forbidden"), AuthenticationError, "403: Forbidden [request_id=req-9]"),
    (404, {"success": False, "message": "User not found"}, NotFoundError, "404: User not found"),
    (409, error_body(409, "RESOURCE_ALREADY_EXISTS", "Transaction already processed for this order"), AlreadyDone,
     "409 RESOURCE_ALREADY_EXISTS: Transaction already processed for this order [request_id=req-9]"),
    (409, error_body(409, "CONFLICT", "Other conflict"), PermanentError, "409 CONFLICT: Other conflict [request_id=req-9]"),
    (410, error_body(410, None, "Gone"), PermanentError, "410: Gone [request_id=req-9]"),
    (422, error_body(422, "VALIDATION_ERROR", "Validation failed",
                     {"order_id": ["The order id field is required."],
                      "order_total": ["The order total must be at least 0."]}),
     ValidationError, "422 VALIDATION_ERROR: Validation failed (order_id: The order id field is required.; "
                      "order_total: The order total must be at least 0.) [request_id=req-9]"),
    (422, error_body(422, "VALIDATION_ERROR", "Validation failed",
                     [{"field": "user_email", "message": "Invalid email", "code": "INVALID_FORMAT"},
                      {"field": "user_email", "message": "Unknown", "code": "X"}]),
     ValidationError, "422 VALIDATION_ERROR: Validation failed (user_email: Invalid email Unknown) [request_id=req-9]"),
    (408, error_body(408, None, "Request Timeout"), RetryableError, "408: Request Timeout [request_id=req-9]"),
    (500, error_body(500, "SERVER_ERROR", "Server Error"), RetryableError, "500 SERVER_ERROR: Server Error [request_id=req-9]"),
    (503, error_body(503, None, "Down for maintenance"), RetryableError, "503: Down for maintenance [request_id=req-9]"),
])
def test_each_status_maps_to_what_the_caller_must_do(mock: responses.RequestsMock, client: LoyaltyClient,
                                                     status: int, body: dict[str, Any], error: type[LoyaltyError],
                                                     text: str) -> None:
    mock.post(CREATE, status=status, json=body)
    with pytest.raises(LoyaltyError) as caught:
        client.create_transaction(order())
    assert type(caught.value) is error
    assert str(caught.value) == f"POST /lt/shop/transactions/create -> {text}"
    assert (caught.value.status, caught.value.method, caught.value.path) == \
        (status, "POST", "/lt/shop/transactions/create")


def test_the_error_line_and_fields_of_a_422(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(CREATE, status=422, json=error_body(422, "VALIDATION_ERROR", "Validation failed",
                                                  {"order_total": ["The order total must be at least 0."]}))
    with pytest.raises(ValidationError) as caught:
        client.create_transaction(order())
    assert str(caught.value) == ("POST /lt/shop/transactions/create -> 422 VALIDATION_ERROR: Validation failed "
                                 "(order_total: The order total must be at least 0.) [request_id=req-9]")
    assert caught.value.errors == {"order_total": ["The order total must be at least 0."]}
    assert (caught.value.code, caught.value.request_id, caught.value.message) == \
        ("VALIDATION_ERROR", "req-9", "Validation failed")


def test_already_done_is_neither_retryable_nor_permanent() -> None:
    assert not issubclass(AlreadyDone, (RetryableError, PermanentError))
    assert issubclass(RateLimited, RetryableError)
    assert all(issubclass(e, PermanentError) for e in (AuthenticationError, NotFoundError, ValidationError))


def test_429_carries_retry_after_seconds_and_rate_limit_headers(mock: responses.RequestsMock,
                                                               client: LoyaltyClient) -> None:
    mock.post(CREATE, status=429, json=error_body(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded"),
              headers={"Retry-After": "17", "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": "1800000000"})
    with pytest.raises(RateLimited) as caught:
        client.create_transaction(order())
    assert caught.value.retry_after == 17.0
    assert (caught.value.limit, caught.value.remaining, caught.value.reset) == (60, 0, 1800000000)
    assert "429 RATE_LIMIT_EXCEEDED: Rate limit exceeded" in str(caught.value)


@pytest.mark.parametrize(("moment", "low", "high"), [(timedelta(hours=1), 3000, 3600), (-timedelta(hours=1), 0, 0)])
def test_429_with_an_http_date(mock: responses.RequestsMock, client: LoyaltyClient, moment: timedelta,
                               low: float, high: float) -> None:
    when = format_datetime(datetime.now(UTC) + moment, usegmt=True)
    mock.post(CREATE, status=429, json=error_body(429), headers={"Retry-After": when})
    with pytest.raises(RateLimited) as caught:
        client.create_transaction(order())
    assert caught.value.retry_after is not None and low <= caught.value.retry_after <= high


def test_429_without_retry_after_waits_until_the_reset(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(CREATE, status=429, json=error_body(429), headers={"X-RateLimit-Reset": "30"})
    with pytest.raises(RateLimited) as caught:
        client.create_transaction(order())
    assert caught.value.retry_after == 30.0 and caught.value.limit is None


def test_503_passes_retry_after_on(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(CREATE, status=503, json=error_body(503), headers={"Retry-After": "120"})
    with pytest.raises(RetryableError) as caught:
        client.create_transaction(order())
    assert type(caught.value) is RetryableError and caught.value.retry_after == 120.0


@pytest.mark.parametrize(("status", "body", "content_type", "text"), [
    (200, "<html><body>Gateway</body></html>", "text/html", "unreadable answer (text/html, 33 bytes)"),
    (500, "<html><body>Internal Server Error</body></html>", "text/html", "500: Internal Server Error"),
    (502, "<html>Bad Gateway</html>", "text/html", "502: Bad Gateway"),
    (200, "", "application/json", "unreadable answer (application/json, 0 bytes)"),
    (200, "[1, 2]", "application/json", "unreadable answer"),
    (200, '{"success": false, "message": "hmm"}', "application/json", "answer without success: hmm"),
    (200, '{"data": {"transaction_id": 1}}', "application/json", "answer without success"),
    (200, '{"success": true, "data": {"transaction_id": "not a number"}}', "application/json",
     "unexpected answer (transaction_id:"),
    (200, '{"success": true, "data": [1]}', "application/json", "unexpected answer"),
])
def test_unreadable_answers_are_retryable_because_the_outcome_is_unknown(
        mock: responses.RequestsMock, client: LoyaltyClient, status: int, body: str, content_type: str,
        text: str) -> None:
    mock.post(CREATE, status=status, body=body, content_type=content_type)
    with pytest.raises(RetryableError) as caught:
        client.create_transaction(order())
    assert type(caught.value) is RetryableError and caught.value.status == status
    assert text in str(caught.value)


def test_a_list_answer_without_rows_is_retryable(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.get(LIST, json={"success": True, "meta": {"current_page": 1, "last_page": 1}})
    with pytest.raises(RetryableError, match="unexpected answer"):
        client.list_transactions()


@pytest.mark.parametrize(("failure", "text"), [
    (requests.ConnectionError("Connection refused"), "network error (ConnectionError)"),
    (requests.ReadTimeout("slow"), "read timeout (the call may have landed)"),
    (requests.ConnectTimeout("no route"), "connect timeout (the call was not sent)"),
])
def test_network_failures_are_retryable(mock: responses.RequestsMock, client: LoyaltyClient, seen: Seen,
                                        failure: Exception, text: str) -> None:
    mock.post(CREATE, body=failure)
    with pytest.raises(RetryableError) as caught:
        client.create_transaction(order())
    assert str(caught.value) == f"POST /lt/shop/transactions/create -> no answer: {text}"
    assert caught.value.status is None and caught.value.__context__ is None
    assert seen == [("transactions/create", None, seen[0][2])]


def test_a_bad_api_url_is_permanent(mock: responses.RequestsMock) -> None:
    with pytest.raises(PermanentError, match="cannot send the request"):
        LoyaltyClient("api.loyalty.test", KEY, SECRET).validate_credentials()


def test_redirects_are_not_followed(mock: responses.RequestsMock) -> None:
    mock.post("http://api.loyalty.test/en/shop/transactions/create", status=301,
              headers={"Location": f"{BASE}/en/shop/transactions/create"})
    with pytest.raises(PermanentError, match="redirected to https://api.loyalty.test/en/shop/transactions/create"):
        LoyaltyClient("http://api.loyalty.test", KEY, SECRET).create_transaction(order())
    assert len(mock.calls) == 1


# --- secrets, logs and hooks ------------------------------------------------------------------------

def test_secrets_and_emails_never_reach_errors_reprs_or_logs(mock: responses.RequestsMock, client: LoyaltyClient,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mock.post(CREATE, status=401, json=error_body(401, 1004, "Partner not authenticated"))
    mock.post(CREATE, body=requests.ConnectionError(f"refused {KEY} {SECRET}"))
    errors: list[LoyaltyError] = []
    for _ in range(2):
        with pytest.raises(LoyaltyError) as caught:
            client.create_transaction(order())
        errors.append(caught.value)
    # requests quotes a bad header value in its exception: the secret itself here.
    with pytest.raises(PermanentError) as caught:
        LoyaltyClient(BASE, KEY, f"{SECRET}\n").validate_credentials()
    errors.append(caught.value)
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(client)]
    texts += [r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records]
    for text in texts:
        assert SECRET not in text and KEY not in text and EMAIL not in text


def test_each_call_is_logged_at_debug(mock: responses.RequestsMock, client: LoyaltyClient,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="workers.loyalty")
    mock.post(CREATE, json=ok({"transaction_id": 1}))
    client.create_transaction(order())
    [record] = caplog.records
    assert record.levelno == logging.DEBUG and record.name == "workers.loyalty"
    assert record.getMessage().startswith("POST /lt/shop/transactions/create -> 200 in ")
    assert {k: v for k, v in record.fields.items() if k != "ms"} == {  # type: ignore[attr-defined]
        "method": "POST", "path": "/lt/shop/transactions/create", "status": 200}


def test_a_failing_hook_does_not_fail_the_call(mock: responses.RequestsMock, caplog: pytest.LogCaptureFixture) -> None:
    def broken(endpoint: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics down")

    mock.post(f"{BASE}/en/shop/transactions/create", json=ok({"transaction_id": 5}))
    client = LoyaltyClient(BASE, KEY, SECRET, on_response=broken)
    assert client.create_transaction(order()).transaction_id == 5
    assert "on_response hook failed" in caplog.text


def test_before_request_runs_before_every_call(mock: responses.RequestsMock) -> None:
    class Stop(Exception):
        pass

    def refuse() -> None:
        raise Stop

    with pytest.raises(Stop):
        LoyaltyClient(BASE, KEY, SECRET, before_request=refuse).validate_credentials()
    assert len(mock.calls) == 0
