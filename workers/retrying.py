"""When a job that did not finish runs again.

RQ does the rescheduling; this module decides the delay, because it depends on why:

- a retryable failure (network, 5xx) backs off exponentially with jitter (half fixed, half
  random, so a burst of failures does not come back in lockstep), and at least as long as the
  server's ``Retry-After``; the exponent counts the job's failures, not its waits;
- a wait (a refund whose award has not landed, a full rate-limit window, a 429's pause of the API
  key) comes back after the wait;
- anything stops after ``retry_window`` (24 hours by default) and ends in the failed registry with
  the last reason.

The job hands RQ a ``Retry`` as its result (RQ 3 reschedules such a job and counts it in
``number_of_retries``). The ``Retry`` a job is enqueued with covers what the job cannot see: its
worker dying, or its timeout.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime

from rq.job import Job, Retry

from config.settings import Settings

# Attempts are bounded by time (the window); this only stops a runaway.
MAX_ATTEMPTS = 10_000
# Retries after a worker died under the job or the job timed out.
CRASH_RETRIES = 20
FAILURES = "failures"  # job.meta: retryable failures so far (the backoff's exponent)


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

    def initial(self) -> Retry:
        """The ``Retry`` a new job is enqueued with: for crashes and timeouts the job cannot report."""
        # RQ accepts float delays; its type hints say int.
        return Retry(max=CRASH_RETRIES, interval=[self.backoff(i) for i in range(CRASH_RETRIES)])  # type: ignore[misc]

    @staticmethod
    def attempts(job: Job) -> int:
        """How many times the job has run (waits included)."""
        return (job.number_of_retries or 0) + 1

    def _after(self, job: Job, delay: float) -> Retry | None:
        if age(job) + delay > self.window:
            return None
        if delay > 0:
            # RQ keeps a scheduled job's time in whole seconds, dropping the fraction: round the due
            # time up, so that a job never comes back before what it waits for (and waits again).
            now = time.time()
            delay = math.ceil(now + delay) - now
        return Retry(max=MAX_ATTEMPTS, interval=[delay])  # type: ignore[list-item]

    def retry(self, job: Job, at_least: float | None = None) -> Retry | None:
        """The next attempt after a retryable failure; None when that would pass the window.

        Waits do not grow the backoff: a job that waited for rate-limit slots a hundred times and
        then meets its first 5xx backs off as after a first failure.
        """
        failures = int(job.meta.get(FAILURES, 0))
        job.meta[FAILURES] = failures + 1
        job.save_meta()
        return self._after(job, max(self.backoff(failures), at_least or 0.0))

    def wait(self, job: Job, delay: float) -> Retry | None:
        """Come back after ``delay``; None when that would pass the window."""
        return self._after(job, delay)

    @staticmethod
    def at_due_time(delay: float) -> Retry:
        """Come back after ``delay`` whatever the window: a held-back award is not failing (its
        window starts when it falls due, see :func:`age`)."""
        return Retry(max=MAX_ATTEMPTS, interval=[delay])  # type: ignore[list-item]


def give_up(job: Job) -> None:
    """Send the job to the failed registry when it raises, instead of retrying it."""
    job.retries_left = 0


def age(job: Job) -> float:
    """Seconds since the job was created (its first delivery), last replayed by a person, or its
    held-back award fell due."""
    created = job.created_at or datetime.now(UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    for moment in (job.meta.get("replayed_at"), job.meta.get("due_at")):
        if moment:
            created = max(created, datetime.fromisoformat(moment))
    return (datetime.now(UTC) - created).total_seconds()
