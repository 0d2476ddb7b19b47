"""Writes that must survive a failover: Redis's ``WAIT`` after them, on the connection that made them.

Redis replicates asynchronously: a write the primary answered can be gone once a replica is promoted
in its place. With ``BRIDGE_REDIS_MIN_REPLICAS`` = N > 0, the writes whose loss would do harm are
followed by ``WAIT N timeout`` and count only once N replicas hold them:

- the intake's submits (:mod:`workers.group_commit`): a webhook answered 2xx is one the shop never
  sends again, so it is acknowledged only once replicated (otherwise 503, and the shop retries);
- a job's in-flight mark, before its Loyalty.lt call leaves (:mod:`workers.ledger`): with the mark on
  a replica, a promoted replica still knows the call may have landed and looks for it in Loyalty.lt
  instead of calling again (a deduction repeated is points taken twice); not replicated, the call is
  not made and the job retries;
- the outcome recorded after the call: the job reports success only once the ledger entry is
  replicated; otherwise it retries, and finds the entry (or, after a failover, the mark).

A job that finds its outcome already recorded (an earlier attempt whose WAIT fell short) and an
intake call answered "duplicate" stand on a write made on another connection, which may not be on a
replica yet, and may have written nothing themselves. WAIT waits for the offset the connection's
own commands reached: Redis 6.2 and 7.0 move it on any command (measured), but answer a connection
whose first command is WAIT at once, and later Redis moves it only on a command that is replicated.
So before their WAIT they write :data:`CARRY`, which changes nothing anyone reads but is replicated
like any write: the WAIT then covers everything the primary held, what they read included
(:meth:`Replication.confirm`, and every batch of :mod:`workers.group_commit`).

Everything else a job writes needs no WAIT: replication keeps the primary's order, so whatever a
replica holds, it also holds every write made before it, and a job whose later writes were lost runs
again and repeats them (it is idempotent). WAIT counts the replicas that acknowledged this
connection's last write, and every write before it on any connection: it must follow the write on
the same connection (in the same round trip here), never be sent on another one taken from a pool.
Redis refuses WAIT inside Lua, and inside MULTI answers it at once without waiting, so it follows
the scripts and the transactions rather than being part of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from config.settings import Settings


Command = Sequence[bytes | str | int | float]

# The key :data:`CARRY` writes: one key for the deployment (64 bytes by MEMORY USAGE), no TTL,
# nothing per order; its value means nothing. A key of the bridge's own, which a Redis user limited
# to ``lb:*`` may write, where a PUBLISH would need channel rights.
CARRY_KEY = "lb:replication-offset"
# A write that carries a connection's replication offset up to the primary's current one.
CARRY: Command = ("SET", CARRY_KEY, "1")


class NotReplicated(RedisError):
    """Fewer replicas than required confirmed a write in time: it may not survive a failover.

    A RedisError, so the intake answers 503 and a job retries, as when Redis is unavailable.
    """


@dataclass(frozen=True)
class Replication:
    """How many replicas must hold a write before it counts, and how long to wait for them (ms)."""

    replicas: int = 0
    timeout_ms: int = 500

    @classmethod
    def of(cls, settings: Settings) -> Replication:
        """The process's setting (``BRIDGE_REDIS_MIN_REPLICAS``, ``BRIDGE_REDIS_WAIT_TIMEOUT``)."""
        return cls(settings.redis_min_replicas, settings.redis_wait_timeout)

    @property
    def required(self) -> bool:
        return self.replicas > 0

    @property
    def command(self) -> tuple[str, int, int]:
        """The WAIT to send after the writes, on their connection."""
        return ("WAIT", self.replicas, self.timeout_ms)

    def transaction(self, connection: Redis, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` atomically, then WAIT: MULTI … EXEC and WAIT in one round trip on one
        connection of ``connection``'s pool; the commands' raw replies, once the replicas confirm them.

        (Not a redis-py pipeline: a transactional one puts WAIT inside MULTI, where Redis answers at
        once without waiting, and a plain one cannot hold MULTI, its replies being parsed as they come.)
        Raises :class:`NotReplicated` when too few confirm, and what redis-py raises otherwise.
        """
        pool = connection.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands([("MULTI",), *commands, ("EXEC",), self.command]))
            for _ in range(len(commands) + 1):   # OK, then QUEUED for each command
                conn.read_response()
            replies = conn.read_response()
            acknowledged = conn.read_response()
        except BaseException:
            conn.disconnect()   # replies may be left unread
            raise
        finally:
            pool.release(conn)
        if failed := next((r for r in replies if isinstance(r, Exception)), None):
            raise failed
        self.check(acknowledged)
        return list(replies)

    def confirm(self, connection: Redis) -> None:
        """Make sure the replicas hold every write the primary holds now (what the caller just read on
        it included): :data:`CARRY`, then WAIT, in one round trip on one connection.

        Raises :class:`NotReplicated` when too few replicas confirm in time.
        """
        if self.required:
            self.transaction(connection, [CARRY])

    def check(self, acknowledged: Any) -> None:
        """Raise :class:`NotReplicated` unless WAIT's answer reaches the required replicas."""
        if not isinstance(acknowledged, int) or acknowledged < self.replicas:
            raise NotReplicated(f"{acknowledged} of {self.replicas} required Redis replicas confirmed the write "
                                f"within {self.timeout_ms} ms")
