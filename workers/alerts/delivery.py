"""Sending alerts: the JSON body, its Standard Webhooks signature, the POST, retries with backoff.

Each notification is one ``POST`` of JSON to each receiver in ``BRIDGE_ALERT_WEBHOOKS``: ``text``
(what Slack, Mattermost and Rocket.Chat incoming webhooks show), ``alert``, ``state``, ``store``,
``first_seen``, ``count``, ``details``, plus ``id`` (the condition) and ``last_seen``/``ended_at``.
With ``BRIDGE_ALERT_SECRET`` it is signed with the ``standardwebhooks`` package, the reference
implementation receivers verify with: ``webhook-id`` (the same for every retry of a notification,
so a receiver can drop a repeat), ``webhook-timestamp``, ``webhook-signature: v1,<base64>``.

A receiver that answers 2xx has it. One that is down, times out, or answers 408/429/5xx is tried
again with backoff (the jobs' :class:`~workers.retrying.RetryPolicy` with the alert settings) until
``alert_give_up_after``; any other 4xx (a removed Slack hook: 404/410) is refused for good, since
retrying cannot change it. Every attempt is counted in ``bridge_alert_deliveries_total``. Receiver
URLs are secrets (a Slack hook's path is its key): logs and answers show only scheme, host and #n.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel
from standardwebhooks import Webhook

from config.log_format import log
from config.settings import Settings
from workers.alerts.kinds import text_for
from workers.alerts.records import AlertRecord, Delivery, State
from workers.alerts.state import AlertState
from workers.metrics import ALERT_DELIVERIES
from workers.privacy import mask_emails
from workers.retrying import RetryPolicy

logger = logging.getLogger("workers.alerts.delivery")
RETRYABLE = {408, 425, 429}


class AlertBody(BaseModel):
    """What a receiver gets (the issue's contract, and a little more)."""

    text: str
    alert: str
    state: State
    store: str | None
    first_seen: datetime
    count: int
    details: dict[str, Any]
    id: str
    last_seen: datetime
    ended_at: datetime | None = None


class Answer(BaseModel):
    """What one receiver answered (``status`` None: no answer, see ``error``)."""

    receiver: str
    status: int | None = None
    body: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in RETRYABLE


def receiver_name(url: str, index: int) -> str:
    """``#1 https://hooks.slack.com/…``: enough to tell receivers apart, not the hook's secret path."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"#{index + 1} {parts.scheme}://{host}{port}/…"


def render(record: AlertRecord, state: State) -> bytes:
    """The JSON body of a notification, emails masked."""
    body = AlertBody(text=text_for(record, state == "firing"), alert=record.alert, state=state, store=record.store,
                     first_seen=record.first_seen, count=record.count, details=record.details, id=record.id,
                     last_seen=record.last_seen, ended_at=record.ended_at if state == "resolved" else None)
    return mask_emails(body.model_dump_json()).encode()


class Sender:
    """Posts notifications to the receivers; one per process (it keeps their connections)."""

    def __init__(self, settings: Settings, state: AlertState) -> None:
        self.urls = settings.alert_urls
        self.state = state
        secret = settings.alert_secret
        self.webhook = Webhook(secret.get_secret_value()) if secret is not None else None
        self.timeout = settings.alert_timeout
        self.give_up_after = settings.alert_give_up_after
        # The jobs' backoff (exponential, jittered, capped), with the alerts' base and cap.
        self.backoff = RetryPolicy(settings.model_copy(update={
            "retry_base_delay": settings.alert_retry_base_delay,
            "retry_max_delay": settings.alert_retry_max_delay})).backoff
        self.session = requests.Session()

    def headers(self, message_id: str, body: bytes) -> dict[str, str]:
        """Content type, and the Standard Webhooks headers when a secret is set."""
        headers = {"Content-Type": "application/json", "User-Agent": "loyalty-bridge-alerts"}
        if self.webhook is not None:
            now = datetime.now(UTC)
            headers.update({"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
                            "webhook-signature": self.webhook.sign(message_id, now, body.decode())})
        return headers

    def post(self, index: int, message_id: str, body: bytes) -> Answer:
        """One POST to receiver ``index``; never raises for the receiver's sake."""
        name = receiver_name(self.urls[index], index)
        try:
            resp = self.session.post(self.urls[index], data=body, headers=self.headers(message_id, body),
                                     timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            return Answer(receiver=name, error=type(exc).__name__)
        return Answer(receiver=name, status=resp.status_code, body=resp.text[:200].strip())

    def deliver_due(self, lease: float | None = None) -> int:
        """Send what is due in the outbox (claimed, so no other process sends it too); returns how
        many were sent."""
        sent = 0
        for delivery in self.state.claim(lease or 2 * self.timeout + 5):
            sent += self._deliver(delivery)
        return sent

    def _deliver(self, delivery: Delivery) -> int:
        record = self.state.record(delivery.id)
        if record is None or delivery.receiver >= len(self.urls):
            self.state.delivered(delivery)  # expired long ago, or the receiver was removed
            return 0
        # The same id for every retry of one notification (the spec's idempotency key).
        notification = f"{delivery.id}|{delivery.seq}|{delivery.state}"
        message_id = "alert_" + hashlib.sha256(notification.encode()).hexdigest()[:24]
        answer = self.post(delivery.receiver, message_id, render(record, delivery.state))
        fields: dict[str, Any] = {"alert": record.alert, "store": record.store, "state": delivery.state,
                                  "receiver": answer.receiver, "status": answer.status, "error": answer.error}
        receiver = str(delivery.receiver + 1)
        if answer.ok:
            self.state.delivered(delivery)
            ALERT_DELIVERIES.labels(record.alert, receiver, "sent").inc()
            log(logger, "alert sent", **fields)
            return 1
        attempts, first = self.state.failed_attempt(delivery)
        if not answer.retryable or time.time() - first > self.give_up_after:
            self.state.delivered(delivery)
            outcome = "given_up" if answer.retryable else "refused"
            ALERT_DELIVERIES.labels(record.alert, receiver, outcome).inc()
            log(logger, f"alert not delivered ({outcome})", logging.ERROR, attempts=attempts, answer=answer.body,
                **fields)
            return 0
        delay = self.backoff(attempts - 1)
        self.state.retry_at(delivery, time.time() + delay)
        ALERT_DELIVERIES.labels(record.alert, receiver, "failed").inc()
        log(logger, "alert receiver failed; trying again", logging.WARNING, attempts=attempts, retry_in_s=delay,
            **fields)
        return 0

    def test(self) -> list[Answer]:
        """Send a test alert to every receiver now, and say what each answered."""
        now = datetime.now(UTC)
        record = AlertRecord(id="test:-", alert="test", first_seen=now, last_seen=now,
                             details={"sent_by": "bridge alerts test"})
        body = render(record, "firing")
        message_id = f"alert_test_{int(now.timestamp())}"
        answers = [self.post(i, message_id, body) for i in range(len(self.urls))]
        for i, answer in enumerate(answers):
            ALERT_DELIVERIES.labels("test", str(i + 1), "sent" if answer.ok else "refused").inc()
        return answers
