"""What Redis writes to disk, and so what a crash of Redis (or of its machine) would lose.

From ``appendonly``/``appendfsync`` and the RDB ``save`` schedule (CONFIG GET), or INFO's
``aof_enabled`` when CONFIG is refused. The bridge answers a webhook 2xx once its job is in Redis,
and records each award and deduction there: what a crash loses is acknowledged webhooks and ledger
writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WHAT = "acknowledged webhooks and ledger writes"
# Linux writes dirty pages back within 30 s by default (vm.dirty_expire_centisecs = 3000).
OS_FLUSH_SECONDS = 30.0


@dataclass(frozen=True)
class Persistence:
    """What Redis persists, in words and as the most seconds of writes a crash can lose."""

    summary: str
    crash_loses: str
    # None: unknown; 0: nothing; math.inf: everything.
    loss_seconds: float | None
    # False only when Redis is known to persist nothing.
    persists: bool | None


def save_points(save: str | None) -> list[tuple[int, int]] | None:
    """The RDB schedule (``"3600 1 300 100"`` → [(3600, 1), (300, 100)]); [] for none, None if unknown."""
    if save is None:
        return None
    numbers = [int(n) for n in save.split()]
    return list(zip(numbers[0::2], numbers[1::2], strict=True))


def _schedule(points: list[tuple[int, int]]) -> str:
    return ", ".join(f"after {s} s if {c} change{'s' if c != 1 else ''}" for s, c in points)


def describe(config: dict[str, str | None], info: dict[str, Any]) -> Persistence:
    """What ``config`` (CONFIG GET answers) and ``info`` (INFO persistence) say Redis persists."""
    appendonly = config.get("appendonly")
    aof = appendonly == "yes" if appendonly is not None else (bool(info["aof_enabled"]) if "aof_enabled" in info
                                                              else None)
    fsync = config.get("appendfsync")
    points = save_points(config.get("save"))
    snapshots = f"; RDB snapshots too ({_schedule(points)})" if points else ""
    if aof:
        if fsync == "always":
            return Persistence(f"AOF, fsync always{snapshots}",
                               "nothing acknowledged: Redis writes each change to disk before it answers", 0.0, True)
        if fsync == "everysec":
            return Persistence(f"AOF, fsync every second{snapshots}", f"up to 1 s of {WHAT}", 1.0, True)
        if fsync == "no":
            return Persistence(f"AOF, fsync left to the operating system{snapshots}",
                               f"the {WHAT} the operating system had not flushed yet (on Linux, up to about "
                               f"{OS_FLUSH_SECONDS:.0f} s)", OS_FLUSH_SECONDS, True)
        return Persistence(f"AOF (its fsync policy unknown: CONFIG GET refused){snapshots}",
                           f"what appendfsync allows (everysec, the default: up to 1 s of {WHAT})", None, True)
    if points:
        worst = max(seconds for seconds, _ in points)
        return Persistence(f"RDB snapshots only ({_schedule(points)})",
                           f"everything since the last snapshot: up to {worst} s of {WHAT}", float(worst), True)
    if aof is False and points == []:
        return Persistence("nothing (no AOF, no RDB snapshots)",
                           "everything: a restart forgets the queue and the ledger", math.inf, False)
    if aof is False:
        return Persistence("no AOF; RDB snapshots unknown (CONFIG GET refused: see your provider's settings)",
                           "everything since the provider's last snapshot, if it takes any", None, None)
    return Persistence("unknown (Redis answers neither CONFIG GET nor INFO persistence)", "unknown", None, None)
