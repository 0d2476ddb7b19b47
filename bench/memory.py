"""Redis bytes per order, by key family: what the bridge keeps for 30 days and for 400.

    python -m bench.memory [--orders 600] [--seed 20] [--json]

Real processes (``bench/cluster.py``): the embedded redis-server, one web process as the Procfile
starts it, two ``bridge worker`` processes and the Loyalty.lt sandbox. A realistic mix of the
published sample payloads (``tests/fixtures``, sent as compact JSON as the shops send them, each
order with its own ids and customer): WooCommerce and Shopify paid orders, a third refunded in part,
a tenth cancelled after payment, every delivery sent once or twice (redeliveries). When every job
has ended, Redis is read key by key with ``MEMORY USAGE`` (``SAMPLES 0``: every element counted)
and each key's TTL: the bytes per order of each key family, split into what expires with the kept
payloads (31 days or less; keys without a TTL, such as RQ's registries, are counted here too) and
what lives as long as the ledger (longer). Goals (issue #20): at most 2,500 and 250 bytes per order.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from bench.cluster import SECRETS, Cluster
from bench.workload import Delivery
from bridge.signatures import sign

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
PAYLOAD_PART = 31 * 86400   # a key with a TTL up to this expires with the kept payloads
# Families without a TTL of their own whose members live as long as the ledger.
LEDGER_FAMILIES = {"lb:awards:*"}
# Families of a size that does not grow with the orders: capped lists, the rate limiter's windows,
# RQ's bookkeeping of workers and queues. Reported in bytes, not per order.
BOUNDED = {"lb:recent:*", "lb:ratelimit:*", "lb:open-jobs", "lb:alert:*", "rq:worker:*", "rq:workers",
           "rq:workers:*", "rq:scheduler:*", "rq:scheduler-lock:*", "rq:queues", "rq:queue:*", "rq:clean_groups"}
STORES = ("woo", "shop")
GOALS = {"payload": 2500, "ledger": 250}


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


def _compact(payload: dict[str, Any]) -> bytes:
    """As the shops send it: compact JSON."""
    return json.dumps(payload, separators=(",", ":")).encode()


def _delivery(platform: str, store: str, topic: str, payload: dict[str, Any], label: str) -> Delivery:
    body = _compact(payload)
    secret = SECRETS[store].encode()
    if platform == "woocommerce":
        headers = {"X-WC-Webhook-Signature": sign(body, secret), "X-WC-Webhook-Topic": topic,
                   "X-WC-Webhook-Delivery-ID": str(abs(hash(label)) % 10**6)}
    else:
        headers = {"X-Shopify-Hmac-Sha256": sign(body, secret), "X-Shopify-Topic": topic,
                   "X-Shopify-Event-Id": f"{abs(hash(label)):x}"}
    headers["Content-Type"] = "application/json"
    return Delivery(f"/webhooks/{platform}/{store}", body, headers, label)


def woocommerce_order(n: int, rng: random.Random) -> list[Delivery]:
    """One WooCommerce order's deliveries: paid (order.created), maybe a partial refund and a
    cancellation (order.updated, the whole order each time, as WooCommerce sends it)."""
    order = _fixture("woocommerce/processing.json")
    order_id = 500_000 + n
    order.update(id=order_id, number=str(order_id), order_key=f"wc_order_{order_id:x}")
    order["billing"]["email"] = f"woo-{n}@example.com"
    out = [_delivery("woocommerce", "woo", "order.created", order, f"WC-{order_id} paid")]
    if rng.random() < 0.33:
        refund = deepcopy(order)
        refund["refunds"] = [{"id": 9_000_000 + n, "reason": "Damaged mug", "total": "-4.84"}]
        out.append(_delivery("woocommerce", "woo", "order.updated", refund, f"WC-{order_id} refund"))
        order = refund
    if rng.random() < 0.1:
        cancelled = {**order, "status": "cancelled"}
        out.append(_delivery("woocommerce", "woo", "order.updated", cancelled, f"WC-{order_id} cancelled"))
    return out


def shopify_order(n: int, rng: random.Random) -> list[Delivery]:
    """One Shopify order's deliveries: orders/paid, maybe refunds/create (partial) and orders/cancelled."""
    order = _fixture("shopify/orders_paid.json")
    order_id = 7_000_000_000_000 + n
    number = 10_000 + n
    order.update(id=order_id, name=f"#{number}", order_number=number, number=number - 1000,
                 email=f"shop-{n}@example.com", admin_graphql_api_id=f"gid://shopify/Order/{order_id}")
    if isinstance(order.get("customer"), dict):
        order["customer"] = {**order["customer"], "email": f"shop-{n}@example.com"}
    out = [_delivery("shopify", "shop", "orders/paid", order, f"SH-{number} paid")]
    if rng.random() < 0.33:
        refund = _fixture("shopify/refunds_create_partial.json")
        refund.update(id=800_000_000 + n, order_id=order_id)
        out.append(_delivery("shopify", "shop", "refunds/create", refund, f"SH-{number} refund"))
    if rng.random() < 0.1:
        cancelled = {**order, "cancelled_at": "2026-11-21T09:06:02+02:00", "cancel_reason": "customer",
                     "financial_status": "refunded"}
        out.append(_delivery("shopify", "shop", "orders/cancelled", cancelled, f"SH-{number} cancelled"))
    return out


def family(key: str) -> str:
    """The key's family: its name with the ids taken out (``lb:ledger:*``, ``rq:job:*``)."""
    parts = key.split(":")
    if parts[0] in ("lb", "rq") and len(parts) > 2:
        return ":".join(parts[:2]) + ":*"
    return re.sub(r"[0-9a-f]{16,}", "*", key)


def store_of(key: str) -> str | None:
    """The bench store a key belongs to (``lb:<family>:<store>:...`` or a job id ``<kind>-<store>-...``)."""
    parts = key.split(":")
    for part in parts[2:3] + parts[2].split("-")[1:2] if len(parts) > 2 else []:
        if part in STORES:
            return part
    return None


def measure(connection: Redis, orders: int) -> dict[str, Any]:
    """Every key's ``MEMORY USAGE`` and TTL, summed by family and by part, per order (and per order
    of each store: half the orders are WooCommerce, half Shopify)."""
    families: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"keys": 0, "bytes": 0, "max_ttl": -1, "by_store": defaultdict(int)})
    for key in connection.scan_iter(count=1000):
        name = key.decode()
        size = connection.memory_usage(key, samples=0) or 0
        ttl = int(connection.ttl(key))  # type: ignore[arg-type]
        entry = families[family(name)]
        entry["keys"] += 1
        entry["bytes"] += size
        entry["max_ttl"] = max(entry["max_ttl"], ttl)
        entry["by_store"][store_of(name)] += size
    rows = []
    totals = {"payload": 0.0, "ledger": 0.0}
    by_store = {store: {"payload": 0.0, "ledger": 0.0} for store in STORES}
    bounded = 0
    for name, entry in sorted(families.items(), key=lambda item: -item[1]["bytes"]):
        part = "ledger" if entry["max_ttl"] > PAYLOAD_PART or name in LEDGER_FAMILIES else "payload"
        if name in BOUNDED:
            part = "bounded"
            bounded += entry["bytes"]
        per_order = entry["bytes"] / orders
        if part != "bounded":
            totals[part] += per_order
            for store in STORES:
                by_store[store][part] += entry["by_store"].get(store, 0) / (orders / len(STORES))
        rows.append({"family": name, "keys": entry["keys"], "bytes": entry["bytes"],
                     "bytes_per_order": round(per_order, 1), "part": part,
                     "per_store_order": {store: round(entry["by_store"].get(store, 0) / (orders / len(STORES)))
                                         for store in STORES},
                     "ttl_days": round(entry["max_ttl"] / 86400, 1) if entry["max_ttl"] > 0 else None})
    info: dict[str, Any] = connection.info("memory")  # type: ignore[assignment]
    return {"families": rows, "bytes_per_order": {part: round(value) for part, value in totals.items()},
            "by_store": {store: {part: round(v) for part, v in parts.items()} for store, parts in by_store.items()},
            "bounded_bytes": bounded, "goals": GOALS, "met": {part: totals[part] <= GOALS[part] for part in GOALS},
            "used_memory": info["used_memory"]}


def run(orders: int = 600, seed: int = 20) -> dict[str, Any]:
    """Process ``orders`` orders (half WooCommerce, half Shopify) and measure Redis."""
    rng = random.Random(seed)
    planned = [(woocommerce_order if i % 2 == 0 else shopify_order)(i, rng) for i in range(orders)]
    events = {"paid": orders, "refund": sum("refund" in d.label for o in planned for d in o),
              "cancel": sum("cancelled" in d.label for o in planned for d in o)}
    sends = [d for o in planned for d in o for _ in range(rng.choice([1, 1, 2]))]
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp), webs=1, web_concurrency=1, workers=2) as cluster:
        url = cluster.urls[0]
        with requests.Session() as session, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda d: session.post(url + d.path, data=d.body, headers=d.headers,
                                                           timeout=30).status_code, sends))
        cluster.wait_drained(600)
        connection = cluster.connection()
        awarded = len(connection.keys("lb:ledger:*"))
        result = measure(connection, orders)
        failed = connection.zcard("rq:failed:loyalty")
    return {"orders": orders, "events": events, "deliveries": len(sends),
            "answers": {str(s): answers.count(s) for s in sorted(set(answers))}, "ledger_entries": awarded,
            "failed_jobs": failed, "payload_bytes_mean": round(sum(len(d.body) for o in planned for d in o)
                                                                / sum(len(o) for o in planned)), **result}


def _print(report: dict[str, Any]) -> None:
    print(f"{report['orders']} orders ({report['events']}), {report['deliveries']} deliveries "
          f"{report['answers']}, {report['failed_jobs']} failed jobs; payloads {report['payload_bytes_mean']} B mean")
    print(f"{'family':<24} {'keys':>6} {'B/order':>9} {'woo':>7} {'shop':>7}  part (TTL days)")
    for row in report["families"]:
        if row["part"] == "bounded":
            continue
        per_store = row["per_store_order"]
        print(f"{row['family']:<24} {row['keys']:>6} {row['bytes_per_order']:>9,.0f} {per_store['woo']:>7,}"
              f" {per_store['shop']:>7,}  {row['part']} ({row['ttl_days']})")
    print(f"not per order (capped lists, rate limiter, RQ's bookkeeping): {report['bounded_bytes']:,} B in all")
    print(f"per WooCommerce order: {report['by_store']['woo']}, per Shopify order: {report['by_store']['shop']}")
    for part, label in (("payload", "kept with the payload (<= 31 days)"),
                        ("ledger", "kept for the ledger's lifetime")):
        value = report["bytes_per_order"][part]
        print(f"{label}: {value:,} B/order (goal <= {GOALS[part]:,}: {'met' if report['met'][part] else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = run(args.orders, args.seed)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)


if __name__ == "__main__":
    main()
