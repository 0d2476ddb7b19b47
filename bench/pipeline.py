"""Worker-side benchmarks, each run against real processes and the sandbox:

    python -m bench.pipeline workers [--jobs 1000] [--rounds 3]   paid-order jobs/s vs RQ's no-op jobs/s
    python -m bench.pipeline backlog [--orders 5000] [--per-minute 3000]
    python -m bench.pipeline storm [--orders 30] [--seconds 10] [--retry-after 2]
    python -m bench.pipeline lag [--rate 50] [--seconds 60]
    python -m bench.pipeline memory

Each prints JSON. Figures are ratios or distributions from one run, never compared with a constant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.job import Job

from bench.cluster import API_KEY, API_SECRET, BIN, SECRETS, Cluster, wait_until
from bench.workload import PlannedOrder, deliveries
from bridge.embedded_redis import EmbeddedRedis
from bridge.sandbox import SandboxConfig, SandboxServer
from config.settings import Settings
from config.stores import build_store
from workers.event_queue import EventQueue
from workers.platforms import ADAPTERS


def noop() -> None:
    """RQ's floor: a job that does nothing."""


def _orders(count: int, first_id: int) -> list[PlannedOrder]:
    from decimal import Decimal

    return [PlannedOrder("woocommerce", first_id + i, f"bench-{first_id + i}@example.com", Decimal("42.40"))
            for i in range(count)]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _burst(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _commands(conn: Redis) -> int:
    """Commands Redis ran since its statistics were reset (a script's inner commands included)."""
    stats: dict[str, dict[str, int]] = conn.info("commandstats")  # type: ignore[assignment]
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_config", "cmdstat_info"))


def workers(jobs: int = 1000, rounds: int = 3) -> dict[str, Any]:
    """Paid-order jobs per second through ``bridge worker --burst`` against the sandbox (no latency), and
    RQ's own SimpleWorker on no-op jobs, alternating; plus Loyalty.lt calls per paid order."""
    with tempfile.TemporaryDirectory() as tmp_name, \
            SandboxServer(SandboxConfig(rate_limit_per_minute=0, partners=[
                {"api_key": API_KEY, "api_secret": API_SECRET, "partner_id": 1, "name": "Bench"}])) as sandbox:
        tmp = Path(tmp_name)
        redis = EmbeddedRedis(tmp / "redis", persist=False).start()
        store = build_store("woo", {"platform": "woocommerce", "webhook_secrets": [SECRETS["woo"]],
                                    "api_key": API_KEY, "api_secret": API_SECRET, "api_url": sandbox.url,
                                    "rate_limit_per_minute": 1_000_000}, {}, "bench")
        # Connected to its shop's API, as a store is since issue #23 (so its jobs remember the orders'
        # versions for the sync), with the periodic shop tasks off: no shop answers here.
        (tmp / "stores.toml").write_text(
            f'[stores.woo]\nplatform = "woocommerce"\nwebhook_secrets = ["{SECRETS["woo"]}"]\napi_key = "{API_KEY}"\n'
            f'api_secret = "{API_SECRET}"\napi_url = "{sandbox.url}"\nrate_limit_per_minute = 1000000\n'
            'shop_url = "http://127.0.0.1:9"\nshop_consumer_key = "ck_bench"\nshop_consumer_secret = "cs_bench"\n')
        env = {**os.environ, "REDIS_URL": redis.url, "BRIDGE_STORES_FILE": str(tmp / "stores.toml"),
               "BRIDGE_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
               "BRIDGE_SHOP_SYNC_INTERVAL": "0", "BRIDGE_SHOP_WATCH_INTERVAL": "0"}
        conn = Redis.from_url(redis.url)
        events = EventQueue(conn, Settings(REDIS_URL=redis.url))
        noop_queue = Queue("noop", connection=conn)
        results: list[dict[str, Any]] = []
        for n in range(rounds):
            orders = _orders(jobs, 3_000_000 + n * jobs)
            for order in orders:
                body = deliveries(order)[0].body
                (event,) = ADAPTERS["woocommerce"].classify("order.created", body, store)  # type: ignore[misc]
                events.submit(event, body.decode())
            calls_before = len(sandbox.sandbox.state.transactions)
            conn.config_resetstat()
            bridge_s = _burst([str(BIN / "bridge"), "worker", "--burst"], env, tmp)
            bridge_commands = _commands(conn)
            calls = len(sandbox.sandbox.state.transactions) - calls_before
            for _ in range(jobs):
                noop_queue.enqueue("bench.pipeline.noop")
            conn.config_resetstat()
            noop_s = _burst([str(BIN / "rq"), "worker", "--burst", "--url", redis.url, "-w", "rq.SimpleWorker",
                             "--logging_level", "WARNING", "noop"], env, tmp)
            noop_commands = _commands(conn)
            results.append({"round": n + 1, "paid_jobs_per_s": round(jobs / bridge_s, 1),
                            "noop_jobs_per_s": round(jobs / noop_s, 1), "calls_per_paid_order": calls / jobs,
                            "redis_commands_per_paid_job": round(bridge_commands / jobs, 1),
                            "redis_commands_per_noop_job": round(noop_commands / jobs, 1)})
        redis.stop()
    bridge_rate = statistics.median(r["paid_jobs_per_s"] for r in results)
    noop_rate = statistics.median(r["noop_jobs_per_s"] for r in results)
    return {"jobs_per_round": jobs, "worker_class": "SimpleWorker (bridge worker) vs rq.SimpleWorker",
            "rounds": results,
            "redis_commands_per_paid_job": statistics.median(r["redis_commands_per_paid_job"] for r in results),
            "redis_commands_per_noop_job": statistics.median(r["redis_commands_per_noop_job"] for r in results), "paid_jobs_per_s": bridge_rate, "noop_jobs_per_s": noop_rate,
            "ratio": round(bridge_rate / noop_rate, 3),
            "overhead_ms_per_job": round((1 / bridge_rate - 1 / noop_rate) * 1000, 2),
            "calls_per_paid_order": statistics.median(r["calls_per_paid_order"] for r in results)}


def _production_maintenance() -> dict[str, str]:
    """Worker maintenance as deployed. The cluster's own runs every 2 s, to hand a killed worker's
    job on quickly in the fault suite; in a backlog of thousands its sweep of the open jobs would
    take most of the workers' time."""
    settings = Settings()
    return {"BRIDGE_WORKER_MAINTENANCE_INTERVAL": str(settings.worker_maintenance_interval),
            "BRIDGE_WORKER_HEARTBEAT_GRACE": str(settings.worker_heartbeat_grace)}


def backlog(orders: int = 5000, per_minute: int = 1000, workers_count: int = 3) -> dict[str, Any]:
    """A backlog of paid orders against a rate-limited sandbox: the sustained call rate and the 429s."""
    limited = SandboxConfig(rate_limit_per_minute=per_minute, rate_limit_window_seconds=60)
    with tempfile.TemporaryDirectory() as tmp, \
            Cluster(Path(tmp), webs=0, workers=0, sandbox=limited, rate_limit_per_minute=per_minute,
                    env=_production_maintenance()) as cluster:
        conn = cluster.connection()
        planned = _orders(orders, 4_000_000)
        _queue_paid(conn, cluster.redis.url, planned)
        started = time.time()
        for _ in range(workers_count):
            cluster.start_worker()
        cluster.wait_drained(orders / per_minute * 60 * 2 + 120)
        jobs = [j for j in Job.fetch_many([f"paid-woo-{o.order_id}" for o in planned], connection=conn) if j]
        stamps = sorted(datetime.fromisoformat(t["created_at"].replace("Z", "+00:00")).timestamp()
                        for t in cluster.transactions() if t["type"] == "purchase")
        stats = cluster.sandbox.sandbox.state.request_counts()
    # A moving window lets the first window's worth through at once (as fast as the workers go);
    # from then on each slot frees a window after its last use. The sustained rate is what came
    # after the first window's worth, over the time since it was taken; at best 60 / (60 + margin)
    # of the limit. Pick an order count that is a multiple of the limit.
    first_window = min(len(stamps), per_minute)
    span = stamps[-1] - stamps[first_window - 1] if stamps else 0.0
    sustained = (len(stamps) - first_window) / span * 60 if span > 0 else 0.0
    # How long each slot stayed unused: a call's time minus when the slot it reused freed (the call
    # a limit's worth earlier, plus the bridge's window).
    window = math.ceil(60 + Settings().rate_limit_margin)
    idle = sorted(b - a - window for a, b in zip(stamps, stamps[per_minute:]))
    return {"orders": orders, "limit_per_minute": per_minute, "workers": workers_count,
            "awarded": len(stamps), "seconds": round(stamps[-1] - started, 1),
            "sustained_calls_per_minute": round(sustained, 1), "share_of_limit": round(sustained / per_minute, 3),
            "slot_idle_s": {"p50": round(idle[len(idle) // 2], 2), "p90": round(idle[int(len(idle) * 0.9)], 2)}
            if idle else None,
            # How often a job ran before its call (each wait is a run that only rescheduled it).
            "runs_per_order": round(sum((j.number_of_retries or 0) + 1 for j in jobs) / max(len(jobs), 1), 2),
            "answers_429": stats["by_status"].get("429", 0), "answers": stats["by_status"]}


def _queue_paid(conn: Redis, redis_url: str, orders: list[PlannedOrder]) -> None:
    events = EventQueue(conn, Settings(REDIS_URL=redis_url))
    store = build_store("woo", {"platform": "woocommerce", "webhook_secrets": [SECRETS["woo"]],
                                "api_key": API_KEY, "api_secret": API_SECRET}, {}, "bench")
    for order in orders:
        body = deliveries(order)[0].body
        (event,) = ADAPTERS["woocommerce"].classify("order.created", body, store)  # type: ignore[misc]
        events.submit(event, body.decode())


def storm(orders: int = 30, seconds: float = 10, retry_after: int = 2, per_minute: int = 600,
          workers_count: int = 3) -> dict[str, Any]:
    """Paid orders queued while Loyalty.lt answers every call 429 (``Retry-After: retry_after``) for
    ``seconds``: the 429s the bridge drew, and when the last award landed after the storm."""
    limited = SandboxConfig(rate_limit_per_minute=per_minute, rate_limit_window_seconds=60)
    # The production backoff (the cluster's own is shortened for tests): what a 429 costs a job.
    backoff = {"BRIDGE_RETRY_BASE_DELAY": str(Settings().retry_base_delay),
               "BRIDGE_RETRY_MAX_DELAY": str(Settings().retry_max_delay), **_production_maintenance()}
    with tempfile.TemporaryDirectory() as tmp, \
            Cluster(Path(tmp), webs=0, workers=0, sandbox=limited, rate_limit_per_minute=per_minute,
                    env=backoff) as cluster:
        conn = cluster.connection()
        for _ in range(workers_count):
            cluster.start_worker()
        wait_until(lambda: len(Worker.all(connection=conn)) >= workers_count, 60, "the workers to start")
        storm_ends = cluster.sandbox.sandbox.faults.start_storm(seconds, retry_after)
        _queue_paid(conn, cluster.redis.url, _orders(orders, 4_500_000))
        cluster.wait_drained(seconds + 120)
        stamps = sorted(datetime.fromisoformat(t["created_at"].replace("Z", "+00:00")).timestamp()
                        for t in cluster.transactions() if t["type"] == "purchase")
        stats = cluster.sandbox.sandbox.state.request_counts()
    # Each pause ends with one call that tries again: the least a client that honours Retry-After
    # can draw is the storm's length in pauses, plus the calls already on the wire when it began.
    return {"orders": orders, "storm_seconds": seconds, "retry_after": retry_after, "workers": workers_count,
            "limit_per_minute": per_minute, "awarded": len(stamps),
            "answers_429": stats["by_status"].get("429", 0),
            "pauses_in_storm": math.ceil(seconds / retry_after),
            "last_award_after_storm_s": round(stamps[-1] - storm_ends, 2) if stamps else None,
            "answers": stats["by_status"]}


def lag(rate: float = 50, seconds: float = 60, workers_count: int = 2) -> dict[str, Any]:
    """Webhook sent → points awarded in the sandbox, at a steady rate."""
    import requests

    count = int(rate * seconds)
    orders = _orders(count, 5_000_000)
    sent: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp), webs=1, workers=workers_count) as cluster:
        url = cluster.urls[0]
        session = requests.Session()
        start = time.perf_counter()
        for i, order in enumerate(orders):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            delivery = deliveries(order)[0]
            sent[order.reference] = time.time()
            assert session.post(url + delivery.path, data=delivery.body, headers=delivery.headers,
                                timeout=10).status_code == 202
        achieved = count / (time.perf_counter() - start)
        cluster.wait_drained(120)
        awarded = {t["reference_number"]: datetime.fromisoformat(t["created_at"].replace("Z", "+00:00")).timestamp()
                   for t in cluster.transactions() if t["type"] == "purchase"}
    lags = sorted((awarded[ref] - at) * 1000 for ref, at in sent.items() if ref in awarded)
    return {"webhooks": count, "rate_per_s": rate, "achieved_rate_per_s": round(achieved, 1),
            "workers": workers_count, "awarded": len(lags),
            "lag_p50_ms": round(lags[len(lags) // 2], 1), "lag_p99_ms": round(lags[int(len(lags) * 0.99)], 1),
            "lag_max_ms": round(lags[-1], 1)}


def memory(orders: int = 2000) -> dict[str, Any]:
    """Resident memory of a web process (gunicorn master and workers) and a worker, after work."""
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp), webs=1, workers=1) as cluster:
        url, web = cluster.webs[0]
        import requests

        session = requests.Session()
        for order in _orders(orders, 6_000_000):
            delivery = deliveries(order)[0]
            session.post(url + delivery.path, data=delivery.body, headers=delivery.headers, timeout=10)
        cluster.wait_drained(300)
        web_children = [int(p) for p in Path(f"/proc/{web.pid}/task/{web.pid}/children").read_text().split()]
        return {"after_orders": orders, "web_master_kib": _rss_kib(web.pid),
                "web_worker_kib": [_rss_kib(p) for p in web_children],
                "worker_kib": _rss_kib(cluster.workers[0].pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("workers")
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("backlog")
    p.add_argument("--orders", type=int, default=5000)
    p.add_argument("--per-minute", type=int, default=1000)
    p.add_argument("--workers", type=int, default=3)
    p = sub.add_parser("storm")
    p.add_argument("--orders", type=int, default=30)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--retry-after", type=int, default=2)
    p.add_argument("--per-minute", type=int, default=600)
    p.add_argument("--workers", type=int, default=3)
    p = sub.add_parser("lag")
    p.add_argument("--rate", type=float, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p = sub.add_parser("memory")
    p.add_argument("--orders", type=int, default=2000)
    args = parser.parse_args()
    if args.which == "workers":
        result = workers(args.jobs, args.rounds)
    elif args.which == "backlog":
        result = backlog(args.orders, args.per_minute, args.workers)
    elif args.which == "storm":
        result = storm(args.orders, args.seconds, args.retry_after, args.per_minute, args.workers)
    elif args.which == "lag":
        result = lag(args.rate, args.seconds)
    else:
        result = memory(args.orders)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
