"""What ``bridge check --live`` saw a Loyalty.lt API do, kept per API URL and followed by the workers.

Two things about the Shop API are inferred, not documented: the body ``deduct-points`` takes, and
where the transaction list files a deduction. A probe finds both out and keeps them here; then

- a store whose API refused the full deduct body sends the body it accepted (``deduct_body``: the one
  setting the workers change, shown by ``bridge check``);
- crash recovery looks for a deduction the way the probe found it first: under the order's
  reference when the list filed it there, else on the card (:func:`workers.recovery.find_deduction`).

Redis: ``lb:api-observed:<API URL>``, one JSON document per Loyalty.lt API URL, 330 to 460 bytes (a
deployment has one or two: nothing per order). No TTL: the workers follow it, so it must not vanish
under them; each probe of the URL replaces it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from redis import Redis

from workers.ledger import KEY_PREFIX
from workers.loyalty import DeductBody

# Where the list filed the probe's deduction: under the order's reference (as the bridge sends it),
# under a reference of its own (the docs' "REFUND-ABC123"), or under none.
Filed = Literal["order reference", "own reference", "no reference"]
FILED_WORDS: dict[str, str] = {"order reference": "the order's reference", "own reference": "a reference of their own",
                               "no reference": "no reference"}


class ApiObservations(BaseModel):
    """What one probe saw one API do (a field left at its default: not seen, the bridge's default stands)."""

    api_url: str
    at: str                                # when the probe ran (UTC, ISO 8601)
    store: str                             # whose credentials it ran with
    passed: bool                           # every step matched
    deduct_body: DeductBody = "full"       # the body deduct-points took
    refused_fields: list[str] = []         # the fields the API objected to in the full body
    deduction_filed: Filed | None = None
    deduction_named_by: list[str] = []     # what in the listing named the refund: metadata, description, reference
    list_lag: float | None = None          # seconds until the award showed in the list
    rate_limit: int | None = None          # X-RateLimit-Limit as answered

    def summary(self) -> str:
        """One line: the setting and what recovery follows."""
        body = ("the full body" if self.deduct_body == "full" else
                f"only card_id, points, description; the full body was refused: {', '.join(self.refused_fields) or '?'}")
        filed = (f"listed under {FILED_WORDS[self.deduction_filed]}" if self.deduction_filed
                 else "not seen in the list")
        named = f", named by {' and '.join(self.deduction_named_by)}" if self.deduction_named_by else ""
        return (f"deduct body: {self.deduct_body} ({body}); deductions {filed}{named}; "
                f"probed {self.at} with {self.store}, {'passed' if self.passed else 'FAILED'}")


class Observations:
    """The only owner of the ``lb:api-observed:*`` keys."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    @staticmethod
    def key(api_url: str) -> str:
        return f"{KEY_PREFIX}api-observed:{api_url.rstrip('/')}"

    def get(self, api_url: str) -> ApiObservations | None:
        """What the last probe of ``api_url`` saw, or None when none ran."""
        raw = self.connection.get(self.key(api_url))
        return ApiObservations.model_validate_json(raw) if raw else None  # type: ignore[arg-type]

    def save(self, observed: ApiObservations) -> None:
        """Keep what a probe saw (replacing the last probe's)."""
        self.connection.set(self.key(observed.api_url), observed.model_dump_json(exclude_defaults=True))
