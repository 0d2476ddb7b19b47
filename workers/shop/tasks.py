"""The periodic shop tasks, run by worker maintenance: the sync and the subscription watch.

Why a Redis lock in worker maintenance rather than RQ 3's cron scheduler: RQ's ``CronScheduler`` is a
process of its own (``rq cron``) and has no leader election, so it means one more process to run
and supervise, and two of them enqueue everything twice. Every ``bridge worker`` already runs
maintenance; whichever worker gets there first takes the store's lock (:class:`ShopState`), checks
that the task is due (a timestamp in Redis), and runs it. So there is exactly one run at a time per
store across every process and machine, never two in one interval, and nothing new to start; a
worker that dies mid-run frees the lock when it expires, and the next run reads the window again.

The run happens in a background thread of the worker process, so jobs go on meanwhile (a sync can
wait out Shopify's cost bucket for a while). Nothing in it can stop a worker: a shop that is down or
refuses the keys is logged in one line, counted, recorded for ``bridge check``, and tried again at the
next interval. What each run found is told to the alerts (:mod:`workers.alerts.reports`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from redis.exceptions import LockError, RedisError

from config.log_format import log
from config.stores import StoreConfig
from workers.context import WorkerContext
from workers.metrics import SHOP_RUNS
from workers.platforms import shop_api_for
from workers.platforms.shop_api import ShopApi, ShopApiError
from workers.shop import subscriptions
from workers.shop.state import RunStatus, ShopState, Task
from workers.shop.sync import Summary, sync_store

logger = logging.getLogger("workers.shop.tasks")
T = TypeVar("T")


def _record(state: ShopState, store: StoreConfig, task: Task, outcome: str, message: str) -> None:
    SHOP_RUNS.labels(store.id, task, outcome).inc()
    state.record(store.id, RunStatus(task=task, at=datetime.now(UTC), ok=outcome == "ok", outcome=outcome,
                                     message=message))


def _run(state: ShopState, store: StoreConfig, task: Task, work: Callable[[], T],
         describe: Callable[[T], str]) -> T | ShopApiError:
    """Run one task, recording how it went; a shop API failure is one log line and is returned,
    never raised."""
    try:
        result = work()
    except ShopApiError as exc:
        log(logger, f"shop {task} failed; trying again next run", logging.WARNING, store=store.id, task=task,
            outcome=exc.kind, error=str(exc))
        _record(state, store, task, exc.kind, str(exc))
        return exc
    message = describe(result)
    log(logger, f"shop {task} done", store=store.id, task=task, summary=message)
    _record(state, store, task, "ok", message)
    return result


def run_due(ctx: WorkerContext, api_for: Callable[[StoreConfig], ShopApi] | None = None) -> None:
    """Run every store's due sync and watch, each under the store's lock (skipped when it is held)."""
    settings = ctx.settings
    state = ShopState(ctx.connection)
    build = api_for or (lambda store: shop_api_for(store, settings))
    for store in [s for s in ctx.stores.values() if s.has_shop_api]:
        lock = state.lock(store.id)
        try:
            if not lock.acquire(blocking=False):
                continue
            try:
                if settings.shop_sync_interval and state.due(store.id, "sync"):
                    # Scheduled before it runs: a failing shop is tried again next interval, not at
                    # every maintenance.
                    state.schedule(store.id, "sync", settings.shop_sync_interval)
                    api = build(store)
                    synced = _run(state, store, "sync", lambda: sync_store(ctx, store, api, lock=lock), Summary.line)
                    if isinstance(synced, ShopApiError):
                        ctx.alerts.sync_ran(store.id, synced.kind, str(synced), 0)
                    else:
                        ctx.alerts.sync_ran(store.id, "ok", "", synced.events_queued)
                if (settings.shop_watch_interval and state.due(store.id, "watch")
                        and state.connected(store.id) is not None):
                    state.schedule(store.id, "watch", settings.shop_watch_interval)
                    api = build(store)
                    watched = _run(state, store, "watch", lambda: subscriptions.watch(api, store, state), _watch_line)
                    if not isinstance(watched, ShopApiError):
                        ctx.alerts.watched(store.id, [t.model_dump() for t in watched])
            finally:
                try:
                    lock.release()
                except LockError:
                    pass  # it expired during a very long run; the next run takes it afresh
        except (RedisError, LockError) as exc:
            log(logger, "shop tasks skipped: Redis unavailable", logging.WARNING, store=store.id,
                error_class=type(exc).__name__)
            return
        except Exception:  # a bug here must not stop the worker; the next maintenance tries again
            logger.exception("shop tasks of %s failed", store.id)


def _watch_line(topics: list[subscriptions.TopicState]) -> str:
    return ", ".join(f"{t.topic} {t.action or t.status}" for t in topics)


class ShopTasks:
    """Starts :func:`run_due` in a background thread of a worker process, one run at a time."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def kick(self, ctx: WorkerContext) -> None:
        """Start a run unless one is going on, or no store has a shop API, or both tasks are off."""
        settings = ctx.settings
        if not (settings.shop_sync_interval or settings.shop_watch_interval):
            return
        if not any(s.has_shop_api for s in ctx.stores.values()):
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=run_due, args=(ctx,), name="shop-tasks", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
