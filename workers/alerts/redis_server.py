"""What makes the Redis server unsafe for the bridge, for the ``redis`` alert and its gauges.

TO SWITCH to ``workers.redis_checks`` (issue #20's checks, ``inspect_server``) once it is on main:
this is a minimal reading of ``INFO`` and ``CONFIG GET`` written while that package was not there
yet, shaped like its report (policy, evicting, used_memory, maxmemory, problems) so that the switch
is a change of import.

- an evicting ``maxmemory-policy`` (anything but ``noeviction``: the ``volatile-*`` policies evict
  the jobs and the ledger too, since both expire);
- used memory above ``ratio`` of ``maxmemory`` (when one is set);
- no persistence (neither an append-only file nor RDB snapshots): a restart loses the queue.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from redis import Redis
from redis.exceptions import ResponseError


class ServerFacts(BaseModel):
    """What the server says about itself (``persistent`` None: CONFIG is disabled, so unknown)."""

    policy: str
    used_memory: int
    maxmemory: int
    persistent: bool | None

    @property
    def evicting(self) -> bool:
        return self.policy != "noeviction"

    def problems(self, ratio: float) -> list[str]:
        """One phrase per problem; empty when the server is safe for the bridge."""
        found = []
        if self.evicting:
            found.append(f"maxmemory-policy is {self.policy}: it evicts the queue's and the ledger's keys "
                         "(set it to noeviction)")
        if self.maxmemory and self.used_memory > ratio * self.maxmemory:
            found.append(f"memory at {self.used_memory / self.maxmemory:.0%} of maxmemory "
                         f"({self.used_memory} of {self.maxmemory} bytes)")
        if self.persistent is False:
            found.append("no persistence (appendonly no, no save points): a restart loses every queued event")
        return found


def inspect(connection: Redis) -> ServerFacts:
    """Read the server's memory and persistence settings (three commands)."""
    memory: dict[str, Any] = connection.info("memory")  # type: ignore[assignment]
    aof: dict[str, Any] = connection.info("persistence")  # type: ignore[assignment]
    persistent: bool | None = bool(int(aof.get("aof_enabled", 0)))
    if not persistent:
        try:
            save: dict[str, Any] = connection.config_get("save")  # type: ignore[assignment]
            persistent = bool(save.get("save", ""))
        except ResponseError:
            persistent = None  # CONFIG is disabled (some managed Redis): its provider's business
    return ServerFacts(policy=str(memory.get("maxmemory_policy", "noeviction")),
                       used_memory=int(memory.get("used_memory", 0)), maxmemory=int(memory.get("maxmemory", 0)),
                       persistent=persistent)
