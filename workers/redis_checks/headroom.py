"""Memory used of ``maxmemory``, and how many days until full at the current rate of orders.

The rate is the bridge's own: orders awarded per day over the last week (or since the oldest award,
for a younger deployment), from the awards index every store keeps for the ledger's lifetime. The
bytes an order costs are measured, not assumed: the memory Redis uses beyond an empty server's
(``used_memory - used_memory_startup``) over the orders held. Orders that earn nothing (guests, test
orders) cost memory too but are not counted, so they raise the bytes per counted order instead.
Until a deployment is older than its payload retention (30 days) the payloads of every order held are
still there, so the estimate errs early; after that, each day's new payloads replace expiring ones and
the real growth is slower.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from workers.redis_checks.readings import DAY, RATE_WINDOW_DAYS, StoreOrders

# A problem when Redis is this full, or will be within this many days at the current rate.
NEARLY_FULL = 0.9
FULL_SOON_DAYS = 30.0


class Headroom(BaseModel):
    """Memory used of maxmemory, the rate of orders, the bytes each costs, and days until full."""

    used_memory: int
    maxmemory: int  # 0: no limit
    orders_held: int
    orders_per_day: float | None
    bytes_per_order: float | None
    days_until_full: float | None


def measure(memory: dict[str, Any], stores: list[StoreOrders], now: float) -> Headroom:
    """Headroom from INFO memory and the stores' awards indexes."""
    used = int(memory.get("used_memory", 0))
    maxmemory = int(memory.get("maxmemory", 0))
    held = sum(s.held for s in stores)
    oldest = min((s.oldest for s in stores if s.oldest is not None), default=None)
    rate = None
    if oldest is not None:
        window = min(float(RATE_WINDOW_DAYS), max(1.0, (now - oldest) / DAY))
        rate = sum(s.recent for s in stores) / window
    per_order = max(used - int(memory.get("used_memory_startup", 0)), 0) / held if held else None
    days = None
    if maxmemory and rate and per_order:
        days = max(maxmemory - used, 0) / (rate * per_order)
    return Headroom(used_memory=used, maxmemory=maxmemory, orders_held=held, orders_per_day=rate,
                    bytes_per_order=per_order, days_until_full=days)


def size(n: float) -> str:
    """Bytes for people: 812 B, 41.2 kB, 1.3 MB, 2.0 GB (powers of 1,000, as Redis's *_human fields are not)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def summary(h: Headroom) -> str:
    """One line: used of maxmemory, the rate, and days until full."""
    used = f"{size(h.used_memory)} used of {size(h.maxmemory)} ({h.used_memory / h.maxmemory:.0%})" if h.maxmemory \
        else f"{size(h.used_memory)} used, no maxmemory (Redis grows until the machine's memory runs out)"
    if h.orders_per_day is None or h.bytes_per_order is None:
        return f"{used}; no orders awarded yet to measure a rate by"
    rate = f"{h.orders_per_day:,.0f} orders a day at ~{h.bytes_per_order:,.0f} B each ({h.orders_held:,} held)"
    if h.days_until_full is not None:
        return f"{used}; {rate}: full in ~{h.days_until_full:,.0f} days"
    return f"{used}; {rate}"


def problem(h: Headroom) -> str | None:
    """The sentence that says Redis is (nearly) full and the fix; None when there is room."""
    if not h.maxmemory:
        return None
    fix = ("raise maxmemory (a bigger plan), or keep payloads for less time (BRIDGE_PAYLOAD_RETENTION); at maxmemory "
           "Redis refuses writes and webhooks are answered 503 until it has room")
    if h.used_memory >= NEARLY_FULL * h.maxmemory:
        return f"Redis is {h.used_memory / h.maxmemory:.0%} full ({size(h.used_memory)} of {size(h.maxmemory)}): {fix}"
    if h.days_until_full is not None and h.days_until_full < FULL_SOON_DAYS:
        return (f"At {h.orders_per_day:,.0f} orders a day Redis is full in ~{h.days_until_full:,.0f} days "
                f"({size(h.used_memory)} of {size(h.maxmemory)}): {fix}")
    return None
