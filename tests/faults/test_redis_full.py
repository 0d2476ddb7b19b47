"""A full Redis with real processes: maxmemory set just above what Redis uses (noeviction) while webhooks
stream in and an award call is on the wire. The intake answers 503 with Retry-After, the workers wait
instead of dying, and once Redis has room again every order the shop redelivers is awarded exactly
once, the ones interrupted by a refused write included."""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.chaos import check
from bench.cluster import Cluster, wait_until
from bench.workload import deliveries
from bridge.sandbox import SandboxConfig
from tests.faults.test_faults import order_of, post_until_accepted, wait_for_inflight

pytestmark = pytest.mark.fault


def test_a_full_redis_is_an_outage_the_workers_wait_out(tmp_path: Path) -> None:
    orders = [order_of("shopify" if i % 2 else "woocommerce", 870000 + i) for i in range(40)]
    first = orders[0]
    answers: Counter[int] = Counter()
    slow = SandboxConfig(latency_ms=1000, rate_limit_per_minute=0)
    with Cluster(tmp_path, webs=1, web_concurrency=1, workers=3, sandbox=slow, log=True) as c:
        redis = c.connection()
        redis.config_set("maxmemory-policy", "noeviction")
        post_until_accepted(c.urls[0], deliveries(first)[0], answers)
        wait_for_inflight(c, first.store, first.reference, "award")   # its create call sleeps in the sandbox

        # Just above what Redis counts against maxmemory (its AOF buffer is not counted).
        memory = redis.info("memory")
        redis.config_set("maxmemory", memory["used_memory"] - memory.get("mem_not_counted_for_evict", 0) + 64_000)

        def shop(order_index: int) -> None:
            # A shop delivers, and redelivers what was not acknowledged until it is.
            time.sleep(0.02 * order_index)
            post_until_accepted(c.urls[0], deliveries(orders[order_index])[0], answers, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(shop, i) for i in range(1, len(orders))]
            wait_until(lambda: answers[503] > 0, 30, "the intake to refuse a webhook for memory")
            workers_log = tmp_path / "workers.log"
            # The interrupted award (its answer came after Redis filled up) and the idle workers wait.
            wait_until(lambda: "refused its writes (full) while it ran" in workers_log.read_text(), 30,
                       "the worker whose job Redis refused to wait")
            wait_until(lambda: workers_log.read_text().count("is full: it refuses writes") >= 3, 30,
                       "the workers to wait for room")
            refused_while_full = answers[503]
            assert all(p.poll() is None for p in c.workers), "a full Redis must not stop a worker"

            redis.config_set("maxmemory", 0)                          # room again
            for future in futures:
                future.result()
        c.wait_drained(120)

        assert all(p.poll() is None for p in c.workers), f"workers stay up (see {workers_log})"
        assert check(c, orders) == []
        purchases = Counter(t["reference_number"] for t in c.transactions() if t["type"] == "purchase")
        assert purchases == {o.reference: 1 for o in orders}
        # The jobs Redis refused mid-way were retried (RQ, once their heartbeat ran out) and count once.
        interrupted = re.findall(r"job (\S+): Redis refused its writes", workers_log.read_text())
        assert interrupted and all(purchases[o.reference] == 1 for o in orders
                                   if any(j.endswith(f"-{o.order_id}") for j in interrupted))
        web_log = next(tmp_path.glob("web-*.log")).read_text()
        assert "Redis is full (maxmemory reached)" in web_log
        print(f"answers: {dict(answers)}; 503 while full: {refused_while_full}; "
              f"'Redis is full' lines: {web_log.count('Redis is full (maxmemory reached)')}; "
              f"workers' waiting lines: {workers_log.read_text().count('is full: it refuses writes')}; "
              f"jobs interrupted: {interrupted}")
