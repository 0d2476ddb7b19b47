"""Whether Redis may evict the bridge's keys: anything but ``noeviction`` may.

Every ledger entry carries a TTL (400 days), so ``volatile-*`` policies can evict it as surely as
``allkeys-*``; an evicted entry means a refund redelivered, synced or replayed is deducted again.
"""

from __future__ import annotations

from typing import Any

SAFE = "noeviction"


def policy(config: dict[str, str | None], memory: dict[str, Any]) -> str | None:
    """``maxmemory-policy`` from CONFIG GET, else from INFO memory; None when neither says."""
    value = config.get("maxmemory-policy") or memory.get("maxmemory_policy")
    return str(value) if value else None


def problem(name: str | None) -> str | None:
    """The sentence that says what is wrong with the policy and the fix; None for ``noeviction``."""
    if name == SAFE:
        return None
    if name is not None and name.startswith("allkeys-"):
        risk = "Redis may evict ledger entries and queued jobs"
    else:
        risk = "Redis may evict ledger entries (each has a TTL, so volatile-* policies evict them too)"
    risk += ", and a refund redelivered, synced or replayed after its entry is gone is deducted again"
    fix = ("set maxmemory-policy to noeviction (CONFIG SET maxmemory-policy noeviction and in redis.conf, or in "
           "your provider's settings: see README, \"Redis: the system of record\")")
    if name is None:
        return f"Redis does not say its maxmemory-policy (CONFIG GET refused or empty): unless it is noeviction, {risk}; " \
               f"make sure it is: {fix}"
    return f"Redis's maxmemory-policy is {name}: {risk}; {fix}"
