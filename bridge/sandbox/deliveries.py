"""The emulated shops' webhook deliveries: real signed HTTP posts, from a background thread.

A shop does not deliver inside the request that changed the order, and neither do the emulators:
each delivery is queued and posted by one thread, and its outcome is reported back so the shop can
count consecutive failures and disable (WooCommerce) or remove (Shopify) the subscription, as the
platforms do. Success is a 2xx, or a 301/302 (WooCommerce counts those as delivered).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

logger = logging.getLogger("bridge.sandbox.deliveries")
DELIVERED = {301, 302}


@dataclass
class Outgoing:
    """One delivery to make; ``done(ok, status)`` is told how it went."""

    url: str
    body: bytes
    headers: dict[str, str]
    done: Callable[[bool, int | None], None] = field(default=lambda ok, status: None)


class Deliverer:
    """A queue of deliveries and the thread that posts them, one at a time, in order."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._queue: queue.Queue[Outgoing | None] = queue.Queue()
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="shop-webhooks", daemon=True)
        self._thread.start()
        self.log: list[dict[str, object]] = []

    def submit(self, outgoing: Outgoing) -> None:
        """Queue a delivery."""
        self._queue.put(outgoing)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery was made (for tests and demos); False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        """Stop after the deliveries already queued."""
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            outgoing = self._queue.get()
            try:
                if outgoing is None:
                    return
                self._deliver(outgoing)
            finally:
                self._queue.task_done()

    def _deliver(self, outgoing: Outgoing) -> None:
        status: int | None = None
        try:
            response = self._session.post(outgoing.url, data=outgoing.body, headers=outgoing.headers,
                                          timeout=self.timeout, allow_redirects=False)
            status = response.status_code
        except requests.RequestException as exc:
            logger.info("webhook to %s failed: %s", outgoing.url, type(exc).__name__)
        ok = status is not None and (200 <= status < 300 or status in DELIVERED)
        self.log.append({"url": outgoing.url, "status": status, "ok": ok})
        del self.log[:-200]
        try:
            outgoing.done(ok, status)
        except Exception:  # a bookkeeping bug must not stop the deliveries
            logger.exception("delivery callback failed")
