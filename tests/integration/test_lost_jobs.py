"""A job that disappears before it ends (someone with access to Redis deletes it, or the dashboard's
Empty) is made again from its kept payload by the sweep of open jobs, and each order is awarded
once; and a later event kept as its difference from the order's paid event reads back as it came.
Real Redis, the intake through the app, the Loyalty.lt sandbox over HTTP, RQ's own worker."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job

from bridge.app import create_app
from bridge.sandbox import SandboxConfig, SandboxServer
from config.settings import Settings
from tests.conftest import fixture_bytes, make_stores, run_jobs, webhook_headers
from workers import context
from workers.context import WorkerContext
from workers.kept_payloads import VERSION_2

WOO = "coffee-woo"
ORDERS = range(4801, 4806)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(rate_limit_per_minute=0)) as server:
        yield server


@pytest.fixture
def ctx(settings: Settings, redis_conn: Redis, sandbox: SandboxServer) -> Iterator[WorkerContext]:
    # The sandbox's demo partner.
    stores = make_stores(sandbox.url, **{WOO: {"api_key": "lty_sandbox_demo", "api_secret": "sandbox-secret"}})
    built = WorkerContext.build(settings, stores, redis_conn)
    context.install(built)
    yield built
    context.install(None)


@pytest.fixture
def client(ctx: WorkerContext) -> FlaskClient:
    return create_app(ctx.settings, ctx.stores, ctx.connection).test_client()


def order(number: int, refunds: list[dict[str, object]] | None = None) -> bytes:
    """The published WooCommerce sample as another order of another customer."""
    payload = json.loads(fixture_bytes("woocommerce", "processing"))
    payload.update(id=number, number=str(number), refunds=refunds or [])
    payload["billing"]["email"] = f"customer-{number}@example.com"
    return json.dumps(payload).encode()


def post(client: FlaskClient, body: bytes, topic: str = "order.created") -> int:
    return client.post(f"/webhooks/woocommerce/{WOO}", data=body,
                       headers=webhook_headers("woocommerce", body, topic)).status_code


def purchases(sandbox: SandboxServer) -> Counter[str]:
    return Counter(t["reference_number"] for t in sandbox.sandbox.state.snapshot()["transactions"]
                   if t["type"] == "purchase")


def test_jobs_emptied_from_the_queue_or_deleted_are_made_again_and_awarded_once(
        client: FlaskClient, ctx: WorkerContext, sandbox: SandboxServer) -> None:
    assert [post(client, order(n)) for n in ORDERS] == [202] * 5
    queue = ctx.events.queue
    lost = [f"paid-{WOO}-{n}" for n in ORDERS]
    # What rq-dashboard's "Empty" on the queued jobs does (Queue.empty: the list and every job hash),
    # and its delete button on one more job, after its first delivery was taken.
    queue.empty()
    assert post(client, order(4806)) == 202
    Job.fetch(f"paid-{WOO}-4806", connection=ctx.connection).delete()
    lost.append(f"paid-{WOO}-4806")
    assert queue.count == 0 and not any(Job.exists(job_id, connection=ctx.connection) for job_id in lost)
    assert post(client, order(4801)) == 200            # the event is still known: a redelivery is a duplicate

    assert sorted(ctx.events.sweep(older_than=0)) == sorted(lost)   # what worker maintenance runs
    assert sorted(queue.job_ids) == sorted(lost)
    run_jobs(ctx)
    assert purchases(sandbox) == {f"WC-{n}": 1 for n in [*ORDERS, 4806]}
    assert all(ctx.ledger.get(WOO, f"WC-{n}").award is not None for n in [*ORDERS, 4806])
    assert ctx.events.sweep(older_than=0) == []        # all ended: nothing open, nothing made again
    assert ctx.connection.zcard(ctx.events.open_jobs_key) == 0


def test_a_refund_kept_as_its_difference_from_the_paid_order_reads_back_as_it_came(
        client: FlaskClient, ctx: WorkerContext, sandbox: SandboxServer) -> None:
    paid, refunded = order(4810), order(4810, [{"id": 4811, "reason": "Damaged mug", "total": "-4.84"}])
    post(client, paid)
    post(client, refunded, "order.updated")
    run_jobs(ctx)
    payloads = ctx.events.payloads
    raw = ctx.connection.get(payloads.key(f"refund-{WOO}-4810-4811"))
    whole = ctx.connection.get(payloads.key(f"paid-{WOO}-4810"))
    assert raw is not None and whole is not None
    assert raw[:1] == VERSION_2 and len(raw) < len(whole) / 3
    kept = payloads.get(f"refund-{WOO}-4810-4811")
    assert kept is not None and kept.payload == refunded.decode()
    # The paid event's payload is kept at least as long as the one that needs it.
    assert ctx.connection.pttl(payloads.key(f"paid-{WOO}-4810")) >= ctx.connection.pttl(
        payloads.key(f"refund-{WOO}-4810-4811"))
    # A replay of the refund runs from it: already applied, nothing called again.
    job = ctx.events.restore(f"refund-{WOO}-4810-4811")
    assert job is not None
    Queue(ctx.settings.queue_name, connection=ctx.connection).enqueue_job(job)
    run_jobs(ctx)
    end = ctx.events.ended(job.id)
    assert end is not None and end.outcome == "already applied"
    assert [t["type"] for t in sandbox.sandbox.state.snapshot()["transactions"]] == ["purchase", "refund"]
