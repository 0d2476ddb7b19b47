"""Faults with real processes: gunicorn web processes, `bridge worker` processes, a real Redis and the
sandbox over HTTP. Whatever happens, each paid order is awarded once, each refund deducted once, and
no webhook that got a 2xx is lost."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from bench.chaos import check, run, schedule
from bench.cluster import Cluster, wait_until
from bench.workload import Delivery, PlannedOrder, deliveries, plan
from bridge.sandbox import SandboxConfig
from workers.ledger import Ledger

pytestmark = pytest.mark.fault


def post_until_accepted(url: str, delivery: Delivery, answers: Counter[int] | None = None,
                        timeout: float = 60) -> int:
    """Post like a shop: again and again until a 2xx."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            resp = requests.post(url + delivery.path, data=delivery.body, headers=delivery.headers, timeout=10)
            status = resp.status_code
            if status == 503:
                assert int(resp.headers["Retry-After"]) > 0
        except requests.RequestException:
            status = 0
        if answers is not None:
            answers[status] += 1
        if 200 <= status < 300:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{delivery.label} was never accepted")


def send_all(cluster: Cluster, sends: list[Delivery], threads: int = 8) -> None:
    rng = random.Random(1)
    urls = cluster.urls
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(post_until_accepted, rng.choice(urls), d) for d in sends]:
            future.result()


def ledger(cluster: Cluster) -> Ledger:
    return Ledger(cluster.connection(), retention=86400)


def order_of(platform: str, order_id: int, total: str = "20.00", refund: str | None = None) -> PlannedOrder:
    from decimal import Decimal

    order = PlannedOrder(platform, order_id, f"fault-{order_id}@example.com", Decimal(total))
    if refund:
        order.refunds.append((order_id * 10, Decimal(refund)))
    return order


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def test_two_web_processes_and_three_workers_award_each_order_once(workdir: Path) -> None:
    orders = plan(40, random.Random(11))
    with Cluster(workdir, webs=2, workers=3) as cluster:
        send_all(cluster, schedule(orders, random.Random(12)) * 2)
        cluster.wait_drained(120)
        assert check(cluster, orders) == []
        purchases = Counter(t["reference_number"] for t in cluster.transactions() if t["type"] == "purchase")
        assert set(purchases.values()) == {1}


def wait_for_inflight(cluster: Cluster, store: str, reference: str, op: str) -> None:
    wait_until(lambda: op in ledger(cluster).get(store, reference).inflight, 30, f"{op} of {reference} in flight")


@pytest.mark.parametrize("listing", ["bridge", "docs"])
def test_sigkill_a_worker_mid_create_and_mid_deduct(workdir: Path, listing: str) -> None:
    """The call is on the wire when the worker dies; a new worker finishes the job, asking Loyalty.lt
    whether the call landed (it did) instead of calling again: whether Loyalty.lt lists the deduction
    under the order with the bridge's metadata, or as the docs' example shows one (its own reference,
    its own metadata, the description kept)."""
    order = order_of("woocommerce", 810001, total="20.00", refund="5.00")
    paid, refund = deliveries(order)
    sandbox = SandboxConfig(latency_ms=1500, rate_limit_per_minute=0, deduction_listing=listing)
    with Cluster(workdir, webs=1, workers=1, sandbox=sandbox) as c:
        post_until_accepted(c.urls[0], paid)
        wait_for_inflight(c, order.store, order.reference, "award")
        time.sleep(0.4)                                  # the create call is sleeping in the sandbox
        c.kill_worker(c.workers[0])
        c.start_worker()
        c.wait_drained(90)
        award = ledger(c).get(order.store, order.reference).award
        assert award is not None and award.source == "recovered"

        post_until_accepted(c.urls[0], refund)
        wait_for_inflight(c, order.store, order.reference, f"refund:{order.refunds[0][0]}")
        time.sleep(0.4)                                  # the deduct call is sleeping in the sandbox
        c.kill_worker(c.workers[0])
        c.start_worker()
        c.wait_drained(90)
        kinds = Counter(t["type"] for t in c.transactions() if t["reference_number"] == order.reference
                        or f"of {order.reference}" in str(t["description"]))
        assert kinds == {"purchase": 1, "refund": 1}
        assert c.balances() == {order.email: order.remaining}
        applied = ledger(c).get(order.store, order.reference).refunds[str(order.refunds[0][0])]
        assert applied.source == "recovered" and applied.points == order.awarded - order.remaining


def test_redis_restart_during_a_stream_loses_no_acknowledged_webhook(workdir: Path) -> None:
    orders = [order_of("shopify" if i % 2 else "woocommerce", 820000 + i) for i in range(60)]
    answers: Counter[int] = Counter()
    with Cluster(workdir, webs=1, workers=2, log=True) as c:
        def stream() -> None:
            for order in orders:
                post_until_accepted(c.urls[0], deliveries(order)[0], answers)
                time.sleep(0.05)

        sender = threading.Thread(target=stream)
        sender.start()
        time.sleep(1.0)
        c.restart_redis(down_for=2.0)
        sender.join(120)
        assert answers[503] > 0, "the intake should answer 503 while Redis is down"
        c.wait_drained(120)
        assert all(p.poll() is None for p in c.workers), f"workers wait for Redis (see {workdir}/workers.log)"
        assert check(c, orders) == []


@pytest.mark.parametrize("worker_args", [[], ["--fork"]], ids=["in-process", "forking"])
def test_a_worker_waits_for_redis_at_start_and_under_it(workdir: Path, worker_args: list[str]) -> None:
    """`bridge worker` started before Redis waits for it, one log line per attempt, and takes work when
    it comes. Redis stopped under the running worker while a create call is on the wire, and started
    again on the same port: the worker stays up, the interrupted job finishes exactly once (RQ retries
    it when its heartbeat runs out; the retry finds the award landed), and the next job is taken too."""
    first, second, third = (order_of("woocommerce", 850000 + i) for i in range(3))
    env = {"BRIDGE_JOB_TIMEOUT": "5", "BRIDGE_WORKER_HEARTBEAT_GRACE": "1", "BRIDGE_WORKER_MAINTENANCE_INTERVAL": "1"}
    slow = SandboxConfig(latency_ms=1500, rate_limit_per_minute=0)
    with Cluster(workdir, webs=1, workers=0, sandbox=slow, env=env, log=True) as c:
        c.redis.stop()
        worker = c.start_worker(*worker_args)
        worker_log = workdir / "workers.log"
        wait_until(lambda: worker_log.read_text().count("is unavailable") >= 2, 20, "the worker's waiting lines")
        c.redis.start()
        post_until_accepted(c.urls[0], deliveries(first)[0])
        c.wait_drained(30)

        post_until_accepted(c.urls[0], deliveries(second)[0])
        wait_for_inflight(c, second.store, second.reference, "award")
        time.sleep(0.4)                                  # the create call is sleeping in the sandbox
        c.restart_redis(down_for=2.0)                    # still down when the call returns
        post_until_accepted(c.urls[0], deliveries(third)[0])
        c.wait_drained(60)

        assert worker.poll() is None, "the worker must wait for Redis, not exit"
        assert check(c, [first, second, third]) == []
        purchases = Counter(t["reference_number"] for t in c.transactions() if t["type"] == "purchase")
        assert purchases == {first.reference: 1, second.reference: 1, third.reference: 1}
        award = ledger(c).get(second.store, second.reference).award
        assert award is not None and award.source == "recovered"
    lines = worker_log.read_text().splitlines()
    waiting = [line for line in lines if "is unavailable" in line]
    assert all(c.redis.url in line for line in waiting)
    assert not [line for line in lines if "quitting" in line]


def test_a_webhook_is_acknowledged_only_once_its_own_submit_is_in_redis(workdir: Path) -> None:
    """One web process of 8 threads, whose submits share round trips (group commit), under a stream
    of webhooks: while Redis is frozen no webhook is acknowledged, and after Redis is killed in that
    state and started again from its append-only file, every acknowledged webhook's job is there."""
    orders = [order_of("woocommerce", 850000 + i) for i in range(300)]
    acknowledged: list[tuple[float, int]] = []
    with Cluster(workdir, webs=1, web_concurrency=1, workers=0, env={"WEB_THREADS": "8"}) as c:
        url = c.urls[0]

        def send(order: PlannedOrder) -> None:
            post_until_accepted(url, deliveries(order)[0])
            acknowledged.append((time.monotonic(), order.order_id))

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(send, order) for order in orders]
            wait_until(lambda: len(acknowledged) >= 50, 30, "the stream to start")
            redis = c.redis.process
            assert redis is not None
            redis.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            time.sleep(1.0)
            redis.send_signal(signal.SIGKILL)
            redis.wait()
            killed = time.monotonic()
            c.redis.stop()
            c.redis.start()
            for future in futures:
                future.result()
        # Answers already on their way when Redis froze may land just after.
        assert [order for at, order in acknowledged if frozen + 0.2 < at < killed] == []
        connection = c.connection()
        assert [o.order_id for o in orders if not connection.exists(f"rq:job:paid-woo-{o.order_id}")] == []
        assert len(acknowledged) == len(orders)


def test_5xx_timeouts_and_429_storms_still_award_exactly_once(workdir: Path) -> None:
    orders = plan(30, random.Random(21))
    storm = SandboxConfig(error_rate=0.25, timeout_rate=0.05, timeout_seconds=3, error_after_commit_rate=0.05,
                          rate_limit_per_minute=15, rate_limit_window_seconds=2, seed=3)
    with Cluster(workdir, webs=1, workers=3, sandbox=storm) as c:
        send_all(c, schedule(orders, random.Random(22)))
        c.wait_drained(240)
        assert check(c, orders) == []
        stats = c.sandbox.sandbox.state.request_counts()["by_status"]
        assert stats.get("429", 0) > 0 and stats.get("500", 0) > 0


def test_slow_commits_are_found_late_never_made_twice(workdir: Path) -> None:
    """A third of the calls commit but answer only after the client gave up, and show in the list
    seconds later: each award and each deduction is found, none is made twice; on a store that
    leaves tax and shipping out too."""
    orders = plan(30, random.Random(31), net_share=0.4)
    slow = SandboxConfig(slow_commit_rate=0.33, slow_commit_seconds=2, timeout_seconds=3, rate_limit_per_minute=0,
                         seed=4)
    with Cluster(workdir, webs=1, workers=3, sandbox=slow) as c:
        send_all(c, schedule(orders, random.Random(32)))
        c.wait_drained(240)
        assert check(c, orders) == []
        assert c.sandbox.sandbox.faults.injected["slow_commit"] > 0
        assert any(o.net and o.refunds for o in orders)


def test_pending_awards_survive_a_redis_restart(workdir: Path) -> None:
    """Awards held back by an award delay live in Redis (the ledger's due time, RQ's scheduled jobs):
    a Redis restarted during the delay loses none, and each is made once when it falls due."""
    soon = datetime.now(UTC) + timedelta(seconds=12)   # due 15 s from now: time to restart Redis meanwhile
    orders = [PlannedOrder("woocommerce", 850000 + i, f"later-{i}@example.com", Decimal(10 + i), later=True,
                           paid_at=soon) for i in range(8)]
    with Cluster(workdir, webs=1, workers=2, log=True) as c:
        send_all(c, [deliveries(o)[0] for o in orders])
        wait_until(lambda: all(ledger(c).get(o.store, o.reference).due for o in orders), 30, "the awards to be held")
        assert not [t for t in c.transactions() if t["type"] == "purchase"]
        c.restart_redis(down_for=1.0)
        c.wait_drained(120)
        purchases = Counter(t["reference_number"] for t in c.transactions() if t["type"] == "purchase")
        assert purchases == {o.reference: 1 for o in orders}
        assert check(c, orders) == []


def test_fifty_concurrent_identical_deliveries_make_one_award(workdir: Path) -> None:
    order = order_of("shopify", 830001)
    paid = deliveries(order)[0]
    with Cluster(workdir, webs=2, workers=2) as c:
        def once(i: int) -> int:
            url = c.urls[i % 2]
            return requests.post(url + paid.path, data=paid.body, headers=paid.headers, timeout=10).status_code

        with ThreadPoolExecutor(25) as pool:
            statuses = Counter(pool.map(once, range(50)))
        assert statuses == {202: 1, 200: 49}
        c.wait_drained(60)
        assert check(c, [order]) == []


def test_a_backlog_drains_at_the_rate_limit_without_a_single_429(workdir: Path) -> None:
    """10 calls per 3 s at Loyalty.lt; 40 orders queued at once; jobs wait for a slot without holding
    workers, and no call is refused."""
    orders = [order_of("woocommerce", 840000 + i) for i in range(40)]
    limited = SandboxConfig(rate_limit_per_minute=10, rate_limit_window_seconds=3)
    env = {"BRIDGE_RATE_LIMIT_WINDOW": "3", "BRIDGE_RATE_LIMIT_MARGIN": "1"}
    with Cluster(workdir, webs=1, workers=2, sandbox=limited, rate_limit_per_minute=10, env=env) as c:
        send_all(c, [deliveries(o)[0] for o in orders])
        c.wait_drained(120)
        assert check(c, orders) == []
        assert c.sandbox.sandbox.state.request_counts()["by_status"] == {"200": 40}
        # The limit was met by waiting: most jobs were rescheduled for a slot at least once (RQ
        # deletes finished jobs: each one's attempts are in its order's journal).
        from config.settings import Settings
        from workers.event_queue import EventQueue

        events = EventQueue(c.connection(), Settings())
        ends = [events.ended(f"paid-woo-{o.order_id}") for o in orders]
        assert sum(1 for end in ends if end and end.attempts > 1) >= 20


def test_chaos_run_ci_sized(workdir: Path) -> None:
    """The chaos run (bench/chaos.py) at a size that fits CI."""
    report = run(orders=250, webs=2, workers=3, kill_every=2.0, seed=5, timeout=400, workdir=workdir)
    assert report.worker_kills > 0
    assert report.differences == [], report.as_dict()
