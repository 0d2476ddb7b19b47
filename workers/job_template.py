"""The intake's RQ job hash, written from a per-process template instead of built per webhook.

Every job the intake queues has the same function, timeout, result and failure TTLs, crash-retry
schedule and queue; only its id, arguments, description, meta and timestamps differ. Building each
one with ``Job.create`` + ``Job.to_dict`` redid all of it per webhook (about 50 µs of CPU; what
varies takes half that, most of it compressing the payload). :class:`JobTemplate` asks RQ once per
process for the hash of a job with those settings,
keeps the fields that never vary, and per webhook serialises only the ones that do, with the job's
own serializer and RQ's encodings: the hash is RQ's, and workers, registries, the scheduler, the
dashboard and ``Job.fetch`` read it like any other. ``tests/integration/test_event_queue.py``
compares it field for field with ``Job.create(...).to_dict()`` (``data`` once decompressed, see
``_COMPRESSION``), so an RQ upgrade that changes the hash fails a test instead of drifting silently.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from redis import Redis
from rq.job import Job, JobStatus
from rq.utils import now

# The fields that differ between two jobs of one template.
VARYING = ("created_at", "enqueued_at", "data", "description", "meta")
# RQ stores the call zlib-compressed and reads any zlib stream back. zlib's default state (a 32 KiB
# window, 256 KiB in all) is above malloc's mmap threshold, so every compress call can map and fault
# it in afresh (55-75 µs instead of 15 on this project's benchmark machine; RQ's own enqueue takes
# 0.7 page faults per webhook there, this 0.07); an 8 KiB window (64 KiB of state, reused from the
# heap) compresses webhook payloads as small (4.7 KB of WooCommerce order: 1,496 bytes either way).
# zlib's fastest level: 50 µs instead of 75 for that order, 55 instead of 165 for a 13 KB Shopify
# order, for 12-25% more bytes kept (1,746 instead of 1,563; 3,139 instead of 2,566).
_COMPRESSION = (zlib.Z_BEST_SPEED, zlib.DEFLATED, 13, 6)   # level, method, window bits, memory level


class JobTemplate:
    """RQ job hashes for one function and one set of ``Job.create`` options.

    A hash is :attr:`static` plus the :data:`VARYING` fields: ``created_at`` and ``enqueued_at``
    (:meth:`stamp`), ``data`` (:meth:`data`), ``description`` and ``meta`` (:meth:`meta`).
    """

    def __init__(self, func: str, connection: Redis, **options: Any) -> None:
        """``options``: the keyword arguments of ``Job.create`` shared by every job (timeouts, retry, origin)."""
        self.func = func
        self.connection = connection
        self.options = options
        sample = self.job("template", (), "template", {"template": True})
        self._func_name = sample.func_name
        self._serializer = sample.serializer
        encode = connection.get_encoder().encode
        # Unset fields (None, or '' for a job that never ran) read back the same when absent.
        self.static: dict[str, bytes] = {name: encode(value) for name, value in sample.to_dict().items()
                                         if name not in VARYING and value is not None and value != ""}

    def job(self, job_id: str, args: Sequence[Any], description: str, meta: Mapping[str, Any]) -> Job:
        """The job as RQ itself builds it, queued now (what the template must match)."""
        job = Job.create(self.func, args=tuple(args), id=job_id, connection=self.connection, description=description,
                         meta=dict(meta), status=JobStatus.QUEUED, **self.options)
        job.enqueued_at = now()
        return job

    @staticmethod
    def stamp(at: datetime) -> str:
        """``created_at`` and ``enqueued_at`` of a job created and queued at ``at`` (UTC)."""
        return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"   # utcformat's, without strftime

    def data(self, args: tuple[Any, ...]) -> bytes:
        """``data``: the call, serialised and compressed."""
        compressor = zlib.compressobj(*_COMPRESSION)
        return compressor.compress(self._serializer.dumps((self._func_name, None, args, {}))) + compressor.flush()

    def meta(self, meta: Mapping[str, Any]) -> bytes:
        """``meta``, serialised."""
        return self._serializer.dumps(meta)
