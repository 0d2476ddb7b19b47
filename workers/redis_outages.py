"""RQ workers that wait out a Redis outage instead of quitting.

RQ 3 already rides out a lost connection in one place: while a worker waits for a job, a connection
error is logged and retried with backoff. Everywhere else in ``Worker.work`` (the suspension check,
maintenance, heartbeats, the worker's state (set to "idle" just before that wait), a job's bookkeeping
before and after it runs) a lost Redis ends the loop
("found an unhandled exception, quitting") and the process exits, leaving a platform to restart it
in a loop. :class:`RidesOutRedisOutages` wraps exactly those steps: when one finds Redis gone, the
worker waits in :func:`workers.connection.wait_for_redis` (capped, jittered backoff, one log line per
attempt) and carries on with the same step when Redis answers. A stop request (SIGTERM) ends the
wait and the worker as usual.

A full Redis (``maxmemory`` reached under ``noeviction``) is an outage too, not a crash: it answers
reads but refuses writes with ``OOM command not allowed``, which RQ's loop (its wait for a job
included) takes for an unhandled exception and quits on. The same steps wait until Redis takes a
write again. RQ writes each of its bookkeeping steps in one MULTI/EXEC, and Redis refuses the whole
transaction when one command of it needs memory, so a refused step leaves nothing half-written.

A job that Redis vanished under is left where RQ left it: "started", its execution's heartbeat
running out. When it has (job timeout + ``worker_heartbeat_grace``), RQ's maintenance retries it as
it retries a dead worker's job, and the ledger's in-flight marks make the retry ask Loyalty.lt
whether the interrupted call landed: the job still has its effect exactly once. A job dequeued but
not yet started is recovered from RQ's intermediate queue the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from redis.backoff import EqualJitterBackoff
from redis.exceptions import RedisError
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from config.log_format import log
from workers.connection import describe, is_full, is_outage, masked_url, wait_for_redis

if TYPE_CHECKING:
    from rq.executions import Execution
    from rq.worker import BaseWorker

    _Base = BaseWorker
else:
    _Base = object

logger = logging.getLogger("workers.redis_outages")
T = TypeVar("T")


class RidesOutRedisOutages(_Base):
    """Mixin for RQ workers (put it first in the bases): Redis going away means waiting, not exiting."""

    # Set per process by ``run_worker`` from the settings.
    redis_url: str | None = None
    redis_wait_base_delay = 1.0
    redis_wait_max_delay = 30.0

    @classmethod
    def redis_backoff(cls) -> EqualJitterBackoff:
        """How long to wait between attempts: exponential from the base delay, capped, with jitter."""
        return EqualJitterBackoff(cap=cls.redis_wait_max_delay, base=cls.redis_wait_base_delay)

    def wait_for_redis(self, error: BaseException) -> None:
        """Wait until Redis answers again; raise RQ's StopRequested if the worker is asked to stop meanwhile."""
        if not wait_for_redis(self.connection, self.redis_url, error=error, backoff=self.redis_backoff(),
                              should_stop=lambda: self._stop_requested):
            raise StopRequested()

    def _through_outages(self, step: Callable[..., T], *args: Any) -> T:
        """Run one step of RQ's loop; if Redis is gone (or full), wait for it and run the step again."""
        while True:
            try:
                return step(*args)
            except RedisError as exc:
                if not is_outage(exc):
                    raise
                self.wait_for_redis(exc)

    # The steps of RQ's work loop that talk to Redis outside its own wait for a job. Each is safe to
    # run again: they read, or refresh TTLs, or clean registries.

    def check_for_suspension(self, burst: bool) -> None:
        self._through_outages(super().check_for_suspension, burst)

    def run_maintenance_tasks(self) -> None:
        self._through_outages(super().run_maintenance_tasks)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        # RQ rides out a lost connection here itself, but not a full Redis: its BLMOVE is a write. A job
        # moved just before a refusal is in RQ's intermediate queue, which RQ's maintenance recovers.
        return self._through_outages(super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # only queues commands; whoever executes the pipeline handles errors
            super().heartbeat(timeout, pipeline)
            return
        self._through_outages(super().heartbeat, timeout)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        # RQ sets "idle" first thing in its wait for a job, outside the try that rides out an outage there.
        if pipeline is not None:
            super().set_state(state, pipeline)
            return
        self._through_outages(super().set_state, state)

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        # The forking worker's parent, while its work horse runs the job.
        self._through_outages(super().maintain_heartbeats, job, execution)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job; if Redis went away (or filled up) during its bookkeeping, leave the job to RQ and
        wait for Redis."""
        try:
            super().execute_job(job, queue)
        except RedisError as exc:
            if not is_outage(exc):
                raise
            if self.horse_pid:  # a forking worker's horse may still be running: let it finish first
                self.wait_for_horse()
                self._horse_pid = 0
            what = "Redis refused its writes (full)" if is_full(exc) else "Redis went away"
            log(logger, f"job {job.id}: {what} while it ran; RQ retries it once its heartbeat runs "
                        "out (job timeout + grace)", logging.WARNING, job_id=job.id,
                redis=masked_url(self.redis_url or ""), error=describe(exc))
            self.executions.clear()  # the execution is RQ's to clean up now, from the registry
            self.wait_for_redis(exc)
            self.set_state(WorkerStatus.IDLE)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        """RQ's handler for its command-channel thread logs every 2 s of an outage (and lets a timeout kill
        the thread); the main loop already reports the outage once per attempt, so this one retries quietly."""
        if is_outage(exc):
            time.sleep(2.0)
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def teardown(self) -> None:
        """RQ's teardown; when Redis is gone the worker's record cannot be updated and expires on its own."""
        try:
            super().teardown()
        except RedisError as exc:
            if not is_outage(exc):
                raise
            log(logger, "stopping without Redis: the worker's registration expires by itself", logging.WARNING,
                redis=masked_url(self.redis_url or ""), error=describe(exc))
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()
