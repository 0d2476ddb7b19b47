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
samples as compact JSON): about 1,300 bytes for a WooCommerce order and 2,050 for a Shopify order,
key included; with their refunds and cancellations, 1,460 and 2,320 bytes per order.

The payload is kept once per order, not once per event, where the shop repeats it: WooCommerce
sends the whole order again with each refund and the cancellation, Shopify the whole order with
its cancellation. When such a later event's job has ended well, the worker stores its payload as
the difference from the order's paid event (deflate with that payload as the dictionary: version
2, naming it), and keeps the paid event's payload at least as long; a WooCommerce refund then
keeps in about 200 bytes instead of 1,300.
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
VERSION_2 = b"\x02"   # deflated against another kept payload (see KeptPayloads.shrink)
# Level 4 with the dictionary: 1,090 bytes for the 3.5 KB WooCommerce sample in 24 µs, against
# 1,406 bytes in 16 µs at level 1 without it (a Shopify order: 1,862 bytes in 41 µs, against 2,442
# in 26). An 8 KiB window keeps zlib's state at 64 KiB, reused from the heap (see workers.job_template).
_LEVEL, _WINDOW_BITS, _MEMORY_LEVEL = 4, 13, 6
# Against another payload, in the worker: the whole of a large order as dictionary (32 KiB window).
_DELTA_LEVEL, _DELTA_WINDOW_BITS = 9, 15


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


def _body(event: Event, payload: str, delivery_id: str, request_id: str, at: float) -> bytes:
    header = {"e": event.model_dump(mode="json", exclude_defaults=True), "d": delivery_id, "r": request_id,
              "t": round(at, 3)}
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload.encode()


def encode(event: Event, payload: str, delivery_id: str, request_id: str, at: float) -> bytes:
    """The stored form of an event and its payload."""
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WINDOW_BITS, _MEMORY_LEVEL, zdict=V1)
    return VERSION_1 + compressor.compress(_body(event, payload, delivery_id, request_id, at)) + compressor.flush()


def encode_against(kept: KeptEvent, base: KeptEvent) -> bytes:
    """The stored form of ``kept`` as the difference from ``base`` (another event of its order)."""
    name = base.job_id.encode()
    compressor = zlib.compressobj(_DELTA_LEVEL, zlib.DEFLATED, _DELTA_WINDOW_BITS, 8, zdict=_dictionary(base))
    body = _body(kept.event, kept.payload, kept.delivery_id, kept.request_id, kept.created_at)
    return VERSION_2 + bytes([len(name)]) + name + compressor.compress(body) + compressor.flush()


def _dictionary(base: KeptEvent) -> bytes:
    return base.payload.encode()[-(1 << _DELTA_WINDOW_BITS):]


def base_of(raw: bytes) -> str | None:
    """The job whose payload a stored payload was deflated against, if any."""
    return raw[2:2 + raw[1]].decode() if raw[:1] == VERSION_2 else None


def decode(job_id: str, raw: bytes, base: KeptEvent | None = None) -> KeptEvent:
    """Read a stored event back, given the one it was stored against if any (raises ``ValueError``
    for what is not one)."""
    if raw[:1] == VERSION_1:
        decompressor, stream = zlib.decompressobj(_WINDOW_BITS, zdict=V1), raw[1:]
    elif raw[:1] == VERSION_2 and base is not None:
        decompressor, stream = zlib.decompressobj(_DELTA_WINDOW_BITS, zdict=_dictionary(base)), raw[2 + raw[1]:]
    else:
        raise ValueError(f"kept payload of {job_id}: unknown version {raw[:1]!r}, or its base is missing")
    try:
        text = (decompressor.decompress(stream) + decompressor.flush()).decode()
    except zlib.error as exc:
        raise ValueError(f"kept payload of {job_id}: {exc}") from None
    header_line, _, payload = text.partition("\n")
    header = json.loads(header_line)
    return KeptEvent(job_id=job_id, event=Event.model_validate(header["e"]), payload=payload,
                     delivery_id=header.get("d", ""), request_id=header.get("r", ""), created_at=header.get("t", 0.0))


# KEYS: a kept payload, the one it was deflated against. ARGV: the payload as read, as shrunk.
_SHRINK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > redis.call('PTTL', KEYS[2]) then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return #ARGV[1] - #ARGV[2]
"""


class KeptPayloads:
    """Reads the kept payloads (the intake's submit script writes them); the owner of ``lb:payload:*``."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection
        self._shrink = connection.register_script(_SHRINK)

    @staticmethod
    def key(job_id: str) -> str:
        return KEY_PREFIX + job_id

    def get(self, job_id: str) -> KeptEvent | None:
        """The kept event of a job, or None when it expired or was deleted (a privacy request)."""
        raw: bytes | None = self.connection.get(self.key(job_id))  # type: ignore[assignment]
        if raw is None:
            return None
        base_id = base_of(raw)
        if base_id is None:
            return decode(job_id, raw)
        base_raw: bytes | None = self.connection.get(self.key(base_id))  # type: ignore[assignment]
        if base_raw is None or base_of(base_raw) is not None:   # gone with its order's (a privacy request)
            return None
        return decode(job_id, raw, decode(base_id, base_raw))

    def shrink(self, kept: KeptEvent) -> int:
        """Keep a later event of an order (a refund, the cancellation) as the difference from the
        order's paid event when that is smaller, and the paid event's payload at least as long as
        this one; returns the bytes saved (0 when left as it was)."""
        event = kept.event
        base_id = event.model_copy(update={"kind": "paid", "refund_id": None}).job_id
        if base_id == kept.job_id:
            return 0
        key, base_key = self.key(kept.job_id), self.key(base_id)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.get(base_key)
            raw, base_raw = pipe.execute()
        if raw is None or base_raw is None or base_of(raw) is not None or base_of(base_raw) is not None:
            return 0
        smaller = encode_against(kept, decode(base_id, base_raw))
        if len(smaller) >= len(raw):
            return 0
        # Keeps the base at least as long, and replaces the payload only if it is still the one read.
        return int(self._shrink(keys=[key, base_key], args=[raw, smaller]))

    def blank(self, kept: KeptEvent) -> None:
        """Keep the event but not its payload (a privacy request's own: it names the customer)."""
        raw = encode(kept.event, "{}", kept.delivery_id, kept.request_id, kept.created_at)
        self.connection.set(self.key(kept.job_id), raw, xx=True, keepttl=True)

    def delete(self, job_ids: Iterable[str]) -> int:
        """Delete the kept payloads of these jobs; returns how many there were."""
        keys = [self.key(job_id) for job_id in job_ids]
        return int(self.connection.delete(*keys)) if keys else 0  # type: ignore[arg-type]
