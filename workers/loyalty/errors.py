"""What can go wrong calling Loyalty.lt, sorted by what the caller must do next.

- :class:`RetryableError` — try again later (network trouble, timeouts, 408, 429, 5xx, an answer
  nobody can read: the call may or may not have landed, so check before calling again); its
  :class:`NotSent` says the call never left, so nothing can have landed;
- :class:`PermanentError` — give up with the API's reason (400/401/403/404/422 and other 4xx);
- :class:`AlreadyDone` — the platform already has it (409 ``RESOURCE_ALREADY_EXISTS`` on create).

Messages carry the method, the path, the status, the API's code, message and field errors and its
request id — never a header, so never the API key or secret.
"""

from __future__ import annotations

from typing import Any, TypedDict


def normalize_errors(raw: Any) -> dict[str, list[str]]:
    """Field errors as ``{field: [messages]}``.

    The API sends either ``{field: [messages]}`` (Laravel style) or ``[{field, message, code}]``;
    a bare string or list of strings lands under the empty field name.
    """
    out: dict[str, list[str]] = {}
    if isinstance(raw, dict):
        for field, messages in raw.items():
            items = messages if isinstance(messages, list) else [messages]
            out[str(field)] = [str(m) for m in items]
    elif isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict):
                out.setdefault(str(entry.get("field") or ""), []).append(str(entry.get("message", "")))
            else:
                out.setdefault("", []).append(str(entry))
    elif isinstance(raw, str) and raw:
        out[""] = [raw]
    return out


class CallSite(TypedDict):
    """The call an error is about, as keyword arguments of every error here."""

    method: str
    path: str


class LoyaltyError(Exception):
    """A call to Loyalty.lt did not succeed.

    ``status`` is None when no answer came; ``path`` is the URL path only (no host, no query).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | int | None = None,
                 request_id: str | None = None, errors: dict[str, list[str]] | None = None,
                 method: str = "", path: str = "") -> None:
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.errors = errors or {}
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path} -> " if self.method else ""
        status = str(self.status) if self.status is not None else "no answer"
        code = f" {self.code}" if self.code not in (None, "", self.status) else ""
        fields = "; ".join(f"{field}: {' '.join(msgs)}" if field else " ".join(msgs)
                           for field, msgs in self.errors.items())
        detail = f" ({fields})" if fields else ""
        rid = f" [request_id={self.request_id}]" if self.request_id else ""
        return f"{where}{status}{code}: {self.message}{detail}{rid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class RetryableError(LoyaltyError):
    """Try again later; ``retry_after`` (seconds) when the server said how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class NotSent(RetryableError):
    """The call never reached Loyalty.lt (connect timeout, connection refused): nothing can have landed."""


class RateLimited(RetryableError):
    """429: over the rate limit; the X-RateLimit-* values when the server sent them."""

    def __init__(self, message: str, *, limit: int | None = None, remaining: int | None = None,
                 reset: int | None = None, **kwargs: Any) -> None:
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        super().__init__(message, **kwargs)


class PermanentError(LoyaltyError):
    """The API refused the call; calling again with the same data would fail the same way."""


class AuthenticationError(PermanentError):
    """401/403 (or a 400 with a credentials code): the key pair or token is wrong or not allowed."""


class NotFoundError(PermanentError):
    """404: e.g. the user does not exist."""


class ValidationError(PermanentError):
    """400/422: the request's data was refused; see ``errors``."""


class AlreadyDone(LoyaltyError):
    """409 RESOURCE_ALREADY_EXISTS: the platform already processed this order."""
