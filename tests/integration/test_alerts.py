"""Alert state and delivery against a real Redis and a real receiver on loopback: one notification per
condition however many processes see it, repeats, resolution, retries and refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr, ValidationError
from redis import Redis
from rq.registry import FailedJobRegistry
from standardwebhooks import Webhook

from config.settings import Settings
from tests.conftest import FakeApi, fixture_bytes, run_jobs, webhook_headers
from workers.alerts.checks import check_failed, find_failed
from workers.alerts.delivery import Sender
from workers.alerts.reports import Alerts
from workers.alerts.state import AlertState
from workers.context import WorkerContext
from workers.events import Event
from tests.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


def alerts_for(settings: Settings, receiver: Receiver, redis_conn: Redis, **changes: object) -> Alerts:
    tuned = settings.model_copy(update={"alert_webhooks": receiver.url, "alert_secret": None, "alert_digest_seconds": 0,
                                        "alert_retry_base_delay": 0.05, "alert_retry_max_delay": 0.1, **changes})
    return Alerts(redis_conn, tuned)


def test_a_condition_seen_by_many_processes_at_once_is_told_once(settings: Settings, redis_conn: Redis,
                                                                  receiver: Receiver) -> None:
    # Each thread its own connection, as separate processes would have.
    states = [AlertState(Redis.from_url(settings.redis_url or ""), receivers=1, repeat=3600) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        queued = list(pool.map(lambda s: s.fire("redis", None, {"problems": ["x"]}), states * 4))
    assert queued.count(True) == 1
    assert states[0].record("redis:-").count == 32  # type: ignore[union-attr]
    assert states[0].pending() == 1
    assert [s.resolve("redis", None) for s in states[:3]] == [True, False, False]
    assert states[0].pending() == 2 and states[0].firing() == []


def test_a_lasting_condition_is_told_again_after_the_repeat_interval(redis_conn: Redis) -> None:
    state = AlertState(redis_conn, receivers=2, repeat=0.3)
    assert state.fire("workers_down", None, {"waiting": 1})
    assert not state.fire("workers_down", None, {"waiting": 2})
    time.sleep(0.35)
    assert state.fire("workers_down", None, {"waiting": 3})
    assert state.pending() == 4  # two notifications, two receivers each


def test_failed_jobs_become_one_digest_per_store_signed_and_retried_until_taken(
        settings: Settings, client: FlaskClient, worker_ctx: WorkerContext, api: FakeApi, redis_conn: Redis,
        receiver: Receiver) -> None:
    alerts = alerts_for(settings, receiver, redis_conn, alert_secret=SecretStr(SECRET))
    api.error("transactions/create", 422, {"success": False, "message": "Validation failed", "code": 422,
                                           "errors": {"user_email": ["jonas@example.com is not allowed"]}})
    body = fixture_bytes("woocommerce", "processing")
    client.post("/webhooks/woocommerce/coffee-woo", data=body,
                headers=webhook_headers("woocommerce", body, "order.created"))
    run_jobs(worker_ctx)
    # Another failure of the store, by another road: a job whose retries after worker crashes ran out
    # goes to the failed registry without the job saying so.
    crashed = worker_ctx.events.build_job(Event(store="coffee-woo", platform="woocommerce", kind="paid",
                                                order_id="77", reference="WC-77"), "{}")
    crashed.save()
    FailedJobRegistry(queue=worker_ctx.events.queue).add(crashed, exc_string="Work-horse terminated unexpectedly")
    find_failed(alerts.state, alerts.settings)
    find_failed(alerts.state, alerts.settings)  # a second look finds nothing new
    [record] = alerts.state.firing()
    assert (record.alert, record.store, record.count) == ("job_failed", "coffee-woo", 2)
    assert {f["reference"] for f in record.details["failures"]} == {"WC-4210", "WC-77"}

    api.mock.add_passthru(receiver.url)  # only Loyalty.lt is faked: the receiver is real
    sender = Sender(alerts.settings, alerts.state)
    receiver.fail_next = 2
    for _ in range(100):
        if not alerts.state.pending():
            break
        sender.deliver_due()
        time.sleep(0.05)
    assert [status for _, _, status in receiver.posts] == [503, 503, 200]
    assert len({headers["webhook-id"] for headers, _, _ in receiver.posts}) == 1  # one id for every retry
    headers, raw, _ = receiver.posts[-1]
    sent = Webhook(SECRET).verify(raw, headers)
    assert (sent["alert"], sent["state"], sent["store"], sent["count"]) == ("job_failed", "firing", "coffee-woo", 2)
    assert "bridge replay --failed --store coffee-woo" in sent["text"]
    assert "bridge replay WC-4210 --store coffee-woo" in raw.decode()
    assert b"jonas@" not in raw and b"j***@example.com" in raw

    # Both leave the failed registry (replayed, dismissed): the digest ends.
    FailedJobRegistry(queue=worker_ctx.events.queue).remove("paid-coffee-woo-4210")
    check_failed(alerts.state, "loyalty")
    assert len(alerts.state.firing()) == 1
    FailedJobRegistry(queue=worker_ctx.events.queue).remove("paid-coffee-woo-77")
    check_failed(alerts.state, "loyalty")
    assert alerts.state.firing() == [] and alerts.state.pending() == 1


def test_a_receiver_that_refuses_is_not_tried_again(settings: Settings, redis_conn: Redis,
                                                    receiver: Receiver) -> None:
    alerts = alerts_for(settings, receiver, redis_conn)
    receiver.fail_next, receiver.fail_status = 1, 404  # a Slack hook that was removed
    alerts.state.fire("redis", None, {"problems": ["x"]})
    sender = Sender(alerts.settings, alerts.state)
    sender.deliver_due()
    assert [status for _, _, status in receiver.posts] == [404]
    assert alerts.state.pending() == 0
    assert "webhook-signature" not in receiver.posts[0][0]  # no secret set: not signed


def test_calls_refused_needs_several_in_a_row_and_ends_at_the_next_success(settings: Settings, redis_conn: Redis,
                                                                           receiver: Receiver) -> None:
    alerts = alerts_for(settings, receiver, redis_conn, alert_refused_in_row=3)
    for status in (422, 422, 200, 422, 422):
        alerts.answered("coffee-woo", "transactions/deduct-points", status)
    assert alerts.state.firing() == []
    alerts.answered("coffee-woo", "transactions/deduct-points", 400)
    [record] = alerts.state.firing()
    assert (record.alert, record.key, record.details["in_row"]) == ("calls_refused", "transactions/deduct-points", 3)
    alerts.answered("coffee-woo", "transactions/create", 201)
    assert len(alerts.state.firing()) == 1  # another kind of call succeeding says nothing about this one
    alerts.answered("coffee-woo", "transactions/deduct-points", 200)
    assert alerts.state.firing() == []


def test_a_secret_that_is_not_a_standard_webhooks_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(alert_secret="not base64 at all!")
    assert "whsec_" in str(caught.value) and "not base64 at all" not in str(caught.value)


def test_a_digest_that_ends_while_held_is_told_firing_then_resolved(redis_conn: Redis) -> None:
    state = AlertState(redis_conn, receivers=1, repeat=3600)
    state.fire("job_failed", "coffee-woo", {"failures": []}, hold=0.5)
    assert state.resolve("job_failed", "coffee-woo")
    assert state.claim(lease=10) == []  # neither before the digest's time
    time.sleep(0.55)
    assert [d.state for d in state.claim(lease=10)] == ["firing", "resolved"]
