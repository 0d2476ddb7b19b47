"""The conditions nothing reports as it happens, looked at periodically by whichever process is up.

- ``workers_down``: events are waiting and no worker has been alive for
  ``alert_workers_down_after``. The web processes look too, since they are what still runs.
- ``backlog_stale``: the oldest waiting event has waited ``alert_backlog_age``.
- ``redis``: the server evicts keys, is nearly full, keeps nothing on disk, or has fewer replicas in
  sync than ``BRIDGE_REDIS_MIN_REPLICAS`` requires (:mod:`workers.redis_checks`, the checks
  ``bridge check`` prints).
- ``job_failed``: jobs that reached the failed registry since the last look, whatever took them
  there, one digest per store held ``alert_digest_seconds`` so the failures of that minute arrive as
  one; it ends when they have all left the failed registry (replayed, dismissed).

"Waiting" is the bridge's index of open jobs (:class:`~workers.event_queue.EventQueue`): each job
scored by when it was queued or is next due, so a job counts once its time has come, and a job held
back for later (an award delay, a retry's backoff) does not.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.registry import FailedJobRegistry

from config.log_format import log
from config.settings import Settings
from workers.alerts.kinds import DIGEST_NAMED
from workers.alerts.state import AlertState
from workers.event_queue import EventQueue
from workers.ops import fetch_jobs, view
from workers.redis_checks import inspect_server

logger = logging.getLogger("workers.alerts.checks")


class Backlog(BaseModel):
    """The queue as the checks see it."""

    workers: int
    waiting: int
    oldest_age: float


def backlog(connection: Redis, queue_name: str) -> Backlog:
    """Workers alive on the queue, events waiting (due now), and how long the oldest has waited."""
    now = time.time()
    queue = Queue(queue_name, connection=connection)
    workers = len(Worker.all(queue=queue))
    with connection.pipeline(transaction=False) as pipe:
        pipe.zcount(EventQueue.open_jobs_key, "-inf", now)
        pipe.zrange(EventQueue.open_jobs_key, 0, 0, withscores=True)
        waiting, oldest = pipe.execute()
    return Backlog(workers=workers, waiting=int(waiting), oldest_age=max(0.0, now - oldest[0][1]) if oldest else 0.0)


def check_workers(state: AlertState, settings: Settings, seen: Backlog) -> None:
    """Fire or resolve workers_down and backlog_stale."""
    now = time.time()
    conn = state.connection
    if seen.workers:
        conn.set(state.workers_seen_key, now)
        last_alive = now
    else:
        # Never seen (a fresh deployment, or the first look): count from now.
        conn.set(state.workers_seen_key, now, nx=True)
        last_alive = float(conn.get(state.workers_seen_key) or now)  # type: ignore[arg-type]
    down_for = now - last_alive
    if seen.waiting and down_for >= settings.alert_workers_down_after:
        state.fire("workers_down", None, {"waiting": seen.waiting, "down_for": round(down_for),
                                          "last_alive": round(last_alive)})
    elif seen.workers or not seen.waiting:
        state.resolve("workers_down", None)
    if seen.waiting and seen.oldest_age >= settings.alert_backlog_age:
        state.fire("backlog_stale", None, {"waiting": seen.waiting, "oldest_age": round(seen.oldest_age),
                                           "workers": seen.workers})
    else:
        state.resolve("backlog_stale", None)


def _digest(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {"failures": (old.get("failures", []) + new["failures"])[:DIGEST_NAMED]}


def find_failed(state: AlertState, settings: Settings) -> None:
    """Fire each store's job_failed for the jobs that reached the failed registry since the last look,
    whatever took them there (the job's own verdict, or retries spent on crashes and timeouts)."""
    conn = state.connection
    registry = FailedJobRegistry(settings.queue_name, connection=conn)
    mark: bytes | None = conn.get(state.failed_mark_key)  # type: ignore[assignment]
    # RQ scores a failed job by when it failed plus its failure TTL (one for every job of a
    # deployment) in whole seconds: read from the last score seen, inclusive, and skip what is known.
    found: list[tuple[bytes, float]] = conn.zrangebyscore(  # type: ignore[assignment]
        registry.key, mark.decode() if mark else "-inf", "+inf", withscores=True)
    if not found:
        return
    new: dict[str, list[dict[str, Any]]] = {}
    for job in fetch_jobs(conn, [member.decode() for member, _ in found]):
        seen = view(job)
        store = seen.store or "unknown"
        if conn.sismember(state.failed_key(store), job.id):
            continue
        state.note_failed(store, job.id)
        replay = f"bridge replay {seen.reference} --store {store}" if seen.reference else None
        new.setdefault(store, []).append({"reference": seen.reference, "event": seen.event,
                                          "reason": seen.last_error, "job_id": job.id, "replay": replay})
    for store, failures in new.items():
        state.fire("job_failed", store, {"failures": failures}, hold=settings.alert_digest_seconds, merge=_digest,
                   seen=len(failures))
    conn.set(state.failed_mark_key, max(score for _, score in found))


def check_failed(state: AlertState, queue_name: str) -> None:
    """Resolve a store's job_failed once none of the failed jobs it covered is in the failed registry."""
    registry = FailedJobRegistry(queue_name, connection=state.connection)
    for store, job_ids in state.failed_stores().items():
        with state.connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.zscore(registry.key, job_id)
            scores = pipe.execute()
        gone = [job_id for job_id, score in zip(job_ids, scores, strict=True) if score is None]
        state.forget_failed(store, gone)
        if len(gone) == len(job_ids):
            state.resolve("job_failed", store)


def check_redis(state: AlertState, settings: Settings) -> None:
    """Fire or resolve the redis alert from issue #20's checks of the server (eviction, persistence,
    memory, replicas), with memory above ``alert_redis_memory_ratio`` of maxmemory a problem too."""
    report = inspect_server(state.connection, min_replicas=settings.redis_min_replicas)
    problems = list(report.problems)
    ratio = settings.alert_redis_memory_ratio
    if not report.memory_tight and report.maxmemory and report.used_memory > ratio * report.maxmemory:
        problems.append(f"Redis memory is above {ratio:.0%} of maxmemory: {report.memory}")
    if problems:
        state.fire("redis", None, {"problems": problems, "policy": report.policy, "persistence": report.persistence,
                                   "memory": report.memory})
    else:
        state.resolve("redis", None)


def run_checks(state: AlertState, settings: Settings) -> None:
    """One round of every periodic check; a Redis error ends the round (the next one tries again)."""
    try:
        check_workers(state, settings, backlog(state.connection, settings.queue_name))
        find_failed(state, settings)
        check_failed(state, settings.queue_name)
        check_redis(state, settings)
    except RedisError as exc:
        log(logger, "alert checks skipped: cannot reach Redis", logging.WARNING, error_class=type(exc).__name__)
