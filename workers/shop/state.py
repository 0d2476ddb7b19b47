"""What the bridge remembers about each store's shop API, in Redis; the only owner of ``lb:shop:*``.

- a lock per store: one run at a time (sync, backfill or watch) across every process and machine,
  so a small WooCommerce server never gets two of the bridge's requests at once;
- the sync's watermark: the end of the last window it read completely;
- when each periodic task (sync, watch) is next due;
- the last run of each task, for ``bridge check`` and the metrics;
- what ``bridge connect`` set up: the public URL and a fingerprint of the secret each webhook got;
- the version (last-modified time) of each order fed in, by a sync or backfill read or by a webhook
  whose job proves it fed the whole version (:mod:`workers.jobs`), so the next run does not read an
  order again that has not changed since (:meth:`ShopState.known_versions`).

Every key here but the versions is one per store (a few hundred bytes each, kept until the store is
removed). The versions are one small key per order of a store with its shop API, every order that
arrives by webhook or is read from the API: ``lb:shop:seen:<store>:<order id>`` holding the order's
modified time as epoch seconds, expiring :data:`VERSION_TTL` after it was last written: 80 to 100
bytes per order (``MEMORY USAGE`` of such a key, its name included: 80 B for
``lb:shop:seen:shop:8000000``, 96 for ``lb:shop:seen:coffee-shopify:5619882082370``), for a week,
then nothing: within the 30 days the payload is kept, none of the ledger's 400 days.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from redis import Redis
from redis.client import Pipeline
from redis.lock import Lock

KEY_PREFIX = "lb:shop:"
# A run keeps its lock alive page by page; a worker that dies mid-run frees it after this long.
LOCK_TIMEOUT = 300
Task = Literal["sync", "watch", "backfill"]
# How long the version of an order read from a shop's API is remembered. A version saves reading the
# order again while it can reappear in a read window unchanged: the sync's windows overlap by
# minutes (one that keeps failing grows until it succeeds), the first sync looks back a day, and a
# backfill is repeated within days when at all. A week covers all of them; an order seen again after
# that is read once more (correct, only not free), which beats keeping 100 B an order for 400 days.
VERSION_TTL = 7 * 24 * 3600


def fingerprint(secret: str) -> str:
    """A short digest of a webhook secret: enough to tell whether it changed, useless to anyone else."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class RunStatus(BaseModel):
    """How a store's last run of a task went."""

    task: Task
    at: datetime
    ok: bool
    outcome: str = "ok"  # ok | retry_later | unreachable | refused | error
    message: str = ""


class ConnectRecord(BaseModel):
    """What ``bridge connect`` set up for a store."""

    url: str
    at: datetime
    secrets: dict[str, str] = Field(default_factory=dict)  # subscription id -> secret fingerprint


class ShopState:
    """Locks, watermarks, schedules, last runs and connect records of the stores' shop APIs."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    # Key layout: one place.
    status_key = f"{KEY_PREFIX}status"
    connected_key = f"{KEY_PREFIX}connected"

    @staticmethod
    def lock_key(store: str) -> str:
        return f"{KEY_PREFIX}lock:{store}"

    @staticmethod
    def watermark_key(store: str) -> str:
        return f"{KEY_PREFIX}watermark:{store}"

    @staticmethod
    def due_key(store: str, task: Task) -> str:
        return f"{KEY_PREFIX}due:{task}:{store}"

    @staticmethod
    def version_key(store: str, order_id: str) -> str:
        return f"{KEY_PREFIX}seen:{store}:{order_id}"

    # --- the per-store lock ---

    def lock(self, store: str, timeout: int = LOCK_TIMEOUT) -> Lock:
        """The store's lock (not yet acquired); ``reacquire()`` it between pages of a long run."""
        return self.connection.lock(self.lock_key(store), timeout=timeout, thread_local=False)

    # --- the sync's watermark ---

    def watermark(self, store: str) -> datetime | None:
        raw: bytes | None = self.connection.get(self.watermark_key(store))  # type: ignore[assignment]
        return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw) if raw else None

    def set_watermark(self, store: str, moment: datetime) -> None:
        self.connection.set(self.watermark_key(store), moment.astimezone(UTC).isoformat())

    # --- the versions of the orders read ---

    def known_versions(self, store: str, versions: dict[str, datetime | None]) -> set[str]:
        """Of ``{order id: modified at}``, the orders whose version was already read and fed in."""
        ids = [order_id for order_id, moment in versions.items() if moment is not None]
        if not ids:
            return set()
        stored: list[bytes | None] = self.connection.mget([self.version_key(store, i) for i in ids])  # type: ignore[assignment]
        return {order_id for order_id, raw in zip(ids, stored, strict=True)
                if raw is not None and int(raw) == _epoch(versions[order_id])}

    def remember_versions(self, store: str, versions: dict[str, datetime | None], pipe: Pipeline | None = None) -> None:
        """Note the version of each order fed in (one pipeline; each key lives :data:`VERSION_TTL`).

        With ``pipe``, the writes join that pipeline (sent with the caller's own) instead of one of their own.
        """
        own = pipe is None
        pipe = self.connection.pipeline(transaction=False) if pipe is None else pipe
        for order_id, moment in versions.items():
            if moment is not None:
                pipe.set(self.version_key(store, order_id), _epoch(moment), ex=VERSION_TTL)
        if own:
            pipe.execute()

    # --- schedules ---

    def due(self, store: str, task: Task) -> bool:
        raw: bytes | None = self.connection.get(self.due_key(store, task))  # type: ignore[assignment]
        return raw is None or float(raw) <= time.time()

    def schedule(self, store: str, task: Task, seconds: float) -> None:
        """The task is next due in ``seconds``."""
        self.connection.set(self.due_key(store, task), time.time() + seconds)

    # --- last runs ---

    def record(self, store: str, status: RunStatus) -> None:
        self.connection.hset(self.status_key, f"{store}:{status.task}", status.model_dump_json())

    def statuses(self) -> dict[tuple[str, str], RunStatus]:
        """The last run of every (store, task)."""
        raw: dict[bytes, bytes] = self.connection.hgetall(self.status_key)  # type: ignore[assignment]
        found = {}
        for name, value in raw.items():
            store, _, task = name.decode().rpartition(":")
            found[(store, task)] = RunStatus.model_validate_json(value)
        return found

    # --- what connect set up ---

    def connected(self, store: str) -> ConnectRecord | None:
        raw = self.connection.hget(self.connected_key, store)
        return ConnectRecord.model_validate_json(raw) if raw else None  # type: ignore[arg-type]

    def save_connected(self, store: str, record: ConnectRecord) -> None:
        self.connection.hset(self.connected_key, store, record.model_dump_json())


def _epoch(moment: datetime | None) -> int:
    """A version as stored: whole seconds (both shops give modified times to the second)."""
    return int(moment.timestamp()) if moment is not None else 0


__all__ = ["ConnectRecord", "RunStatus", "ShopState", "fingerprint"]
