"""What the checks read from Redis, in one round trip: the configuration, INFO (memory, persistence,
replication), and the order index.

Some hosted Redis refuse ``CONFIG`` (or answer it empty); then INFO stands in where it can (the
eviction policy, whether AOF is on) and the rest is unknown (``None``), never guessed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from workers.ledger import Ledger

CONFIG_NAMES = ("maxmemory-policy", "appendonly", "appendfsync", "save", "min-replicas-to-write",
                "min-replicas-max-lag")
INFO_SECTIONS = ("memory", "persistence", "replication")
# The rate of orders is read over this many days of the awards index (or since its oldest award).
RATE_WINDOW_DAYS = 7
DAY = 86400.0
# Days of the awards index read (the ledger's retention, 400 days, and a day).
INDEX_DAYS = 401


@dataclass
class StoreOrders:
    """One store's awards index (a list per day, ``lb:awards:<store>:<yyyymmdd>``, kept as long as the
    ledger; and the sorted set ``lb:awards:<store>`` earlier versions kept, until it expires). Read by
    the day, the window is whole days: the rate errs high by up to a day's awards over the window, and
    a deployment's oldest award counts from the end of its day."""

    held: int
    recent: int      # awarded within the rate window
    oldest: float | None  # Unix time of the oldest award held


@dataclass
class Readings:
    """The raw answers; ``None`` where Redis would not say."""

    config: dict[str, str | None]
    memory: dict[str, Any]
    persistence: dict[str, Any]
    replication: dict[str, Any]
    stores: list[StoreOrders] = field(default_factory=list)
    now: float = 0.0


def config_value(answer: Any, name: str) -> str | None:
    """A CONFIG GET answer's value; None when refused (an error) or empty (as some hosted Redis answer)."""
    if isinstance(answer, BaseException) or not isinstance(answer, dict):
        return None
    value = answer.get(name)
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) else None


def read(connection: Redis, stores: Iterable[str] | None = None, now: float | None = None) -> Readings:
    """Read everything the checks need; raises what redis-py raises when Redis cannot be reached.

    ``stores``: the store ids whose awards index gives the rate of orders; None finds them with a
    SCAN (fine for ``bridge check``; processes that read this often pass their stores).
    """
    now = time.time() if now is None else now
    if stores is None:
        prefix = Ledger.awards_key("")
        found = (k.decode().removeprefix(prefix) for k in connection.scan_iter(match=prefix + "*", count=1000))
        ids = sorted({name.rpartition(":")[0] if name[-9:-8] == ":" and name[-8:].isdigit() else name
                      for name in found})
    else:
        ids = list(stores)
    since = now - RATE_WINDOW_DAYS * DAY
    days = {store: Ledger.award_days(store, now - INDEX_DAYS * DAY, now) for store in ids}
    with connection.pipeline(transaction=False) as pipe:
        for name in CONFIG_NAMES:
            pipe.config_get(name)
        for section in INFO_SECTIONS:
            pipe.info(section)
        for store in ids:
            key = Ledger.awards_key(store)
            pipe.zcard(key)
            pipe.zcount(key, since, "+inf")
            pipe.zrange(key, 0, 0, withscores=True)
            for _, day in days[store]:
                pipe.llen(day)
        # A refused command (CONFIG on some hosted Redis) comes back as its error, read as "unknown";
        # a connection lost midway still raises.
        answers = pipe.execute(raise_on_error=False)
    config = {name: config_value(answers[i], name) for i, name in enumerate(CONFIG_NAMES)}
    infos = len(CONFIG_NAMES) + len(INFO_SECTIONS)
    memory, persistence, replication = (a if isinstance(a, dict) else {} for a in answers[len(CONFIG_NAMES):infos])
    rest = answers[infos:]
    orders = []
    for store in ids:
        (held, recent, first), rest = rest[:3], rest[3:]
        counts, rest = rest[:len(days[store])], rest[len(days[store]):]
        oldest = float(first[0][1]) if isinstance(first, list) and first else None
        held, recent = (int(n) if isinstance(n, int) else 0 for n in (held, recent))
        for (start, _), count in zip(days[store], counts, strict=True):
            if isinstance(count, int) and count:
                held += count
                recent += count if start + DAY > since else 0
                oldest = min(oldest if oldest is not None else now, min(start + DAY, now))
        orders.append(StoreOrders(held, recent, oldest))
    return Readings(config=config, memory=memory, persistence=persistence, replication=replication, stores=orders,
                    now=now)

