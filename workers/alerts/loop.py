"""The background thread every long-running process keeps: it sends what is due and, one process per
interval, runs the periodic checks.

Both web processes (gunicorn's workers, ``bridge web``) and worker processes run one, so an alert
leaves from whichever process is up; the outbox claim and the checks' lease in Redis keep them
from doing the same work twice. Nothing here can stop its process: a Redis error or a bug is one
log line, and the loop goes on.
"""

from __future__ import annotations

import logging
import os
import threading

from redis.exceptions import RedisError

from config.log_format import log
from workers.alerts.checks import run_checks
from workers.alerts.delivery import Sender
from workers.alerts.reports import Alerts

logger = logging.getLogger("workers.alerts.loop")
# How often the outbox is looked at: a notification is sent at most this late.
POLL = 1.0


class AlertLoop:
    """Checks and deliveries in a daemon thread of this process (started by :meth:`start`)."""

    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts
        self.sender = Sender(alerts.settings, alerts.state)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()

    def start(self) -> None:
        """Start the thread unless it runs in this process already (safe to call after a fork)."""
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def once(self) -> None:
        """One turn: the checks if this process has the round, then whatever is due."""
        settings = self.alerts.settings
        if self.alerts.state.take_round(settings.alert_check_interval):
            run_checks(self.alerts.state, settings)
        if self.sender.urls:
            self.sender.deliver_due()

    def _run(self) -> None:
        # One line when Redis goes and one when it is back: the process's own waiting lines already say
        # how the outage goes, and this loop turns every second.
        paused = False
        while not self._stop.wait(POLL):
            try:
                self.once()
                if paused:
                    paused = False
                    log(logger, "alerts: Redis answers again; checks and deliveries resume", logging.INFO)
            except RedisError as exc:
                if not paused:
                    paused = True
                    log(logger, "alerts: cannot reach Redis; checks and deliveries paused until it answers",
                        logging.WARNING, error_class=type(exc).__name__)
            except Exception:  # a bug here must not stop the process; the next turn tries again
                logger.exception("alert loop turn failed")
