"""Why a job did not finish: it must wait (nothing failed), or it cannot succeed as it is."""

from __future__ import annotations


class Wait(Exception):
    """The job cannot proceed yet: it comes back after ``delay`` seconds without using an attempt."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class JobFailed(Exception):
    """The job cannot succeed as it is; it ends in the failed registry with this reason."""
