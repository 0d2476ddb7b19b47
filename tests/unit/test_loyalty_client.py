"""The Loyalty.lt client against responses: bodies, headers, paging, and every kind of failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses

from workers.loyalty import (
    AlreadyDone,
    AuthenticationError,
    AwardPointsRequest,
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


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as m:
        yield m


@pytest.fixture
def seen() -> list[tuple[str, int | None, float]]:
    return []


@pytest.fixture
def client(seen: list[tuple[str, int | None, float]]) -> LoyaltyClient:
    return LoyaltyClient(BASE, KEY, SECRET, "lt", connect_timeout=1.5, read_timeout=7.0,
                         on_response=lambda endpoint, status, seconds: seen.append((endpoint, status, seconds)))


def ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"success": True, "message": "OK", "code": 200, "request_id": "req-1", "data": data, **extra}


def order(**kw: Any) -> CreateTransactionRequest:
    fields: dict[str, Any] = {"user_email": "a@example.com", "order_id": "WC-1", "order_total": Decimal("15.50")}
    fields.update(kw)
    return CreateTransactionRequest(**fields)


def test_create_transaction_sends_the_exact_body_and_headers(mock: responses.RequestsMock,
                                                            client: LoyaltyClient,
                                                            seen: list[Any]) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/create", json=ok({
        "transaction_id": 12345, "points_awarded": 160, "points_balance": 1750, "loyalty_card_id": 567,
        "card_number": "123-456-789", "user_id": 123, "order_total": 15.5, "currency": "EUR"}))
    result = client.create_transaction(order(
        shop_id=12, points_redeemed=500, points_discount_amount=Decimal("5"),
        cart_items=[CartItem(product_id=101, product_name="Beans", quantity=2, unit_price=Decimal("7.75"),
                             total_price=Decimal("15.50"), sku="B-1")],
        meta_data={"platform": "woocommerce"}))
    assert (result.transaction_id, result.points_awarded, result.user_id) == (12345, 160, 123)
    request = mock.calls[0].request
    assert json.loads(request.body) == {
        "user_email": "a@example.com", "order_id": "WC-1", "order_total": 15.5, "currency": "EUR", "shop_id": 12,
        "points_redeemed": 500, "points_discount_amount": 5.0,
        "cart_items": [{"product_id": 101, "product_name": "Beans", "quantity": 2, "unit_price": 7.75,
                        "total_price": 15.5, "sku": "B-1"}],
        "meta_data": {"platform": "woocommerce"}}
    assert request.headers["X-API-Key"] == KEY
    assert request.headers["X-API-Secret"] == SECRET
    assert request.headers["User-Agent"].startswith("loyalty-bridge/")
    assert request.req_kwargs["timeout"] == (1.5, 7.0)
    assert seen[0][:2] == ("transactions/create", 200)


def test_a_request_needs_someone_to_award() -> None:
    with pytest.raises(Exception, match="user_email or user_id"):
        CreateTransactionRequest(order_id="WC-1", order_total=Decimal("1"))
    with pytest.raises(Exception, match="user_email or user_id"):
        DeductPointsRequest(order_id="WC-1", points=1)


def test_deduct_points_body(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/deduct-points",
              json=ok({"transaction_id": 7, "points_deducted": 48, "points_balance": 100}))
    result = client.deduct_points(DeductPointsRequest(user_id=77, order_id="WC-1", refund_id="4301", points=48,
                                                      refund_amount=Decimal("4.84"), currency="EUR", reason="broken"))
    assert result.points_deducted == 48
    assert json.loads(mock.calls[0].request.body) == {
        "user_id": 77, "order_id": "WC-1", "refund_id": "4301", "points": 48, "refund_amount": 4.84,
        "currency": "EUR", "reason": "broken"}


def test_list_sends_every_filter(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.get(f"{BASE}/lt/shop/transactions", json=ok([{"id": 1, "type": "purchase", "points": 150,
                                                       "reference_number": "WC-1", "metadata": {"store": "s"}}],
                                                     meta={"current_page": 1, "last_page": 1, "per_page": 20,
                                                           "total": 1}))
    filters = TransactionFilters(user_id=1, user_email="a@example.com", loyalty_card_id=2, shop_id=3, staff_id=4,
                                 category_id=5, reference_number="WC-1", type="purchase",
                                 date_from=date(2026, 11, 1), date_to=date(2026, 11, 30), per_page=20, page=1)
    page = client.list_transactions(filters)
    assert page.meta.total == 1 and page.data[0].metadata == {"store": "s"}
    query = mock.calls[0].request.params
    assert query == {"user_id": "1", "user_email": "a@example.com", "loyalty_card_id": "2", "shop_id": "3",
                     "staff_id": "4", "category_id": "5", "reference_number": "WC-1", "type": "purchase",
                     "date_from": "2026-11-01", "date_to": "2026-11-30", "per_page": "20", "page": "1"}


def test_per_page_is_at_most_100() -> None:
    with pytest.raises(Exception):
        TransactionFilters(per_page=101)


def test_iter_walks_every_page(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    for page in (1, 2, 3):
        mock.get(f"{BASE}/lt/shop/transactions",
                 match=[responses.matchers.query_param_matcher({"per_page": "100", "page": str(page)})],
                 json=ok([{"id": page * 10 + i, "points": 1} for i in range(2)],
                         meta={"current_page": page, "last_page": 3, "per_page": 100, "total": 6}))
    assert [tx.id for tx in client.iter_transactions()] == [10, 11, 20, 21, 30, 31]


def test_find_transactions_asks_for_the_reference(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.get(f"{BASE}/lt/shop/transactions", json=ok([{"id": 1, "type": "refund", "reference_number": "WC-9"}],
                                                     meta={"current_page": 1, "last_page": 1}))
    assert [t.id for t in client.find_transactions("WC-9", type="refund")] == [1]
    assert mock.calls[0].request.params["reference_number"] == "WC-9"
    assert mock.calls[0].request.params["type"] == "refund"


def test_validate_credentials(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/validate-credentials", json=ok({"valid": True, "environment": "staging",
                                                               "partner": {"id": 45, "name": "Coffee"}}))
    info = client.validate_credentials()
    assert info.valid and info.partner is not None and info.partner.name == "Coffee"


def test_card_endpoints_use_the_bearer_token_not_the_key_pair(mock: responses.RequestsMock,
                                                              client: LoyaltyClient) -> None:
    answer = ok({"transaction": {"id": 1}, "balance": {"current_points": 1300, "previous_points": 1250}})
    mock.post(f"{BASE}/lt/shop/points/award", json=answer)
    mock.post(f"{BASE}/lt/shop/points", json=answer)
    result = client.award_card_points("jwt-1", AwardPointsRequest(card_id=123, points=50, transaction_type="purchase",
                                                                   purchase_amount=Decimal("25.99")))
    assert result.balance is not None and result.balance.current_points == 1300
    client.redeem_card_points("jwt-1", RedeemPointsRequest(card_id=123, points=10, redemption_type="voucher"))
    for call in mock.calls:
        assert call.request.headers["Authorization"] == "Bearer jwt-1"
        assert "X-API-Secret" not in call.request.headers
    assert json.loads(mock.calls[1].request.body)["transaction_type"] == "redeem"


def error_body(status: int, code: Any = None, message: str = "nope", errors: Any = None) -> dict[str, Any]:
    body = {"success": False, "message": message, "code": code or status, "request_id": "req-9"}
    if errors is not None:
        body["errors"] = errors
    return body


@pytest.mark.parametrize(("status", "body", "error", "text"), [
    (400, error_body(400, "VALIDATION_ERROR", "Nepakanka taškų nuskaityti. Turimi: 300 taškų"), ValidationError,
     "400 VALIDATION_ERROR: Nepakanka taškų"),
    (401, error_body(401, 1004, "Partner not authenticated"), AuthenticationError, "401 1004: Partner not authenticated"),
    (403, error_body(403, None, "Forbidden"), AuthenticationError, "403: Forbidden"),
    (404, error_body(404, None, "User not found"), NotFoundError, "404: User not found"),
    (409, error_body(409, "RESOURCE_ALREADY_EXISTS", "Transaction already processed for this order"), AlreadyDone,
     "409 RESOURCE_ALREADY_EXISTS"),
    (409, error_body(409, "CONFLICT", "Other conflict"), PermanentError, "409 CONFLICT"),
    (422, error_body(422, "VALIDATION_ERROR", "Validation failed",
                     {"order_id": ["The order id field is required."], "order_total": ["Must be at least 0."]}),
     ValidationError, "(order_id: The order id field is required.; order_total: Must be at least 0.)"),
    (422, error_body(422, "VALIDATION_ERROR", "Validation failed",
                     [{"field": "user_email", "message": "Invalid email", "code": "email"}]),
     ValidationError, "(user_email: Invalid email)"),
    (410, error_body(410, None, "Gone"), PermanentError, "410: Gone"),
    (500, error_body(500, "SERVER_ERROR", "Server Error"), RetryableError, "500 SERVER_ERROR"),
    (503, error_body(503), RetryableError, "503"),
    (408, error_body(408), RetryableError, "408"),
])
def test_each_status_maps_to_what_the_caller_must_do(mock: responses.RequestsMock, client: LoyaltyClient,
                                                     status: int, body: dict[str, Any], error: type[LoyaltyError],
                                                     text: str) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/create", status=status, json=body)
    with pytest.raises(error) as caught:
        client.create_transaction(order())
    assert type(caught.value) is error or issubclass(type(caught.value), error)
    assert text in str(caught.value)
    assert str(caught.value).startswith("POST /lt/shop/transactions/create -> ")
    assert "[request_id=req-9]" in str(caught.value)
    assert caught.value.status == status


def test_429_carries_retry_after_seconds_and_rate_limit_headers(mock: responses.RequestsMock,
                                                               client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/create", status=429, json=error_body(429, "RATE_LIMIT_EXCEEDED"),
              headers={"Retry-After": "17", "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": "1800000000"})
    with pytest.raises(RateLimited) as caught:
        client.create_transaction(order())
    assert caught.value.retry_after == 17
    assert (caught.value.limit, caught.value.remaining, caught.value.reset) == (60, 0, 1800000000)
    assert isinstance(caught.value, RetryableError)


def test_429_with_an_http_date(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    mock.post(f"{BASE}/lt/shop/transactions/create", status=429, json=error_body(429), headers={"Retry-After": later})
    with pytest.raises(RateLimited) as caught:
        client.create_transaction(order())
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize(("status", "body", "content_type"), [
    (200, "<html><body>Gateway</body></html>", "text/html"),
    (500, "<html><body>Internal Server Error</body></html>", "text/html"),
    (502, "<html>Bad Gateway</html>", "text/html"),
    (200, "", "application/json"),
    (200, "[1, 2]", "application/json"),
    (200, '{"success": false, "message": "hmm"}', "application/json"),
    (200, '{"success": true, "data": {"transaction_id": "not a number"}}', "application/json"),
])
def test_unreadable_answers_are_retryable_because_the_outcome_is_unknown(mock: responses.RequestsMock,
                                                                        client: LoyaltyClient, status: int,
                                                                        body: str, content_type: str) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/create", status=status, body=body, content_type=content_type)
    with pytest.raises(RetryableError):
        client.create_transaction(order())


@pytest.mark.parametrize("failure", [requests.ConnectionError("refused"), requests.ReadTimeout("slow"),
                                     requests.ConnectTimeout("no route")])
def test_network_failures_are_retryable(mock: responses.RequestsMock, client: LoyaltyClient,
                                        seen: list[Any], failure: Exception) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/create", body=failure)
    with pytest.raises(RetryableError) as caught:
        client.create_transaction(order())
    assert caught.value.status is None
    assert seen == [("transactions/create", None, seen[0][2])]


def test_the_secret_never_appears_in_errors_or_repr(mock: responses.RequestsMock, client: LoyaltyClient) -> None:
    mock.post(f"{BASE}/lt/shop/transactions/create", status=401, json=error_body(401, 1004, "Partner not authenticated"))
    with pytest.raises(LoyaltyError) as caught:
        client.create_transaction(order())
    for text in (str(caught.value), repr(caught.value), repr(client)):
        assert SECRET not in text and KEY not in text


def test_before_request_runs_before_every_call(mock: responses.RequestsMock) -> None:
    class Stop(Exception):
        pass

    def refuse() -> None:
        raise Stop

    limited = LoyaltyClient(BASE, KEY, SECRET, before_request=refuse)
    with pytest.raises(Stop):
        limited.validate_credentials()
    assert len(mock.calls) == 0
