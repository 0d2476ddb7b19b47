"""The chaos run: thousands of webhooks — paid orders, partial refunds, cancellations, duplicates,
out-of-order deliveries, on a store that leaves tax and shipping out and on one that holds awards
back (an award delay) too — against the sandbox
answering 10% of calls with a 5xx, losing some answers after committing, and committing some calls
slowly (the answer times out, the list shows it seconds later), while workers are SIGKILLed at
random. At the end the sandbox's balances and the ledger must equal the totals computed
independently from the inputs.

    python -m bench.chaos --orders 2000

Prints the run's figures and the differences (there must be none); exits 1 when any.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.cluster import Cluster
from bench.workload import Delivery, PlannedOrder, deliveries, plan
from bridge.sandbox import SandboxConfig
from workers.ledger import Ledger


@dataclass
class Report:
    """What a chaos run did and found."""

    orders: int = 0
    deliveries_sent: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    worker_kills: int = 0
    seconds: float = 0.0
    sandbox_calls: dict[str, Any] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"orders": self.orders, "deliveries_sent": self.deliveries_sent,
                "answers": dict(sorted(self.answers.items())), "worker_kills": self.worker_kills,
                "seconds": round(self.seconds, 1), "sandbox_calls": self.sandbox_calls,
                "differences": len(self.differences), "first_differences": self.differences[:20]}


def _deliver(session: requests.Session, urls: list[str], delivery: Delivery, rng: random.Random,
             report: Report, lock: threading.Lock, deadline: float) -> None:
    """Post until a 2xx, as a shop retries; the same delivery may go to any web process."""
    while time.monotonic() < deadline:
        try:
            status = session.post(rng.choice(urls) + delivery.path, data=delivery.body, headers=delivery.headers,
                                  timeout=10).status_code
        except requests.RequestException:
            status = 0
        with lock:
            report.answers[status] += 1
            report.deliveries_sent += 1
        if 200 <= status < 300:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{delivery.label} never got a 2xx")


def schedule(orders: list[PlannedOrder], rng: random.Random) -> list[Delivery]:
    """Every delivery, each sent one to three times, shuffled: redeliveries and out-of-order arrivals."""
    sends = [d for order in orders for d in deliveries(order) for _ in range(rng.choice([1, 1, 2, 3]))]
    rng.shuffle(sends)
    return sends


def story(cluster: Cluster, order: PlannedOrder) -> str:
    """What `bridge status` would say of an order (for the report)."""
    from config.settings import Settings
    from workers.event_queue import EventQueue
    from workers.ops import order_story

    conn = cluster.connection()
    told = order_story(conn, EventQueue(conn, Settings()), Ledger(conn, retention=86400), order.store, order.reference)
    return told.model_dump_json(exclude={"ledger": {"store", "reference"}})


def check(cluster: Cluster, orders: list[PlannedOrder]) -> list[str]:
    """Compare the sandbox's balances and the ledger with the expected points; one line per difference."""
    balances = cluster.balances()
    ledger = Ledger(cluster.connection(), retention=86400)
    differences = []
    wrong: list[PlannedOrder] = []
    purchases = Counter(t["reference_number"] for t in cluster.transactions() if t["type"] == "purchase")
    for order in orders:
        have = balances.get(order.email, 0)
        if have != order.remaining:
            differences.append(f"{order.reference}: sandbox balance {have}, expected {order.remaining}")
        record = ledger.get(order.store, order.reference)
        kept = record.points_remaining if record.award else 0
        if kept != order.remaining:
            differences.append(f"{order.reference}: ledger keeps {kept}, expected {order.remaining}")
        if purchases[order.reference] > 1:
            differences.append(f"{order.reference}: awarded {purchases[order.reference]} times")
        if differences and (not wrong or wrong[-1] is not order) and differences[-1].startswith(order.reference):
            wrong.append(order)
    transactions = cluster.transactions()
    return differences + [f"{o.reference} story: {story(cluster, o)} sandbox: {_sandbox_side(transactions, o)}"
                          for o in wrong[:3]]


def _sandbox_side(transactions: list[dict[str, Any]], order: PlannedOrder) -> str:
    """What the sandbox holds for an order: each transaction's id, type, points, refund id and time."""
    return json.dumps([{"id": t["id"], "type": t["type"], "points": t["points"], "created_at": t["created_at"],
                        "refund_id": (t.get("metadata") or {}).get("refund_id"), "description": t["description"]}
                       for t in transactions if t["reference_number"] == order.reference
                       or f"of {order.reference}" in str(t["description"])])


def run(orders: int = 2000, webs: int = 2, workers: int = 3, error_rate: float = 0.1,
        lost_answer_rate: float = 0.02, slow_commit_rate: float = 0.03, net_share: float = 0.3,
        later_share: float = 0.15, kill_every: float = 3.0, seed: int = 7, senders: int = 12, timeout: float = 900,
        workdir: Path | None = None) -> Report:
    """Run the chaos scenario and return its report."""
    rng = random.Random(seed)
    planned = plan(orders, rng, net_share=net_share, later_share=later_share)
    sends = schedule(planned, rng)
    report = Report(orders=orders)
    sandbox = SandboxConfig(error_rate=error_rate, error_after_commit_rate=lost_answer_rate,
                            slow_commit_rate=slow_commit_rate, slow_commit_seconds=2, timeout_seconds=3,
                            rate_limit_per_minute=0, seed=seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, \
            Cluster(workdir or Path(tmp), webs=webs, workers=workers, sandbox=sandbox) as cluster:
        stop = threading.Event()

        def killer() -> None:
            # Random SIGKILLs, each victim replaced at once: jobs die mid-call and must be finished by others.
            while not stop.wait(rng.uniform(kill_every / 2, kill_every * 1.5)):
                cluster.kill_worker(rng=rng)
                report.worker_kills += 1
                cluster.start_worker()

        chaos = threading.Thread(target=killer, daemon=True)
        chaos.start()
        lock = threading.Lock()
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(senders) as pool, requests.Session() as session:
            for future in [pool.submit(_deliver, session, cluster.urls, d, random.Random(rng.random()), report, lock,
                                       deadline) for d in sends]:
                future.result()
        # Keep killing while the backlog drains, then let it finish in peace.
        time.sleep(min(10.0, kill_every * 3))
        stop.set()
        chaos.join()
        cluster.wait_drained(max(deadline - time.monotonic(), 60))
        report.seconds = time.monotonic() - started
        stats = cluster.sandbox.sandbox.state.request_counts()
        report.sandbox_calls = {**stats.get("by_endpoint", stats),
                                "faults": dict(cluster.sandbox.sandbox.faults.injected)}
        report.differences = check(cluster, planned)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--slow-commit-rate", type=float, default=0.03)
    parser.add_argument("--net-share", type=float, default=0.3, help="share of orders on the net store")
    parser.add_argument("--later-share", type=float, default=0.15, help="share on the store with an award delay")
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between worker kills")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    report = run(orders=args.orders, webs=args.webs, workers=args.workers, error_rate=args.error_rate,
                 slow_commit_rate=args.slow_commit_rate, net_share=args.net_share, later_share=args.later_share,
                 kill_every=args.kill_every,
                 seed=args.seed, timeout=args.timeout)
    print(json.dumps(report.as_dict(), indent=2))
    raise SystemExit(1 if report.differences else 0)


if __name__ == "__main__":
    main()
