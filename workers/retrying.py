"""When a job that did not finish runs again.

RQ's ``Retry`` and scheduler do the rescheduling; this module decides the delay each time, because
it depends on why the job did not finish:

- a retryable failure backs off exponentially with jitter (half fixed, half random, so a burst of
  failures does not come back in lockstep), at least as long as the server's ``Retry-After``;
- a wait (a refund whose award has not landed yet, a limiter slot) comes back after the wait and
  does not use up an attempt, since nothing failed;
- anything, retries and waits alike, stops after ``retry_window`` (24 hours by default) and ends in
  the failed registry with the last reason.

RQ reads the next delay from ``job.retry_intervals`` at index ``len - retries_left``; keeping a single
interval and a large ``retries_left`` means the delay set here is the one RQ uses.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from rq.job import Job, Retry

from config.settings import Settings

# Attempts are bounded by time (the window); this only stops a runaway.
MAX_ATTEMPTS = 1000


class RetryPolicy:
    """Backoff, waits and giving up, from the process settings."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.base = settings.retry_base_delay
        self.cap = settings.retry_max_delay
        self.window = settings.retry_window
        self.rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (0 for the first)."""
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 40))
        return round(ceiling / 2 + self.rng.uniform(0, ceiling / 2), 3)

    def initial(self) -> Retry | None:
        """The ``Retry`` a new job is enqueued with (None when retries are switched off)."""
        if self.window <= 0:
            return None
        # RQ accepts float delays; its type hints say int.
        return Retry(max=MAX_ATTEMPTS, interval=[self.backoff(0)])  # type: ignore[list-item]

    @staticmethod
    def attempts(job: Job) -> int:
        """How many times the job has failed so far (waits not counted)."""
        if job.retries_left is None:
            return 0
        return max(MAX_ATTEMPTS - job.retries_left, 0)

    def out_of_time(self, job: Job, delay: float) -> bool:
        """Whether running again after ``delay`` would go past the retry window."""
        return job.retries_left is None or age(job) + delay > self.window

    def retry(self, job: Job, at_least: float | None = None) -> float | None:
        """Schedule the next attempt after a retryable failure; None when out of time or attempts."""
        delay = max(self.backoff(self.attempts(job)), at_least or 0.0)
        if self.out_of_time(job, delay) or not job.retries_left:
            give_up(job)
            return None
        job.retry_intervals = [delay]
        return delay

    def wait(self, job: Job, delay: float) -> float | None:
        """Run the job again after ``delay`` without using up an attempt; None when out of time."""
        if self.out_of_time(job, delay):
            give_up(job)
            return None
        # RQ takes one attempt off when it reschedules; a wait gives it back.
        job.retries_left = (job.retries_left or 0) + 1
        job.retry_intervals = [delay]
        return delay


def give_up(job: Job) -> None:
    """Send the job to the failed registry instead of retrying it."""
    job.retries_left = 0


def age(job: Job) -> float:
    """Seconds since the job was created (its first delivery) or last replayed by a person."""
    created = job.created_at or datetime.now(UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    replayed = job.meta.get("replayed_at")
    if replayed:
        created = max(created, datetime.fromisoformat(replayed))
    return (datetime.now(UTC) - created).total_seconds()
