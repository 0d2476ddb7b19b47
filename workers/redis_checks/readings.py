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


@dataclass
class StoreOrders:
    """One store's awards index (``lb:awards:<store>``, kept as long as the ledger)."""

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
        ids = sorted({k.decode().removeprefix(prefix) for k in connection.scan_iter(match=prefix + "*", count=1000)})
    else:
        ids = list(stores)
    since = now - RATE_WINDOW_DAYS * DAY
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
        # A refused command (CONFIG on some hosted Redis) comes back as its error, read as "unknown";
        # a connection lost midway still raises.
        answers = pipe.execute(raise_on_error=False)
    config = {name: config_value(answers[i], name) for i, name in enumerate(CONFIG_NAMES)}
    infos = len(CONFIG_NAMES) + len(INFO_SECTIONS)
    memory, persistence, replication = (a if isinstance(a, dict) else {} for a in answers[len(CONFIG_NAMES):infos])
    rest = answers[infos:]
    orders = []
    for i in range(len(ids)):
        held, recent, first = rest[3 * i:3 * i + 3]
        oldest = float(first[0][1]) if isinstance(first, list) and first else None
        orders.append(StoreOrders(int(held) if isinstance(held, int) else 0,
                                  int(recent) if isinstance(recent, int) else 0, oldest))
    return Readings(config=config, memory=memory, persistence=persistence, replication=replication, stores=orders,
                    now=now)

