"""What the Loyalty.lt client and the shop tasks tell the alerts, as it happens (``job_failed`` is
found in the failed registry instead, see :mod:`workers.alerts.checks`).

- every Loyalty.lt answer → ``credentials_rejected`` (401/403; ends at the store's next 2xx) and
  ``calls_refused`` (``alert_refused_in_row`` 400/422 answers in a row to one kind of call of one
  store; ends at that call's next 2xx);
- every sync run → ``shop_unreachable`` (``alert_shop_failed_runs`` failed runs in a row; ends at
  the next good run) and ``webhooks_missing`` (a run that queued events no webhook brought; ends at
  a run that queued none);
- every subscription watch → ``shop_subscription`` (anything wrong, and whether it was mended;
  ends at a watch that finds all well).

Each costs one Redis round trip at most on the usual path (a 2xx, a good run), and never raises:
an alert that cannot be recorded must not fail the job that had something to report.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec

from redis import Redis
from redis.exceptions import RedisError

from config.log_format import log
from config.settings import Settings
from workers.alerts.state import AlertState, condition_id

logger = logging.getLogger("workers.alerts")
P = ParamSpec("P")
CREDENTIALS = (401, 403)
REFUSED = (400, 422)


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except RedisError as exc:
            log(logger, "alert not recorded: cannot reach Redis", logging.WARNING, report=method.__name__,
                error_class=type(exc).__name__)
    return wrapper


class Alerts:
    """The reports of one process (built with its settings and Redis)."""

    def __init__(self, connection: Redis, settings: Settings) -> None:
        self.settings = settings
        self.state = AlertState(connection, receivers=len(settings.alert_urls), repeat=settings.alert_repeat)

    @_never_raises
    def answered(self, store: str, endpoint: str, status: int | None) -> None:
        """Loyalty.lt answered a call of ``store`` (the client's ``on_response`` hook)."""
        if status is None:
            return
        streak = f"refused:{store}:{endpoint}"
        if 200 <= status < 300:
            credentials, refused = condition_id("credentials_rejected", store), condition_id("calls_refused", store,
                                                                                          endpoint)
            with self.state.connection.pipeline(transaction=False) as pipe:
                pipe.delete(self.state.streak_key(streak))
                pipe.smismember(self.state.firing_key, [credentials, refused])
                _, firing = pipe.execute()
            if firing[0]:
                self.state.resolve("credentials_rejected", store)
            if firing[1]:
                self.state.resolve("calls_refused", store, endpoint)
        elif status in CREDENTIALS:
            self.state.fire("credentials_rejected", store, {"status": status, "endpoint": endpoint})
        elif status in REFUSED:
            in_row = self.state.lengthen(streak)
            if in_row >= self.settings.alert_refused_in_row:
                self.state.fire("calls_refused", store, {"status": status, "endpoint": endpoint, "in_row": in_row},
                                key=endpoint)

    @_never_raises
    def sync_ran(self, store: str, outcome: str, error: str, events_queued: int) -> None:
        """A sync run of ``store`` ended: ``outcome`` ok (with what it queued) or why not."""
        streak = f"sync:{store}"
        if outcome != "ok":
            runs = self.state.lengthen(streak)
            if runs >= self.settings.alert_shop_failed_runs:
                self.state.fire("shop_unreachable", store, {"runs": runs, "outcome": outcome, "error": error})
            return
        self.state.break_streak(streak)
        self.state.resolve("shop_unreachable", store)
        if events_queued >= self.settings.alert_missing_events:
            self.state.fire("webhooks_missing", store, {"events_queued": events_queued})
        elif events_queued == 0:
            self.state.resolve("webhooks_missing", store)

    @_never_raises
    def watched(self, store: str, topics: list[dict[str, Any]]) -> None:
        """A subscription watch of ``store`` ended; ``topics`` each with its problems and action."""
        wrong = [t for t in topics if t.get("problems")]
        if wrong:
            self.state.fire("shop_subscription", store, {"topics": wrong})
        else:
            self.state.resolve("shop_subscription", store)
