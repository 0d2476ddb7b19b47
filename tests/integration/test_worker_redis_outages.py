"""A worker whose Redis goes away between two steps of RQ's work loop waits for it and carries on.

Each case stops a real Redis server just before one step of the loop and starts it again half a
second later, or fills it up (maxmemory reached under noeviction) and gives it room half a second
later; the worker must then run the queued job and stop normally (burst mode), not quit with
"found an unhandled exception" as RQ's own loop does for a connection error outside its wait for a
job, and for a refused write anywhere. A job dequeued just before is left where RQ's maintenance
recovers it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.intermediate_queue import IntermediateQueue
from rq.job import JobStatus, Retry

from bridge.embedded_redis import EmbeddedRedis
from workers.connection import connect
from workers.redis_outages import RidesOutRedisOutages

STEPS = ["check_for_suspension", "run_maintenance_tasks", "dequeue_job_and_maintain_ttl", "execute_job",
         "heartbeat"]


def _worker_troubled_before(step: str, trouble: Callable[[], None], relief: Callable[[], None]) -> type[SimpleWorker]:
    """A worker class that calls ``trouble`` the first time it reaches ``step``, and ``relief`` 0.5 s later
    (in a thread of its own)."""
    original: Callable[..., Any] = getattr(SimpleWorker, step)
    troubled = threading.Event()

    def later() -> None:
        time.sleep(0.5)
        relief()

    def troubling(self: SimpleWorker, *args: Any, **kwargs: Any) -> Any:
        if not troubled.is_set():
            troubled.set()
            trouble()
            threading.Thread(target=later, daemon=True).start()
        return original(self, *args, **kwargs)

    # The trouble happens inside the step, below the mixin that guards (or fails to guard) it.
    stepped = type("Stepped", (SimpleWorker,), {step: troubling})
    return type("Troubled", (RidesOutRedisOutages, stepped), {
        "redis_wait_base_delay": 0.1, "redis_wait_max_delay": 0.5,
        "should_run_maintenance_tasks": True,  # every round of the loop, so the maintenance step is reached
    })


def _trouble(kind: str, server: EmbeddedRedis, conn: Redis, over: threading.Event) -> tuple[Callable[[], None],
                                                                                     Callable[[], None]]:
    """What makes Redis unusable and what makes it usable again: stopped and started on the same port
    ("outage"), or filled up (maxmemory below what it uses, noeviction) and given room ("full")."""
    if kind == "full":
        conn.config_set("maxmemory-policy", "noeviction")

        def make_room() -> None:
            conn.config_set("maxmemory", 0)
            over.set()

        return lambda: conn.config_set("maxmemory", 1) and None, make_room

    def come_back() -> None:
        server.start()
        over.set()
        # redis-server dies with the thread that started it (PR_SET_PDEATHSIG): keep this one alive.
        while server.process is not None:
            time.sleep(0.1)

    return server.stop, come_back


def _recovered_from_the_intermediate_queue(worker: SimpleWorker, queue: Queue) -> None:
    """What RQ's maintenance does for a job dequeued but never started, once it has sat there a minute."""
    stuck = IntermediateQueue(queue.key, connection=queue.connection)
    assert stuck.get_job_ids() == ["the-job"]
    stuck.set_first_seen("the-job")
    queue.connection.set(stuck.get_first_seen_key("the-job"), time.time() - 61)
    stuck.cleanup(worker, queue)  # fails it into its Retry: back in the queue
    worker.work(burst=True)


@pytest.mark.parametrize("kind", ["outage", "full"])
@pytest.mark.parametrize("step", STEPS)
def test_the_worker_waits_for_redis_at_every_step_of_its_loop(step: str, kind: str, tmp_path: Path) -> None:
    """A full Redis (maxmemory under noeviction) answers reads and refuses writes: RQ's loop quits on the
    refusal as on a lost connection; the worker waits until Redis takes a write and carries on."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    over = threading.Event()
    try:
        conn = connect(server.url)
        queue = Queue("outage", connection=conn)
        job = queue.enqueue("builtins.abs", -3, job_id="the-job", retry=Retry(max=1))
        worker = _worker_troubled_before(step, *_trouble(kind, server, conn, over))([queue], connection=conn)
        worker.redis_url = server.url

        worker.work(burst=True)

        assert over.wait(10), f"Redis was never troubled before {step}"
        if step == "execute_job":
            # Dequeued but not started when Redis went (or filled up): RQ's maintenance gives it back to its retry.
            assert job.get_status() == JobStatus.QUEUED and job.id not in queue.get_job_ids()
            _recovered_from_the_intermediate_queue(worker, queue)
        assert (job.get_status(), job.return_value()) == (JobStatus.FINISHED, 3)
    finally:
        over.wait(10)
        server.stop()  # also ends the thread that restarted it
