"""The kept payloads: each event's verified webhook, kept once, for replay and to rebuild a lost job.

``lb:payload:<job id>``, a Redis string per event, written by the intake's submit script in the
same round trip as the event's RQ job and kept ``payload_retention`` (30 days). It holds everything
the job is made from: the event, the delivery and request ids, when it came, and the body as the
shop signed it. The RQ job carries only the event (RQ deletes a finished job: it keeps no copy of
the payload or of the outcome), so a job that disappears (deleted by hand, or by the dashboard's
Empty) is made again from here by the sweep (:meth:`workers.event_queue.EventQueue.sweep`), and
``bridge replay`` runs any event of the last 30 days again from here. Whether it exists is also
what makes a redelivery a duplicate.

Stored as one version byte, then a deflate stream (with :mod:`workers.payload_dictionary` as
preset dictionary) of a JSON header line and the body. Measured (``bench/memory.py``, the published
samples as compact JSON): about 1,150 bytes for a WooCommerce order, 1,950 for a Shopify order and
800 for a Shopify refund, key included.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis import Redis

from workers.events import Event
from workers.payload_dictionary import V1

KEY_PREFIX = "lb:payload:"
VERSION_1 = b"\x01"
# Level 4 with the dictionary: 1,090 bytes for the 3.5 KB WooCommerce sample in 24 µs, against
# 1,406 bytes in 16 µs at level 1 without it (a Shopify order: 1,862 bytes in 41 µs, against 2,442
# in 26). An 8 KiB window keeps zlib's state at 64 KiB, reused from the heap (see workers.job_template).
_LEVEL, _WINDOW_BITS, _MEMORY_LEVEL = 4, 13, 6


@dataclass(frozen=True)
class KeptEvent:
    """An event as the intake took it: what its job is made from."""

    job_id: str
    event: Event
    payload: str
    delivery_id: str = ""
    request_id: str = ""
    created_at: float = 0.0  # Unix time of its first delivery

    @property
    def meta(self) -> dict[str, Any]:
        """The RQ job's meta (see :meth:`workers.event_queue.EventQueue.job_parts`)."""
        event = self.event
        return {"store": event.store, "kind": event.kind, "order_id": event.order_id, "reference": event.reference,
                "refund_id": event.refund_id, "delivery_id": self.delivery_id, "request_id": self.request_id}


def encode(event: Event, payload: str, delivery_id: str, request_id: str, at: float) -> bytes:
    """The stored form of an event and its payload."""
    header = {"e": event.model_dump(mode="json", exclude_defaults=True), "d": delivery_id, "r": request_id,
              "t": round(at, 3)}
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WINDOW_BITS, _MEMORY_LEVEL, zdict=V1)
    body = json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload.encode()
    return VERSION_1 + compressor.compress(body) + compressor.flush()


def decode(job_id: str, raw: bytes) -> KeptEvent:
    """Read a stored event back (raises ``ValueError`` for what is not one)."""
    if raw[:1] != VERSION_1:
        raise ValueError(f"kept payload of {job_id}: unknown version {raw[:1]!r}")
    decompressor = zlib.decompressobj(_WINDOW_BITS, zdict=V1)
    try:
        text = (decompressor.decompress(raw[1:]) + decompressor.flush()).decode()
    except zlib.error as exc:
        raise ValueError(f"kept payload of {job_id}: {exc}") from None
    header_line, _, payload = text.partition("\n")
    header = json.loads(header_line)
    return KeptEvent(job_id=job_id, event=Event.model_validate(header["e"]), payload=payload,
                     delivery_id=header.get("d", ""), request_id=header.get("r", ""), created_at=header.get("t", 0.0))


class KeptPayloads:
    """Reads the kept payloads (the intake's submit script writes them); the owner of ``lb:payload:*``."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    @staticmethod
    def key(job_id: str) -> str:
        return KEY_PREFIX + job_id

    def get(self, job_id: str) -> KeptEvent | None:
        """The kept event of a job, or None when it expired or was deleted (a privacy request)."""
        raw: bytes | None = self.connection.get(self.key(job_id))  # type: ignore[assignment]
        return decode(job_id, raw) if raw is not None else None

    def exists(self, job_id: str) -> bool:
        return bool(self.connection.exists(self.key(job_id)))

    def blank(self, kept: KeptEvent) -> None:
        """Keep the event but not its payload (a privacy request's own: it names the customer)."""
        raw = encode(kept.event, "{}", kept.delivery_id, kept.request_id, kept.created_at)
        self.connection.set(self.key(kept.job_id), raw, xx=True, keepttl=True)

    def delete(self, job_ids: Iterable[str]) -> int:
        """Delete the kept payloads of these jobs; returns how many there were."""
        keys = [self.key(job_id) for job_id in job_ids]
        return int(self.connection.delete(*keys)) if keys else 0  # type: ignore[arg-type]
