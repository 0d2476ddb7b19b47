"""A failover with real processes: a primary, two replicas and a sentinel; `bridge web` and `bridge
worker` reach them through a ``redis+sentinel://`` URL with BRIDGE_REDIS_MIN_REPLICAS=1. The primary
is SIGKILLed in the middle of a stream of webhooks, while jobs run: every webhook acknowledged is
processed exactly once, and no ledger entry a job went on from is lost.

Two replicas, so that the survivor still has one once the other is promoted (with one replica and the
option on, nothing is acknowledged until a replica is back, which is the point of the option)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.chaos import check
from bench.cluster import Cluster, wait_until
from bench.workload import Delivery, PlannedOrder, deliveries
from bridge.sandbox import SandboxConfig
from config.settings import Settings
from tests.faults.test_faults import order_of, post_until_accepted
from workers.event_queue import EventQueue
from workers.ledger import Ledger

pytestmark = pytest.mark.fault

Entries = dict[tuple[str, str], tuple[int | None, str]]


def finished_entries(c: Cluster, orders: list[PlannedOrder]) -> Entries:
    """The awards and refunds in the ledger of orders whose every job has finished: what jobs went on
    from, each as (transaction id, how it was learned)."""
    conn = c.connection()
    events, ledger = EventQueue(conn, Settings()), Ledger(conn, retention=86400)
    entries: Entries = {}
    for order in orders:
        # RQ deletes a finished job: the order's journal says which of its jobs ended well.
        journal = events.journal(order.store, str(order.order_id))
        if not journal.job_ids or any(job_id not in journal.ends for job_id in journal.job_ids):
            continue
        record = ledger.get(order.store, order.reference)
        if record.award:
            entries[(order.reference, "award")] = (record.award.transaction_id, record.award.source)
        for refund_id, applied in record.refunds.items():
            entries[(order.reference, refund_id)] = (applied.transaction_id, applied.source)
    return entries


def test_a_failover_loses_no_acknowledged_webhook_and_no_ledger_entry(tmp_path: Path) -> None:
    orders = [order_of("shopify" if i % 2 else "woocommerce", 830000 + i, refund="5.00" if i % 3 == 0 else None)
              for i in range(45)]
    sends: list[Delivery] = [d for order in orders for d in deliveries(order)]
    answers: Counter[int] = Counter()
    acknowledged: list[Delivery] = []
    env = {"BRIDGE_REDIS_MIN_REPLICAS": "1", "BRIDGE_REDIS_WAIT_TIMEOUT": "300"}
    # Calls take a while, so some are on the wire when the primary dies.
    sandbox = SandboxConfig(latency_ms=150, rate_limit_per_minute=0)
    with Cluster(tmp_path, webs=1, workers=2, replicas=2, sandbox=sandbox, env=env, log=True) as c:
        killed = threading.Event()

        def stream() -> None:
            for n, delivery in enumerate(sends):
                if n == len(sends) * 2 // 3:
                    killed.wait(60)   # the rest is sent during and after the failover, whenever it comes
                post_until_accepted(c.urls[0], delivery, answers)
                acknowledged.append(delivery)
                time.sleep(0.03)

        sender = threading.Thread(target=stream)
        sender.start()
        wait_until(lambda: len(finished_entries(c, orders)) >= 5, 30, "a few orders to be done")
        before = finished_entries(c, orders)
        refused_before = answers[503] + answers[0]
        old_primary = c.kill_primary()
        killed.set()
        c.wait_for_promotion(old_primary)
        sender.join(60)
        assert not sender.is_alive() and len(acknowledged) == len(sends)
        assert answers[503] + answers[0] > refused_before, "the stream should have met the failover"
        c.wait_drained(60)

        assert check(c, orders) == []   # each order awarded once, each refund deducted once, in both books
        after = finished_entries(c, orders)
        # What jobs went on from was on a replica before the kill: unchanged, not even found again.
        assert {k: after.get(k) for k in before} == before
        kinds = Counter(t["type"] for t in c.transactions())
        assert kinds == {"purchase": len(orders), "refund": sum(1 for o in orders if o.refunds)}
