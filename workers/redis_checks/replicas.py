"""The replicas of the Redis the bridge writes to, against ``BRIDGE_REDIS_MIN_REPLICAS``.

With the option at N > 0, every write that must survive a failover waits (``WAIT``) until N replicas
hold it (:mod:`workers.replication`): while fewer than N are connected and in sync, the intake
answers every webhook 503 and workers make no Loyalty.lt call. Read from ``INFO replication`` on
the primary the connection points to (behind Sentinel, the one the sentinels name), with Redis's
own ``min-replicas-max-lag`` (how long since its last acknowledgement a replica still counts as in
sync; 10 s by default) and ``min-replicas-to-write`` (under which Redis itself refuses writes) when
CONFIG answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from redis import Redis

from workers.redis_checks.readings import config_value

CONFIG_NAMES = ("min-replicas-to-write", "min-replicas-max-lag")  # read with the others by readings.read
# Redis's default min-replicas-max-lag: a replica silent for longer is not counted as in sync.
DEFAULT_MAX_LAG = 10


class Replica(BaseModel):
    """One replica, as the primary sees it."""

    address: str            # ip:port
    state: str              # online once in sync; wait_bgsave / send_bulk while it copies the data
    lag: int | None         # seconds since its last acknowledgement
    behind: int | None      # bytes of the replication stream it has not acknowledged


class Replicas(BaseModel):
    """The replicas connected to the primary, and how many the bridge requires."""

    role: str | None        # "master"; "slave" when the connection points at a replica; None: INFO silent
    required: int           # BRIDGE_REDIS_MIN_REPLICAS
    connected: int          # connected_slaves
    in_sync: int            # online, and acknowledged within max_lag seconds
    max_lag: int
    redis_requires: int | None  # Redis's own min-replicas-to-write (0: off); None: CONFIG refused
    replicas: list[Replica] = []


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def measure(info: dict[str, Any], config: dict[str, str | None], required: int) -> Replicas:
    """The replicas from INFO replication and the CONFIG GET answers (None where refused)."""
    max_lag = _number(config.get("min-replicas-max-lag")) or DEFAULT_MAX_LAG
    offset = _number(info.get("master_repl_offset"))
    replicas = []
    for name, fields in sorted(info.items()):
        if not (name.startswith("slave") and name[5:].isdigit() and isinstance(fields, dict)):
            continue
        acknowledged = _number(fields.get("offset"))
        replicas.append(Replica(address=f"{fields.get('ip', '?')}:{fields.get('port', '?')}",
                                state=str(fields.get("state", "?")), lag=_number(fields.get("lag")),
                                behind=max(offset - acknowledged, 0) if offset is not None and acknowledged is not None
                                else None))
    in_sync = sum(1 for r in replicas if r.state == "online" and r.lag is not None and r.lag <= max_lag)
    role = info.get("role")
    return Replicas(role=str(role) if role else None, required=required,
                    connected=_number(info.get("connected_slaves")) or len(replicas), in_sync=in_sync,
                    max_lag=max_lag, redis_requires=_number(config.get("min-replicas-to-write")), replicas=replicas)


def inspect(connection: Redis, required: int) -> Replicas:
    """Read the replicas now (one round trip: ``/readyz`` asks this on every probe).

    Raises what redis-py raises when Redis cannot be reached.
    """
    with connection.pipeline(transaction=False) as pipe:
        pipe.info("replication")
        for name in CONFIG_NAMES:
            pipe.config_get(name)
        info, *answers = pipe.execute(raise_on_error=False)
    config = {name: config_value(a, name) for name, a in zip(CONFIG_NAMES, answers, strict=True)}
    return measure(info if isinstance(info, dict) else {}, config, required)


def short(r: Replicas) -> bool:
    """Whether fewer replicas are in sync than the bridge requires: every webhook is answered 503."""
    return r.role is not None and r.in_sync < r.required


def summary(r: Replicas) -> str:
    """One line: how many are connected and in sync, each one's state and lag, and what is required."""
    if r.role is None:
        return "unknown (Redis does not answer INFO replication)"
    if r.role != "master":
        return f"this Redis is a replica (role {r.role}): it refuses writes"
    if r.required:
        required = (f"BRIDGE_REDIS_MIN_REPLICAS={r.required}: webhooks are acknowledged once "
                    f"{'1 replica holds' if r.required == 1 else f'{r.required} replicas hold'} them")
    else:
        required = "BRIDGE_REDIS_MIN_REPLICAS=0: none required" + (
            ", so a failover may lose the last writes acknowledged" if r.replicas else "")
    own = f"; Redis's own min-replicas-to-write {r.redis_requires}" if r.redis_requires else ""
    if not r.replicas:
        return f"none connected; {required}{own}"
    each = ", ".join(f"{x.address} {x.state}, lag {'?' if x.lag is None else x.lag} s, "
                     f"{'?' if x.behind is None else f'{x.behind:,}'} B behind" for x in r.replicas)
    return f"{r.connected} connected, {r.in_sync} in sync ({each}); {required}{own}"


def problem(r: Replicas) -> str | None:
    """The sentence that says what is wrong with the replicas and the fix; None when all is well."""
    if r.role is not None and r.role != "master":
        return ("REDIS_URL points at a replica, which refuses every write, so no webhook is taken; point it at the "
                "primary, or at the sentinels (redis+sentinel://, see README, \"A primary with replicas\")")
    if short(r):
        return (f"{r.in_sync} of the {r.required} Redis replicas BRIDGE_REDIS_MIN_REPLICAS requires "
                f"{'is' if r.in_sync == 1 else 'are'} connected and in sync ({r.connected} connected): the bridge "
                "answers every webhook 503 and workers make no Loyalty.lt call until they are; start or reconnect a "
                "replica (its log and INFO replication on the primary say why it is out), or lower "
                "BRIDGE_REDIS_MIN_REPLICAS")
    if r.redis_requires and r.role is not None and r.in_sync < r.redis_requires:
        return (f"Redis's own min-replicas-to-write is {r.redis_requires} and "
                f"{'1 replica is' if r.in_sync == 1 else f'{r.in_sync} replicas are'} in sync: "
                "Redis refuses every write (NOREPLICAS), so every webhook is answered 503; start or reconnect a "
                "replica, or lower min-replicas-to-write (CONFIG SET min-replicas-to-write and redis.conf)")
    return None
