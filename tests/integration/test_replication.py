"""BRIDGE_REDIS_MIN_REPLICAS against a real primary, a replica and a sentinel (the bridge reaches them
through its ``redis+sentinel://`` URL): nothing is acknowledged, and no Loyalty.lt call is made, before
the replicas hold what it depends on."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job
from rq.scheduler import RQScheduler

from bridge.app import create_app
from config.settings import Settings
from tests.conftest import FakeApi, Replicated, fixture_bytes, make_stores, run_jobs, webhook_headers
from workers import context
from workers.connection import connect
from workers.context import WorkerContext
from workers.ledger import Ledger

JOB = "paid-coffee-woo-4210"


def bridge_settings(replicated: Replicated, tmp_path: Path, min_replicas: int) -> Settings:
    # Retries a second apart: a job that must retry is not run again in the same burst.
    return Settings(REDIS_URL=replicated.sentinel.url, LOYALTY_API_URL="https://api.loyalty.test",
                    stores_file=tmp_path / "absent.toml", retry_base_delay=1, retry_max_delay=1,
                    retry_window=3600, wait_delay=0.05, unknown_call_settle=0,
                    redis_min_replicas=min_replicas, redis_wait_timeout=100)


def post_paid_order(settings: Settings, case: str = "processing",
                    topic: str = "order.created") -> tuple[int, dict[str, str], dict[str, str]]:
    app = create_app(settings, make_stores(), connect(settings.redis_url or "", timeout=2.0))
    body = fixture_bytes("woocommerce", case)
    resp = app.test_client().post("/webhooks/woocommerce/coffee-woo", data=body,
                                  headers=webhook_headers("woocommerce", body, topic))
    return resp.status_code, dict(resp.headers), resp.json or {}


def on_replica(replicated: Replicated) -> Redis:
    return Redis(port=replicated.replica.port)


def test_with_the_option_a_webhook_is_acknowledged_once_the_replica_holds_it(replicated: Replicated,
                                                                             tmp_path: Path) -> None:
    status, _, body = post_paid_order(bridge_settings(replicated, tmp_path, 1))
    assert (status, body["status"]) == (202, "queued")
    # Read at once, on the replica itself: acknowledged means already there.
    assert on_replica(replicated).exists(Job.key_for(JOB)) == 1


@pytest.mark.parametrize(("min_replicas", "answer"), [(0, 202), (1, 503)])
def test_with_a_replica_stopped_only_the_option_refuses_to_acknowledge(replicated: Replicated, tmp_path: Path,
                                                                        min_replicas: int, answer: int) -> None:
    settings = bridge_settings(replicated, tmp_path, min_replicas)
    replicated.replica.stop()
    status, headers, body = post_paid_order(settings)
    assert status == answer
    if answer == 503:
        assert int(headers["Retry-After"]) > 0 and body["error"] == "queue unavailable, retry later"
        # The shop sends it again once a replica is back: acknowledged then, and on the replica.
        replicated.start_replica()
        status, _, body = post_paid_order(settings)
        assert (status, body["status"]) == (200, "duplicate")
        assert on_replica(replicated).exists(Job.key_for(JOB)) == 1


def test_a_worker_makes_no_call_until_its_in_flight_mark_is_replicated(replicated: Replicated, tmp_path: Path,
                                                                       api: FakeApi) -> None:
    settings = bridge_settings(replicated, tmp_path, 1)
    assert post_paid_order(settings)[0] == 202
    connection = connect(settings.redis_url or "")
    ctx = WorkerContext.build(settings, make_stores(), connection)
    context.install(ctx)
    try:
        api.create_ok(points=278)
        replicated.replica.stop()
        run_jobs(ctx, rounds=1, horizon=0)
        assert api.calls("transactions/create") == []
        job = Job.fetch(JOB, connection=connection)
        assert "0 of 1 required Redis replicas confirmed the write" in job.meta["last_error"]
        assert ctx.ledger.get("coffee-woo", "WC-4210").inflight == {}   # the call was not made: no mark

        replicated.start_replica()
        run_jobs(ctx)
        assert len(api.calls("transactions/create")) == 1
        # The award the job went on from is on the replica.
        award = Ledger(on_replica(replicated), retention=86400).get("coffee-woo", "WC-4210").award
        assert award is not None and (award.points, award.transaction_id) == (278, 9001)
    finally:
        context.install(None)


def test_rq_scheduler_rebuilds_its_connection_through_the_sentinel(replicated: Replicated) -> None:
    scheduler = RQScheduler(["loyalty"], connection=connect(replicated.sentinel.url))
    assert scheduler.connection.set("written-by-the-scheduler", "1")   # only the primary takes writes
    with Redis(port=replicated.primary.port) as primary:
        assert primary.get("written-by-the-scheduler") == b"1"


def test_an_outcome_not_replicated_is_an_error_the_job_retries_on(replicated: Replicated) -> None:
    from decimal import Decimal

    from workers.ledger import AppliedRefund
    from workers.replication import NotReplicated, Replication

    ledger = Ledger(connect(replicated.sentinel.url), retention=86400, replication=Replication(1, 100))
    replicated.replica.stop()
    with pytest.raises(NotReplicated, match="0 of 1 required Redis replicas"):
        ledger.record_refund("coffee-woo", "WC-1", "77", AppliedRefund(points=5, amount=Decimal("1.00"), at="now"))
    # Written on the primary (the retry finds it there), just not known to be on a replica.
    assert ledger.get("coffee-woo", "WC-1").refunds["77"].points == 5


def test_the_dashboard_reads_through_the_apps_sentinel_connection(replicated: Replicated, tmp_path: Path) -> None:
    import base64

    from pydantic import SecretStr

    settings = bridge_settings(replicated, tmp_path, 1).model_copy(
        update={"dashboard_user": "ops", "dashboard_password": SecretStr("pw")})
    connection = connect(settings.redis_url or "", timeout=2.0)
    app = create_app(settings, make_stores(), connection)
    body = fixture_bytes("woocommerce", "processing")
    client = app.test_client()
    assert client.post("/webhooks/woocommerce/coffee-woo", data=body,
                       headers=webhook_headers("woocommerce", body, "order.created")).status_code == 202
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
    queues = client.get("/rq/0/data/queues.json", headers=auth).json
    assert {(q["name"], q["count"]) for q in queues["queues"]} >= {("loyalty", 1)}
    assert app.redis_conn is connection  # type: ignore[attr-defined]


def test_the_rate_limiter_keeps_its_windows_on_the_primary_through_sentinel(replicated: Replicated) -> None:
    from workers.ratelimit import KEY_PREFIX, ApiRateLimiter

    store = make_stores()["coffee-woo"]
    limiter = ApiRateLimiter(connect(replicated.sentinel.url))
    assert limiter.acquire(store) == 0
    with Redis(port=replicated.primary.port) as primary:
        assert primary.keys(f"{KEY_PREFIX}*")   # the windows are the primary's, where every worker counts


@pytest.mark.parametrize("kind", ["award", "refund"])
def test_a_retry_that_finds_its_outcome_recorded_goes_on_only_once_a_replica_holds_it(
        replicated: Replicated, tmp_path: Path, api: FakeApi, kind: str) -> None:
    settings = bridge_settings(replicated, tmp_path, 1)
    connection = connect(settings.redis_url or "")
    ctx = WorkerContext.build(settings, make_stores(), connection)
    context.install(ctx)
    try:
        # The replica stops acknowledging while the call is on the wire: the in-flight mark is on it,
        # the outcome recorded after the call is not, and the job retries.
        if kind == "award":
            api.create_ok(points=278, on_call=replicated.hold_replica)
            assert post_paid_order(settings)[0] == 202
            job_id, endpoint = JOB, "transactions/create"
        else:
            api.create_ok(points=278)
            assert post_paid_order(settings)[0] == 202
            run_jobs(ctx)
            api.deduct_ok(on_call=replicated.hold_replica)
            assert post_paid_order(settings, "partial_refund", "order.updated")[0] == 202
            job_id, endpoint = "refund-coffee-woo-4210-4301", "transactions/deduct-points"
        run_jobs(ctx, rounds=1, horizon=0)
        job = Job.fetch(job_id, connection=connection)
        assert "0 of 1 required Redis replicas confirmed the write" in job.meta["last_error"]
        record = ctx.ledger.get("coffee-woo", "WC-4210")
        assert (record.award if kind == "award" else record.refunds.get("4301")) is not None   # on the primary
        attempts = ctx.retry_policy.attempts(job)

        # The retry finds the outcome on the primary, and the replica still lacks it: it does not
        # finish (a WAIT of its own, with nothing written, would have been answered at once).
        run_jobs(ctx, rounds=2, horizon=2)
        job.refresh()
        assert ctx.retry_policy.attempts(job) > attempts and job.get_status() == "scheduled"
        assert "0 of 1 required Redis replicas confirmed the write" in job.meta["last_error"]

        replicated.release_replica()
        run_jobs(ctx)
        end = ctx.events.ended(job_id)   # RQ deletes a finished job; the order's journal says how it ended
        assert end is not None and not Job.exists(job_id, connection=connection)
        assert len(api.calls(endpoint)) == 1
        on_replica_record = Ledger(on_replica(replicated), retention=86400).get("coffee-woo", "WC-4210")
        assert (on_replica_record.award if kind == "award" else on_replica_record.refunds.get("4301")) is not None
    finally:
        context.install(None)


def test_a_redelivery_is_answered_duplicate_only_once_a_replica_holds_the_first_delivery(replicated: Replicated,
                                                                                          tmp_path: Path) -> None:
    settings = bridge_settings(replicated, tmp_path, 1)
    replicated.hold_replica()
    # The first delivery is written on the primary, but not acknowledged: no replica has it.
    assert post_paid_order(settings)[0] == 503
    with Redis(port=replicated.primary.port) as primary:
        assert primary.exists(Job.key_for(JOB)) == 1
    # The shop sends it again while the replica still lacks it: a "duplicate" now would tell the shop
    # to stop sending an order that a failover would lose.
    status, headers, _ = post_paid_order(settings)
    assert status == 503 and int(headers["Retry-After"]) > 0
    replicated.release_replica()
    status, _, body = post_paid_order(settings)
    assert (status, body["status"]) == (200, "duplicate")
    assert on_replica(replicated).exists(Job.key_for(JOB)) == 1


def test_an_outcome_found_recorded_is_confirmed_once_the_replica_holds_it(replicated: Replicated) -> None:
    from decimal import Decimal

    from workers.ledger import AppliedRefund
    from workers.replication import NotReplicated, Replication

    ledger = Ledger(connect(replicated.sentinel.url), retention=86400, replication=Replication(1, 100))
    replicated.hold_replica()
    with pytest.raises(NotReplicated):
        ledger.record_refund("coffee-woo", "WC-1", "77", AppliedRefund(points=5, amount=Decimal("1.00"), at="now"))
    # A retry finds the refund on the primary: before it goes on, the replica must hold it.
    assert ledger.get("coffee-woo", "WC-1").refunds["77"].points == 5
    with pytest.raises(NotReplicated, match="0 of 1 required Redis replicas"):
        ledger.confirm()
    replicated.release_replica()
    ledger.confirm()
    assert Ledger(on_replica(replicated), retention=86400).get("coffee-woo", "WC-1").refunds["77"].points == 5
