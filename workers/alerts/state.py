"""What the deployment knows about its alerts, in Redis; the only owner of ``lb:alert:*``.

One record per condition (an alert kind, its store or none, and a key for kinds with several
conditions per store), whichever process saw it: :meth:`AlertState.fire` and
:meth:`AlertState.resolve` change it in one optimistic transaction (``WATCH``), so however many
processes see a condition at once, exactly one of them queues its notification.

A notification is queued once per receiver in the outbox (a sorted set by due time) and sent by
whichever process's alert loop claims it first (:mod:`workers.alerts.delivery`). Why not an RQ
job: alerts must leave from the web processes when no worker runs (``workers_down``), and an RQ job
and its retries need a worker and its scheduler. The outbox is only the delivery's due time and
attempts; what is sent is rendered from the record when it is sent, so a digest holds every
failure that joined it while it waited.

Keys (none per order; a deployment holds a handful of conditions):

- ``lb:alert:c:{id}`` — the record (JSON, ~300 B–2 KB); kept while firing, ``RESOLVED_KEPT`` after;
- ``lb:alert:firing`` — the ids firing now (a set);
- ``lb:alert:outbox`` / ``lb:alert:attempts`` — deliveries due and their attempts so far, until
  sent or given up (``alert_give_up_after``);
- ``lb:alert:streak:{what}`` — consecutive refusals or failed runs, one day after the last;
- ``lb:alert:failed:{store}`` — ids of the store's failed jobs the job_failed alert covers (~40 B
  per failed job, gone when the job leaves the failed registry);
- ``lb:alert:round``, ``lb:alert:workers-seen`` and ``lb:alert:failed-mark`` — the periodic checks'
  lease, when a worker was last alive, and how far the failed registry has been read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline

from workers.alerts.records import AlertRecord, Delivery, Kind, State

KEY_PREFIX = "lb:alert:"
RESOLVED_KEPT = 7 * 24 * 3600
STREAK_KEPT = 24 * 3600

# Claim up to ARGV[3] deliveries due by ARGV[1] for ARGV[2] seconds: other processes skip them
# meanwhile, and a process that dies with one claimed leaves it to be claimed again.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
end
return due
"""


Merge = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


def replace(_: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The default merge: what was seen last is what the alert says."""
    return new


def condition_id(alert: str, store: str | None, key: str = "") -> str:
    """``calls_refused:coffee-woo:transactions/deduct-points``; ``workers_down:-``."""
    return ":".join([alert, store or "-"] + ([key] if key else []))


class AlertState:
    """Records, the outbox and the counters alerts need, with their key names in one place."""

    firing_key = f"{KEY_PREFIX}firing"
    outbox_key = f"{KEY_PREFIX}outbox"
    attempts_key = f"{KEY_PREFIX}attempts"
    round_key = f"{KEY_PREFIX}round"
    failed_mark_key = f"{KEY_PREFIX}failed-mark"
    workers_seen_key = f"{KEY_PREFIX}workers-seen"

    def __init__(self, connection: Redis, receivers: int, repeat: float) -> None:
        self.connection = connection
        self.receivers = receivers
        self.repeat = repeat
        self._claim = connection.register_script(_CLAIM)

    @staticmethod
    def record_key(cid: str) -> str:
        return f"{KEY_PREFIX}c:{cid}"

    @staticmethod
    def streak_key(what: str) -> str:
        return f"{KEY_PREFIX}streak:{what}"

    @staticmethod
    def failed_key(store: str) -> str:
        return f"{KEY_PREFIX}failed:{store}"

    # --- conditions -------------------------------------------------------------------------------

    def fire(self, alert: Kind, store: str | None, details: dict[str, Any], *, key: str = "",
             hold: float = 0.0, merge: Merge = replace, seen: int = 1) -> bool:
        """The condition holds now (``seen`` times over). Queues a ``firing`` when it starts
        (``hold`` seconds later, so what joins it meanwhile goes in the same notification) and again
        once ``repeat`` has passed since the last; returns whether this call queued one."""
        cid = condition_id(alert, store, key)
        rkey = self.record_key(cid)

        def step(pipe: Pipeline) -> bool:
            now = time.time()
            moment = datetime.fromtimestamp(now, UTC)
            old = self._read(pipe, rkey)
            pipe.multi()
            if old is None or old.state == "resolved":
                record = AlertRecord(id=cid, alert=alert, store=store, key=key, first_seen=moment, last_seen=moment,
                                     count=seen, details=merge({}, details), sent=(old.sent if old else 0) + 1, last_sent=now,
                                     held_until=now + hold)
                self._queue(pipe, record, now + hold)
                pipe.sadd(self.firing_key, cid)
                queued = True
            else:
                record = old.model_copy(update={"count": old.count + seen, "last_seen": moment,
                                                "details": merge(old.details, details)})
                queued = now - old.last_sent >= self.repeat
                if queued:
                    record.sent, record.last_sent = old.sent + 1, now
                    self._queue(pipe, record, now)
            pipe.set(rkey, record.model_dump_json())
            return queued

        return bool(self.connection.transaction(step, rkey, value_from_callable=True))  # type: ignore[arg-type]

    def resolve(self, alert: Kind, store: str | None, key: str = "") -> bool:
        """The condition no longer holds: queues a ``resolved`` if it was firing; returns whether."""
        cid = condition_id(alert, store, key)
        rkey = self.record_key(cid)

        def step(pipe: Pipeline) -> bool:
            old = self._read(pipe, rkey)
            if old is None or old.state != "firing":
                return False
            now = time.time()
            record = old.model_copy(update={"state": "resolved", "ended_at": datetime.fromtimestamp(now, UTC),
                                            "sent": old.sent + 1, "last_sent": now})
            pipe.multi()
            self._queue(pipe, record, max(now, old.held_until))
            pipe.srem(self.firing_key, cid)
            pipe.set(rkey, record.model_dump_json(), ex=RESOLVED_KEPT)
            return True

        return bool(self.connection.transaction(step, rkey, value_from_callable=True))  # type: ignore[arg-type]

    def is_firing(self, *cids: str) -> list[bool]:
        """Whether each condition id is firing (one round trip)."""
        return [bool(x) for x in self.connection.smismember(self.firing_key, list(cids))]  # type: ignore[union-attr]

    def firing(self) -> list[AlertRecord]:
        """Every condition firing now, oldest first."""
        ids = sorted(m.decode() for m in self.connection.smembers(self.firing_key))  # type: ignore[union-attr]
        raws = self.connection.mget([self.record_key(cid) for cid in ids]) if ids else []
        records = [AlertRecord.model_validate_json(raw) for raw in raws if raw]  # type: ignore[union-attr]
        return sorted(records, key=lambda r: r.first_seen)

    def record(self, cid: str) -> AlertRecord | None:
        return self._read(self.connection, self.record_key(cid))

    @staticmethod
    def _read(client: Redis | Pipeline, rkey: str) -> AlertRecord | None:
        raw = client.get(rkey)
        return AlertRecord.model_validate_json(raw) if raw else None  # type: ignore[arg-type]

    def _queue(self, pipe: Pipeline, record: AlertRecord, due: float) -> None:
        deliveries = [Delivery(id=record.id, seq=record.sent, state=record.state, receiver=i)
                      for i in range(self.receivers)]
        if deliveries:
            pipe.zadd(self.outbox_key, {d.member: due for d in deliveries})

    # --- streaks and the failed jobs a job_failed alert covers ----------------------------------

    def lengthen(self, what: str) -> int:
        """One more in a row; returns how many now."""
        with self.connection.pipeline() as pipe:
            pipe.incr(self.streak_key(what))
            pipe.expire(self.streak_key(what), STREAK_KEPT)
            count, _ = pipe.execute()
        return int(count)

    def break_streak(self, what: str) -> None:
        self.connection.delete(self.streak_key(what))

    def note_failed(self, store: str, job_id: str) -> None:
        self.connection.sadd(self.failed_key(store), job_id)

    def failed_stores(self) -> dict[str, list[str]]:
        """The failed jobs each store's job_failed alert covers."""
        prefix = self.failed_key("")
        found = {}
        for key in self.connection.scan_iter(match=f"{prefix}*", count=100):
            members = self.connection.smembers(key)
            found[key.decode().removeprefix(prefix)] = sorted(m.decode() for m in members)  # type: ignore[union-attr]
        return found

    def forget_failed(self, store: str, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.connection.srem(self.failed_key(store), *ids)

    # --- the outbox -------------------------------------------------------------------------------

    def claim(self, lease: float, limit: int = 20) -> list[Delivery]:
        """Deliveries due now, claimed for ``lease`` seconds."""
        members = self._claim(keys=[self.outbox_key], args=[time.time(), lease, limit])
        return [Delivery.parse(m) for m in members]

    def delivered(self, delivery: Delivery) -> None:
        with self.connection.pipeline() as pipe:
            pipe.zrem(self.outbox_key, delivery.member)
            pipe.hdel(self.attempts_key, delivery.member)
            pipe.execute()

    def failed_attempt(self, delivery: Delivery) -> tuple[int, float]:
        """Count a failed attempt; returns the attempts so far and when the first one failed."""
        raw = self.connection.hget(self.attempts_key, delivery.member)
        attempts, first = (raw.decode().split() if raw else ["0", str(time.time())])  # type: ignore[union-attr]
        self.connection.hset(self.attempts_key, delivery.member, f"{int(attempts) + 1} {first}")
        return int(attempts) + 1, float(first)

    def retry_at(self, delivery: Delivery, when: float) -> None:
        self.connection.zadd(self.outbox_key, {delivery.member: when}, xx=True)

    def pending(self) -> int:
        """Deliveries not yet made (due or waiting for a retry)."""
        return int(self.connection.zcard(self.outbox_key))  # type: ignore[arg-type]

    # --- the periodic checks' lease ----------------------------------------------------------------

    def take_round(self, seconds: float) -> bool:
        """Whether this process runs the periodic checks now (one process per interval)."""
        return bool(self.connection.set(self.round_key, "1", nx=True, px=max(1, int(seconds * 1000))))
