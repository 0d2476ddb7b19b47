"""The Loyalty.lt Shop API client: one ``requests.Session`` per API key pair, typed in and out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import requests
from pydantic import ValidationError as PydanticValidationError

from workers.loyalty.errors import (
    AlreadyDone,
    AuthenticationError,
    LoyaltyError,
    NotFoundError,
    PermanentError,
    RateLimited,
    RetryableError,
    ValidationError,
    normalize_errors,
)
from workers.loyalty.models import (
    AwardPointsRequest,
    CardPointsResult,
    CreateTransactionRequest,
    CreateTransactionResult,
    CredentialsInfo,
    DeductPointsRequest,
    DeductPointsResult,
    Envelope,
    RedeemPointsRequest,
    Transaction,
    TransactionFilters,
    TransactionPage,
)

logger = logging.getLogger("workers.loyalty")
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"

try:
    _VERSION = version("loyalty-bridge")
except PackageNotFoundError:  # running from a source tree
    _VERSION = "dev"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait, from a Retry-After header (seconds, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


class LoyaltyClient:
    """Calls the Shop API for one partner (API key pair), with connect and read timeouts on every call.

    ``on_response(endpoint, status, seconds)`` is called after every call (status None when no
    answer came), and ``before_request()`` before every call: metrics and the shared rate limiter
    attach there, so this module knows nothing of either.
    """

    def __init__(self, base_url: str, api_key: str, api_secret: str, locale: str = "en", *,
                 connect_timeout: float = 3.05, read_timeout: float = 10.0,
                 session: requests.Session | None = None,
                 on_response: Callable[[str, int | None, float], None] | None = None,
                 before_request: Callable[[], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.locale = locale
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": f"loyalty-bridge/{_VERSION}"})
        self._auth = {"X-API-Key": api_key, "X-API-Secret": api_secret}
        self.on_response = on_response
        self.before_request = before_request

    def __repr__(self) -> str:
        return f"LoyaltyClient({self.base_url!r}, locale={self.locale!r})"

    # --- the Shop API ---------------------------------------------------------------------------

    def create_transaction(self, request: CreateTransactionRequest) -> CreateTransactionResult:
        """Award points for an order (and redeem points spent on it). 409 → :class:`AlreadyDone`."""
        data = self._call("POST", "transactions/create", json=request.body()).data
        return self._parse(CreateTransactionResult, data, "POST", "transactions/create")

    def deduct_points(self, request: DeductPointsRequest) -> DeductPointsResult:
        """Take points back for a refund or a cancellation."""
        data = self._call("POST", "transactions/deduct-points", json=request.body()).data
        return self._parse(DeductPointsResult, data, "POST", "transactions/deduct-points")

    def list_transactions(self, filters: TransactionFilters | None = None) -> TransactionPage:
        """One page of the partner's transactions."""
        filters = filters or TransactionFilters()
        envelope = self._call("GET", "transactions", params=filters.query())
        return self._parse(TransactionPage, {"meta": envelope.meta or {}, "data": envelope.data or []},
                           "GET", "transactions")

    def iter_transactions(self, filters: TransactionFilters | None = None) -> Iterator[Transaction]:
        """Every transaction matching ``filters``, page after page (100 per page)."""
        filters = (filters or TransactionFilters()).model_copy(update={"per_page": 100, "page": 1})
        while True:
            page = self.list_transactions(filters)
            yield from page.data
            if page.meta.current_page >= page.meta.last_page or not page.data:
                return
            filters = filters.model_copy(update={"page": page.meta.current_page + 1})

    def find_transactions(self, reference_number: str, type: str | None = None) -> list[Transaction]:
        """The transactions of one order reference (optionally of one type): "did this land?"."""
        filters = TransactionFilters(reference_number=reference_number, type=type)  # type: ignore[arg-type]
        return [tx for tx in self.iter_transactions(filters) if tx.reference_number in (None, reference_number)]

    def validate_credentials(self) -> CredentialsInfo:
        """Whether the API key pair is valid, and whose it is."""
        data = self._call("POST", "validate-credentials").data
        return self._parse(CredentialsInfo, data, "POST", "validate-credentials")

    def award_card_points(self, jwt: str, request: AwardPointsRequest) -> CardPointsResult:
        """Award points on a loyalty card (JWT auth)."""
        data = self._call("POST", "points/award", json=request.body(), jwt=jwt).data
        return self._parse(CardPointsResult, data, "POST", "points/award")

    def redeem_card_points(self, jwt: str, request: RedeemPointsRequest) -> CardPointsResult:
        """Redeem points from a loyalty card (JWT auth); not reversible by the API."""
        data = self._call("POST", "points", json=request.body(), jwt=jwt).data
        return self._parse(CardPointsResult, data, "POST", "points")

    # --- plumbing ---------------------------------------------------------------------------------

    def _path(self, endpoint: str) -> str:
        return f"/{self.locale}/shop/{endpoint}"

    def _call(self, method: str, endpoint: str, *, json: dict[str, Any] | None = None,
              params: dict[str, str] | None = None, jwt: str | None = None) -> Envelope:
        path = self._path(endpoint)
        headers = {"Authorization": f"Bearer {jwt}"} if jwt is not None else self._auth
        if self.before_request is not None:
            self.before_request()
        started = time.perf_counter()
        status: int | None = None
        try:
            response = self.session.request(method, self.base_url + path, json=json, params=params,
                                            headers=headers, timeout=self.timeout)
            status = response.status_code
        except requests.Timeout:
            raise RetryableError("timed out", method=method, path=path) from None
        except requests.RequestException as exc:
            raise RetryableError(f"network error ({type(exc).__name__})", method=method, path=path) from None
        finally:
            elapsed = time.perf_counter() - started
            logger.debug("%s %s -> %s in %.1f ms", method, path, status, elapsed * 1000)
            if self.on_response is not None:
                self.on_response(endpoint, status, elapsed)
        return self._read(response, method, path)

    @staticmethod
    def _read(response: requests.Response, method: str, path: str) -> Envelope:
        status = response.status_code
        try:
            envelope: Envelope | None = Envelope.model_validate(response.json())
        except (ValueError, PydanticValidationError):
            envelope = None
        where: dict[str, Any] = {"status": status, "method": method, "path": path}
        if envelope is not None:
            where.update(code=envelope.code, request_id=envelope.request_id, errors=normalize_errors(envelope.errors))
        message = envelope.message if envelope is not None and envelope.message else response.reason or "error"

        if 200 <= status < 300:
            if envelope is None:
                # The outcome is unknown: the caller must check before calling again.
                kind = response.headers.get("Content-Type", "no content type").split(";")[0]
                raise RetryableError(f"unreadable answer ({kind}, {len(response.content)} bytes)", **where)
            if not envelope.success:
                raise RetryableError(f"answer says it did not succeed: {message}", **where)
            return envelope
        if status == 409 and envelope is not None and envelope.code == ALREADY_EXISTS:
            raise AlreadyDone(message, **where)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            raise RateLimited(message, retry_after=retry_after, limit=_int_header(response, "X-RateLimit-Limit"),
                              remaining=_int_header(response, "X-RateLimit-Remaining"),
                              reset=_int_header(response, "X-RateLimit-Reset"), **where)
        if status >= 500 or status == 408:
            raise RetryableError(message, retry_after=retry_after, **where)
        if status in (401, 403):
            raise AuthenticationError(message, **where)
        if status == 404:
            raise NotFoundError(message, **where)
        if status in (400, 422):
            raise ValidationError(message, **where)
        raise PermanentError(message, **where)

    @staticmethod
    def _parse(model: type[Any], data: Any, method: str, endpoint: str) -> Any:
        try:
            return model.model_validate(data if data is not None else {})
        except PydanticValidationError as exc:
            # A 2xx we cannot read: whether it landed is unknown, so this is retryable.
            first = exc.errors()[0]
            raise RetryableError(f"unexpected answer ({'.'.join(map(str, first['loc']))}: {first['msg']})",
                                 method=method, path=f"/shop/{endpoint}") from None


__all__ = ["LoyaltyClient", "LoyaltyError", "parse_retry_after"]
