"""A worker whose Redis goes away between two steps of RQ's work loop waits for it and carries on.

Each case stops a real Redis server just before one step of the loop and starts it again half a
second later; the worker must then run the queued job and stop normally (burst mode), not quit with
"found an unhandled exception" as RQ's own loop does for a connection error outside its wait for a job.
A job dequeued just before Redis went is left where RQ's maintenance recovers it.
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


def _worker_losing_redis_before(step: str, server: EmbeddedRedis, restarted: threading.Event) -> type[SimpleWorker]:
    """A worker class that stops Redis the first time it reaches ``step``, and starts it 0.5 s later."""
    original: Callable[..., Any] = getattr(SimpleWorker, step)
    stopped = threading.Event()

    def come_back() -> None:
        time.sleep(0.5)
        server.start()
        restarted.set()
        # redis-server dies with the thread that started it (PR_SET_PDEATHSIG): keep this one alive.
        while server.process is not None:
            time.sleep(0.1)

    def losing(self: SimpleWorker, *args: Any, **kwargs: Any) -> Any:
        if not stopped.is_set():
            stopped.set()
            server.stop()
            threading.Thread(target=come_back, daemon=True).start()
        return original(self, *args, **kwargs)

    # The outage happens inside the step, below the mixin that guards (or fails to guard) it.
    stepped = type("Stepped", (SimpleWorker,), {step: losing})
    return type("LosesRedis", (RidesOutRedisOutages, stepped), {
        "redis_wait_base_delay": 0.1, "redis_wait_max_delay": 0.5,
        "should_run_maintenance_tasks": True,  # every round of the loop, so the maintenance step is reached
    })


def _recovered_from_the_intermediate_queue(worker: SimpleWorker, queue: Queue) -> None:
    """What RQ's maintenance does for a job dequeued but never started, once it has sat there a minute."""
    stuck = IntermediateQueue(queue.key, connection=queue.connection)
    assert stuck.get_job_ids() == ["the-job"]
    stuck.set_first_seen("the-job")
    queue.connection.set(stuck.get_first_seen_key("the-job"), time.time() - 61)
    stuck.cleanup(worker, queue)  # fails it into its Retry: back in the queue
    worker.work(burst=True)


@pytest.mark.parametrize("step", STEPS)
def test_the_worker_waits_for_redis_at_every_step_of_its_loop(step: str, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    restarted = threading.Event()
    try:
        conn = connect(server.url)
        queue = Queue("outage", connection=conn)
        job = queue.enqueue("builtins.abs", -3, job_id="the-job", retry=Retry(max=1))
        worker = _worker_losing_redis_before(step, server, restarted)([queue], connection=conn)
        worker.redis_url = server.url

        worker.work(burst=True)

        assert restarted.wait(10), f"Redis was never stopped before {step}"
        if step == "execute_job":
            # Dequeued but not started when Redis went: RQ's maintenance gives it back to its retry.
            assert job.get_status() == JobStatus.QUEUED and job.id not in queue.get_job_ids()
            _recovered_from_the_intermediate_queue(worker, queue)
        assert (job.get_status(), job.return_value()) == (JobStatus.FINISHED, 3)
    finally:
        restarted.wait(10)
        server.stop()  # also ends the thread that restarted it


def _worker_finding_redis_full_before(step: str, conn: Redis, freed: threading.Event) -> type[SimpleWorker]:
    """A worker class that fills Redis up (maxmemory below what it uses, noeviction) the first time it
    reaches ``step``, and gives it room again 0.5 s later."""
    original: Callable[..., Any] = getattr(SimpleWorker, step)
    filled = threading.Event()

    def make_room() -> None:
        time.sleep(0.5)
        conn.config_set("maxmemory", 0)
        freed.set()

    def filling(self: SimpleWorker, *args: Any, **kwargs: Any) -> Any:
        if not filled.is_set():
            filled.set()
            conn.config_set("maxmemory", 1)
            threading.Thread(target=make_room, daemon=True).start()
        return original(self, *args, **kwargs)

    stepped = type("Stepped", (SimpleWorker,), {step: filling})
    return type("FindsRedisFull", (RidesOutRedisOutages, stepped), {
        "redis_wait_base_delay": 0.1, "redis_wait_max_delay": 0.5, "should_run_maintenance_tasks": True,
    })


@pytest.mark.parametrize("step", STEPS)
def test_the_worker_waits_out_a_full_redis_at_every_step_of_its_loop(step: str, tmp_path: Path) -> None:
    """At maxmemory under noeviction Redis answers reads and refuses writes (OOM): RQ's loop would quit
    on the refusal; the worker waits until Redis takes a write and carries on, as through an outage."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    freed = threading.Event()
    try:
        conn = connect(server.url)
        conn.config_set("maxmemory-policy", "noeviction")
        queue = Queue("full", connection=conn)
        job = queue.enqueue("builtins.abs", -3, job_id="the-job", retry=Retry(max=1))
        worker = _worker_finding_redis_full_before(step, conn, freed)([queue], connection=conn)
        worker.redis_url = server.url

        worker.work(burst=True)

        assert freed.wait(10), f"Redis was never filled before {step}"
        if step == "execute_job":
            assert job.get_status() == JobStatus.QUEUED and job.id not in queue.get_job_ids()
            _recovered_from_the_intermediate_queue(worker, queue)
        assert (job.get_status(), job.return_value()) == (JobStatus.FINISHED, 3)
    finally:
        server.stop()
