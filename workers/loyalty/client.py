"""The Loyalty.lt Shop API client: one ``requests.Session`` per API key pair, typed in and out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import requests
from pydantic import BaseModel
from urllib3.exceptions import NewConnectionError
from pydantic import ValidationError as PydanticValidationError

from workers.loyalty.errors import (
    AlreadyDone,
    AuthenticationError,
    CallSite,
    LoyaltyError,
    NotFoundError,
    NotSent,
    PermanentError,
    RateLimited,
    RetryableError,
    ValidationError,
    normalize_errors,
)
from workers.loyalty.models import (
    AwardPointsRequest,
    BalanceQuery,
    CardBalance,
    CardPointsResult,
    CreateTransactionRequest,
    CreateTransactionResult,
    CredentialsInfo,
    DeductBody,
    DeductPointsRequest,
    DeductPointsResult,
    Envelope,
    RedeemPointsRequest,
    Transaction,
    TransactionFilters,
    TransactionPage,
    TransactionType,
)

logger = logging.getLogger("workers.loyalty")
M = TypeVar("M", bound=BaseModel)
OnResponse = Callable[[str, int | None, float], None]

ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
# validate-credentials answers a bad key pair with 400 and one of these codes (docs' table).
CREDENTIAL_CODES = {1010, 1011, 1012, 1013, 1014}
JSON = "application/json"

try:
    _VERSION = version("loyalty-bridge")
except PackageNotFoundError:  # running from a source tree
    _VERSION = "dev"
USER_AGENT = f"loyalty-bridge/{_VERSION}"


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


def _int_header(headers: Any, name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def _envelope(response: requests.Response) -> Envelope | None:
    """The answer's envelope, or None when the body is not a JSON object of that shape."""
    try:
        raw = response.json()
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    try:
        return Envelope.model_validate(raw)
    except PydanticValidationError:
        return None


def _error_for_status(status: int, message: str, envelope: Envelope | None, headers: Any,
                      context: dict[str, Any]) -> LoyaltyError:
    """The error a non-2xx answer means, chosen by what the caller must do next."""
    code = envelope.code if envelope is not None else None
    if status == 409 and code == ALREADY_EXISTS:
        return AlreadyDone(message, **context)
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429:
        reset = _int_header(headers, "X-RateLimit-Reset")
        if retry_after is None and reset is not None:
            # The docs' Reset is an epoch time; a small number can only be seconds.
            retry_after = max(reset - time.time(), 0.0) if reset > 1_000_000_000 else float(reset)
        return RateLimited(message, retry_after=retry_after, limit=_int_header(headers, "X-RateLimit-Limit"),
                           remaining=_int_header(headers, "X-RateLimit-Remaining"), reset=reset, **context)
    if status >= 500 or status == 408:
        return RetryableError(message, retry_after=retry_after, **context)
    if status < 400:
        # Redirects are not followed (requests would turn the POST into a GET): the base URL is wrong.
        return PermanentError(f"redirected to {headers.get('Location', '?')}: check the API URL", **context)
    if status in (401, 403) or (status == 400 and code in CREDENTIAL_CODES):
        return AuthenticationError(message, **context)
    if status == 404:
        return NotFoundError(message, **context)
    if status in (400, 422):
        return ValidationError(message, **context)
    return PermanentError(message, **context)


class LoyaltyClient:
    """Calls the Shop API for one partner (API key pair), with connect and read timeouts on every call.

    ``on_response(endpoint, status, seconds)`` is called after every call (status None when no
    answer came), and ``before_request()`` before every call: metrics and the shared rate limiter
    attach there, so this module knows nothing of either. Each method raises a
    :class:`~workers.loyalty.errors.LoyaltyError` subclass when the call does not succeed.
    """

    def __init__(self, base_url: str, api_key: str, api_secret: str, locale: str = "en",
                 connect_timeout: float = 3.05, read_timeout: float = 10.0,
                 session: requests.Session | None = None, on_response: OnResponse | None = None,
                 before_request: Callable[[], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.locale = locale
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()
        self.on_response = on_response
        self.before_request = before_request
        # Per-request headers rather than session headers: a session passed in may be shared.
        self._headers = {"Accept": JSON, "Content-Type": JSON, "User-Agent": USER_AGENT}
        self._key_pair = {"X-API-Key": api_key, "X-API-Secret": api_secret}

    def __repr__(self) -> str:
        return f"LoyaltyClient({self.base_url!r}, locale={self.locale!r})"

    # --- the Shop API (X-API-Key / X-API-Secret) ----------------------------------------------------

    def create_transaction(self, request: CreateTransactionRequest) -> CreateTransactionResult:
        """Award points for an order (and redeem points spent on it).

        Raises :class:`AlreadyDone` when the platform already processed this ``order_id``.
        """
        return self._call("POST", "transactions/create", CreateTransactionResult, json=request.body())

    def deduct_points(self, request: DeductPointsRequest, body: DeductBody = "full") -> DeductPointsResult:
        """Take points back for a refund or a cancellation (the platform does not dedupe these);
        ``body`` "sdk" sends only the fields Loyalty.lt's own clients sent."""
        return self._call("POST", "transactions/deduct-points", DeductPointsResult, json=request.body(body))

    def card_balance(self, query: BalanceQuery) -> CardBalance:
        """A card's current points (Shop API auth)."""
        return self._call("GET", "loyalty-cards/balance", CardBalance, params=query.query())

    def list_transactions(self, filters: TransactionFilters | None = None) -> TransactionPage:
        """One page of the partner's transactions."""
        return self._call("GET", "transactions", TransactionPage, params=(filters or TransactionFilters()).query(),
                          paged=True)

    def iter_transactions(self, filters: TransactionFilters | None = None) -> Iterator[Transaction]:
        """Every transaction matching ``filters``, page after page (100 per page)."""
        filters = (filters or TransactionFilters()).model_copy(update={"per_page": 100, "page": 1})
        while True:
            page = self.list_transactions(filters)
            yield from page.data
            # Our own page counter, so a server repeating ``current_page`` cannot loop us forever.
            if not page.data or filters.page >= page.meta.last_page:
                return
            filters = filters.model_copy(update={"page": filters.page + 1})

    def find_transactions(self, reference_number: str, type: TransactionType | None = None) -> list[Transaction]:
        """The transactions of one order reference (optionally of one type): "did this call land?".

        Rows are checked again here, so a server ignoring the filter cannot make a false match.
        """
        filters = TransactionFilters(reference_number=reference_number, type=type)
        return [tx for tx in self.iter_transactions(filters)
                if tx.reference_number == reference_number and (type is None or tx.type in (None, type))]

    def validate_credentials(self) -> CredentialsInfo:
        """Whether the API key pair is valid, and whose it is (a bad pair raises AuthenticationError)."""
        return self._call("POST", "validate-credentials", CredentialsInfo)

    # --- card endpoints (Authorization: Bearer <jwt>) ----------------------------------------------

    def award_card_points(self, jwt: str, request: AwardPointsRequest) -> CardPointsResult:
        """Award points on a loyalty card."""
        return self._call("POST", "points/award", CardPointsResult, json=request.body(), jwt=jwt)

    def redeem_card_points(self, jwt: str, request: RedeemPointsRequest) -> CardPointsResult:
        """Redeem points from a loyalty card; not reversible by the API."""
        return self._call("POST", "points", CardPointsResult, json=request.body(), jwt=jwt)

    # --- plumbing -----------------------------------------------------------------------------------

    def _call(self, method: str, endpoint: str, model: type[M], *, json: dict[str, Any] | None = None,
              params: dict[str, str] | None = None, jwt: str | None = None, paged: bool = False) -> M:
        path = f"/{self.locale}/shop/{endpoint}"
        response = self._send(method, endpoint, path, json=json, params=params, jwt=jwt)
        envelope, context = self._read(response, method, path)
        payload = {"meta": envelope.meta or {}, "data": envelope.data} if paged else envelope.data
        try:
            return model.model_validate(payload if payload is not None else {})
        except PydanticValidationError as exc:
            # A 2xx we cannot read: whether it landed is unknown, so check, then retry.
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "data"
            raise RetryableError(f"unexpected answer ({where}: {first['msg']})", **context) from None

    def _send(self, method: str, endpoint: str, path: str, *, json: dict[str, Any] | None,
              params: dict[str, str] | None, jwt: str | None) -> requests.Response:
        auth = {"Authorization": f"Bearer {jwt}"} if jwt is not None else self._key_pair
        if self.before_request is not None:
            self.before_request()
        failure: LoyaltyError | None = None
        response: requests.Response | None = None
        started = time.perf_counter()
        try:
            response = self.session.request(method, self.base_url + path, json=json, params=params,
                                            headers={**self._headers, **auth}, timeout=self.timeout,
                                            allow_redirects=False)
        except requests.RequestException as exc:
            # Only the exception's class name is kept: some requests errors quote header values.
            failure = self._network_error(exc, method, path)
        seconds = time.perf_counter() - started
        status = response.status_code if response is not None else None
        ms = round(seconds * 1000, 1)
        logger.debug("%s %s -> %s in %.1f ms", method, path, status, ms,
                     extra={"fields": {"method": method, "path": path, "status": status, "ms": ms}})
        self._notify(endpoint, status, seconds)
        if failure is not None:
            raise failure  # raised outside the except block, so the original is not chained
        assert response is not None
        return response

    @staticmethod
    def _network_error(exc: requests.RequestException, method: str, path: str) -> LoyaltyError:
        where: CallSite = {"method": method, "path": path}
        if isinstance(exc, requests.ConnectTimeout):
            return NotSent("connect timeout (the call was not sent)", **where)
        if isinstance(exc, requests.ConnectionError) and isinstance(
                getattr(exc.args[0] if exc.args else None, "reason", None), NewConnectionError):
            return NotSent("cannot connect (the call was not sent)", **where)
        if isinstance(exc, requests.Timeout):
            return RetryableError("read timeout (the call may have landed)", **where)
        if isinstance(exc, ValueError):  # InvalidURL, MissingSchema, InvalidHeader: retrying cannot help
            return PermanentError(f"cannot send the request ({type(exc).__name__})", **where)
        return RetryableError(f"network error ({type(exc).__name__})", **where)

    def _notify(self, endpoint: str, status: int | None, seconds: float) -> None:
        if self.on_response is None:
            return
        try:
            self.on_response(endpoint, status, seconds)
        except Exception:
            # A metrics bug must not turn a call that landed into a failure the worker retries.
            logger.warning("on_response hook failed for %s", endpoint, exc_info=True)

    @staticmethod
    def _read(response: requests.Response, method: str, path: str) -> tuple[Envelope, dict[str, Any]]:
        """The envelope of a successful answer, and the context errors about it carry."""
        status = response.status_code
        envelope = _envelope(response)
        context: dict[str, Any] = {"status": status, "method": method, "path": path}
        if envelope is not None:
            context.update(code=envelope.code, request_id=envelope.request_id,
                           errors=normalize_errors(envelope.errors))
        message = (envelope.message if envelope is not None else None) or response.reason or "error"
        if not 200 <= status < 300:
            raise _error_for_status(status, message, envelope, response.headers, context)
        # From here on the outcome is unknown if we cannot read the answer: the caller must check.
        if envelope is None:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise RetryableError(f"unreadable answer ({kind}, {len(response.content)} bytes)", **context)
        if envelope.success is not True:
            raise RetryableError(f"answer without success: {message}", **context)
        return envelope, context


__all__ = ["LoyaltyClient", "parse_retry_after"]
