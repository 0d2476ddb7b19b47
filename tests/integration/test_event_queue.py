"""The event queue's job hash is RQ's own: what the per-process template writes is, field for field,
what ``Job.create(...).to_dict()`` writes (apart from the times), so an RQ upgrade that changes the
hash fails here rather than leaving workers, registries or the dashboard to misread it. The payload
is kept once, beside the job, and the job is made again from it when RQ no longer has it."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq.job import Job, JobStatus

from config.settings import Settings
from workers.event_queue import JOB_FUNC, EventQueue
from workers.events import Event

EVENTS = [
    Event(store="coffee-woo", platform="woocommerce", kind="paid", order_id="4210", reference="WC-4210",
          topic="order.created"),
    # A Shopify refund: no reference in the delivery (None in the meta).
    Event(store="coffee-shopify", platform="shopify", kind="refund", order_id="5619882082369",
          refund_id="929361465", topic="refunds/create"),
]
PAYLOAD = '{"id": 4210, "note": "Ąžuolas — ünïcode survives"}'
TIMES = ("created_at", "enqueued_at")


def rq_hash(job: Job, connection: Redis) -> dict[bytes, bytes]:
    """What RQ's ``Job.save`` would write for ``job``, as Redis returns it (unset fields left out)."""
    encode = connection.get_encoder().encode
    return {name.encode(): encode(value) for name, value in job.to_dict().items() if value is not None and value != ""}


@pytest.mark.parametrize("event", EVENTS, ids=[e.kind for e in EVENTS])
def test_the_job_hash_is_field_for_field_rqs(redis_conn: Redis, settings: Settings, event: Event) -> None:
    events = EventQueue(redis_conn, settings)
    before = datetime.now(UTC)
    assert events.submit(event, PAYLOAD, "d-1", "req-1")
    written: dict[bytes, bytes] = redis_conn.hgetall(Job.key_for(event.job_id))  # type: ignore[assignment]

    # The reference: RQ building the same job from scratch with the intake's settings.
    expected = Job.create(
        JOB_FUNC, args=(event.model_dump(mode="json"),), id=event.job_id, connection=redis_conn,
        description=event.label, timeout=settings.job_timeout, result_ttl=0,
        failure_ttl=settings.payload_retention, retry=events.jobs.options["retry"], origin=settings.queue_name,
        status=JobStatus.QUEUED,
        meta={"store": event.store, "kind": event.kind, "order_id": event.order_id, "reference": event.reference,
              "refund_id": event.refund_id, "delivery_id": "d-1", "request_id": "req-1"})
    expected.enqueued_at = datetime.now(UTC)
    reference = rq_hash(expected, redis_conn)

    assert set(written) == set(reference)
    for name in reference:
        if name.decode() not in (*TIMES, "data"):
            assert (name, written[name]) == (name, reference[name])
    # The call, as RQ serialises it; compressed with a smaller window than RQ's (RQ reads any zlib stream).
    assert zlib.decompress(written[b"data"]) == zlib.decompress(reference[b"data"]) == expected.data
    for name in TIMES:
        stamp = datetime.strptime(written[name.encode()].decode(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert before - timedelta(milliseconds=1) <= stamp <= datetime.now(UTC)


def test_rq_reads_the_job_back_as_it_built_it(redis_conn: Redis, settings: Settings) -> None:
    events = EventQueue(redis_conn, settings)
    event = EVENTS[0]
    events.submit(event, PAYLOAD, "d-1", "req-1")
    job = Job.fetch(event.job_id, connection=redis_conn)
    built = events.build_job(event, "d-1", "req-1")
    assert (job.func_name, job.args, job.kwargs, job.meta) == (built.func_name, built.args, built.kwargs, built.meta)
    assert (job.description, job.origin, job.timeout, job.result_ttl, job.failure_ttl) == \
        (built.description, built.origin, built.timeout, built.result_ttl, built.failure_ttl)
    assert (job.retries_left, job.retry_intervals) == (built.retries_left, built.retry_intervals)
    assert job.get_status() == JobStatus.QUEUED
    assert job.created_at is not None and job.enqueued_at is not None
    assert job.args == (event.model_dump(mode="json"),)          # the payload is kept once, apart
    kept = events.payloads.get(event.job_id)
    assert kept is not None and (kept.payload, kept.event, kept.meta) == (PAYLOAD, event, job.meta)
    assert events.queue.job_ids == [event.job_id]


def test_a_job_rq_no_longer_has_is_made_again_from_its_kept_payload(redis_conn: Redis, settings: Settings) -> None:
    events = EventQueue(redis_conn, settings)
    event = EVENTS[1]
    events.submit(event, PAYLOAD, "d-1", "req-1")
    queued = Job.fetch(event.job_id, connection=redis_conn)
    redis_conn.delete(queued.key)
    rebuilt = events.restore(event.job_id)
    assert rebuilt is not None and not redis_conn.exists(rebuilt.key)       # made, not saved
    assert (rebuilt.func_name, rebuilt.args, rebuilt.meta, rebuilt.description, rebuilt.retries_left) == \
        (queued.func_name, queued.args, queued.meta, queued.description, queued.retries_left)
    assert abs((rebuilt.created_at - queued.created_at.replace(tzinfo=UTC)).total_seconds()) < 0.01
    assert not events.submit(event, PAYLOAD, "d-2")                          # still known: a duplicate


def test_values_written_into_the_script_reach_redis_unchanged(redis_conn: Redis) -> None:
    from workers.event_queue import _lua_string

    every_byte = bytes(range(256)) + b'"\\]]\\"'
    assert redis_conn.eval(f"return {_lua_string(every_byte)}", 0) == every_byte
