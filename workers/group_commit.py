"""Group commit: the intake's Redis scripts of one process share round trips.

Each webhook is made durable by one Lua script (:mod:`workers.event_queue`), and on a loaded
machine the round trip, not the script, is most of what it costs: the system calls, the waking of
Redis and of the waiting thread. :class:`GroupCommit` sends the scripts of the requests in flight
in one process as one pipeline on one connection of its own:

- a thread with a script to run adds it to the pending list; if no batch is on the wire it
  becomes the leader, takes everything pending (its own call included), sends it, reads every
  reply and hands each to its thread;
- a thread that arrives while a batch is on the wire waits; when that batch is answered, the
  first of the waiting calls is made the next leader, and it sends all that piled up meanwhile.

Each call returns only its own reply, read after Redis ran its script: a webhook is acknowledged
only once its own submit is in Redis (``tests/integration/test_group_commit.py``). A failed batch
fails every call in it whose reply was not read (the intake answers 503 and the shop retries); a
reply that was read stands. Nothing is retried after a reply could have been lost, except on a
connection found closed (a restarted Redis), where the scripts' own dedupe makes a second run
harmless.

With a required number of replicas (:mod:`workers.replication`), the pipeline ends with one
``WAIT``, which covers every script in it: a call whose script ran but whose WAIT fell short (or
could not be read) fails with :class:`~workers.replication.NotReplicated`, so its webhook is
answered 503 and the shop sends it again. Before the WAIT goes :data:`~workers.replication.CARRY`,
a write of no meaning: a script that found its event already queued may have written nothing, and
the first delivery's write, made on another connection, is what its "duplicate" answer stands on;
with the carry, the WAIT covers that write too, so a duplicate is acknowledged only once a replica
holds the original. The WAIT travels in the same packet as the scripts, so
the batch stays one round trip; its answer comes once the replicas have the writes.

The connection is this process's alone, made from the client's pool settings (TLS, timeouts,
health checks) and made again after a fork, so no pool is taken and released per webhook.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from hashlib import sha1
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError, NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from workers.replication import CARRY, Command, NotReplicated, Replication

_UNREAD = object()


class _Call:
    """One script call waiting for its reply."""

    __slots__ = ("command", "sha", "reply", "error", "answered", "lead")

    def __init__(self, sha: str, command: Command) -> None:
        self.sha = sha
        self.command = command
        self.reply: Any = _UNREAD
        self.error: BaseException | None = None
        # Held until the call is answered (or made the leader): the waiting thread blocks on it.
        self.answered = threading.Lock()
        self.answered.acquire()
        self.lead = False

    @property
    def settled(self) -> bool:
        """Whether Redis answered the call (a reply or an error reply)."""
        return self.reply is not _UNREAD or self.error is not None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


class GroupCommit:
    """Runs registered Lua scripts, batching the calls that are in flight at the same time."""

    def __init__(self, connection: Redis, replication: Replication | None = None) -> None:
        self._replication = replication or Replication()
        pool = connection.connection_pool
        self._connection_class = pool.connection_class
        # No retries with backoff inside redis-py: a webhook waits for this, and Shopify gives up
        # after 5 seconds. An unreachable Redis is a quick 503, which the shop retries.
        self._connection_kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
        self._scripts: dict[str, str] = {}
        self._lock = threading.Lock()   # guards the fields below
        self._pending: list[_Call] = []
        self._busy = False   # a leader is sending
        self._connection: AbstractConnection | None = None
        # A forked child (an RQ work horse, a gunicorn worker of a preloaded app) starts afresh:
        # the parent's connection, lock and calls are not its own.
        forked = weakref.WeakMethod(self._forked)
        os.register_at_fork(after_in_child=lambda: (method := forked()) and method())

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._pending, self._busy, self._connection = [], False, None

    def register(self, script: str) -> str:
        """Make ``script`` callable; returns its SHA1 (loaded into Redis when Redis first lacks it)."""
        sha = sha1(script.encode()).hexdigest()
        self._scripts[sha] = script
        return sha

    def call(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script and return its reply, once Redis has run it.

        Raises what redis-py raises (:class:`redis.exceptions.RedisError`) when the call's reply
        cannot be read.
        """
        call = _Call(sha, ("EVALSHA", sha, len(keys), *keys, *args))
        with self._lock:
            self._pending.append(call)
            lead = not self._busy
            self._busy = True
        if not lead:
            call.answered.acquire()
            if not call.lead:
                return call.outcome()
        self._lead(call)
        return call.outcome()

    def _lead(self, own: _Call) -> None:
        """Send everything pending (``own`` included), answer it, and pass the lead on."""
        with self._lock:
            batch, self._pending = self._pending, []
        try:
            self._run(batch)
        finally:
            with self._lock:
                successor = self._pending[0] if self._pending else None
                if successor is not None:
                    successor.lead = True
                else:
                    self._busy = False
            for call in batch:
                if call is not own:
                    call.answered.release()
            if successor is not None:
                successor.answered.release()

    def _run(self, batch: list[_Call]) -> None:
        """Send the batch and read its replies; every call ends with a reply or an error."""
        try:
            reused = self._connection is not None
            try:
                unanswered = self._exchange(batch)
            except ConnectionError:
                # A connection that had been open closed since the last batch (Redis restarted):
                # once more on a new one. A script that did run before the break is deduplicated
                # by Redis. A connection that cannot be opened is not tried again: the shop will.
                if not reused or any(call.settled for call in batch):
                    raise
                self._close()
                unanswered = self._exchange(batch)
            if unanswered:   # Redis had lost the scripts (restarted, or SCRIPT FLUSH)
                connection = self._open()
                for sha in {call.sha for call in unanswered}:
                    connection.send_command("SCRIPT", "LOAD", self._scripts[sha])
                    connection.read_response()
                for call in unanswered:
                    call.error = None
                if self._exchange(unanswered):
                    raise NoScriptError("scripts not loaded")
        except BaseException as exc:
            self._close()
            error = exc if isinstance(exc, RedisError) else ConnectionError(f"queue call failed: {exc!r}")
            for call in batch:
                if not call.settled:
                    call.error = error
            if not isinstance(exc, Exception):
                raise

    def _exchange(self, batch: list[_Call]) -> list[_Call]:
        """One round trip for the batch (and its WAIT); returns the calls Redis answered NOSCRIPT."""
        connection = self._open()
        commands = [call.command for call in batch]
        if self._replication.required:
            commands += [CARRY, self._replication.command]
        connection.send_packed_command(connection.pack_commands(commands))
        missing = []
        for call in batch:
            try:
                call.reply = connection.read_response()
            except NoScriptError as exc:
                call.error = exc
                missing.append(call)
            except ResponseError as exc:
                call.error = exc
        if self._replication.required:
            self._confirm(connection, [call for call in batch if call.error is None])
        return missing

    def _confirm(self, connection: AbstractConnection, ran: list[_Call]) -> None:
        """Read the batch's carry and WAIT: the calls whose scripts ran stand only if it reached the replicas."""
        try:
            connection.read_response()   # the carry's OK; an error (a full Redis) leaves the WAIT unread
            self._replication.check(connection.read_response())
        except BaseException as exc:
            failure = exc if isinstance(exc, NotReplicated) else NotReplicated(f"WAIT unanswered: {exc!r}")
            for call in ran:
                call.reply, call.error = _UNREAD, failure
            if not isinstance(exc, NotReplicated):
                raise   # the connection is in an unknown state: dropped by the caller

    def _open(self) -> AbstractConnection:
        """This process's connection, connected (kept only while it works)."""
        if self._connection is None:
            connection = self._connection_class(**self._connection_kwargs)
            connection.connect()
            self._connection = connection
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.disconnect()
            self._connection = None
