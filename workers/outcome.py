"""What a job did: the result RQ keeps for it, and what ``bridge status`` shows."""

from __future__ import annotations

from pydantic import BaseModel


class Outcome(BaseModel):
    """One job's outcome (awarded, deducted, skipped, pending the award, ...) with its numbers."""

    outcome: str
    reference: str | None = None
    points: int | None = None
    transaction_id: int | None = None
    reason: str | None = None
