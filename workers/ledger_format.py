"""How the ledger's lasting entries are stored: short fields that keep an order's hash a listpack.

Redis keeps a small hash (every value at most ``hash-max-listpack-value``, 64 bytes, and few
fields) as one compact listpack; one longer value turns the whole hash into a hash table, with
several times the overhead per field. The ledger's entries were JSON documents (an award about 330
bytes), so each order's hash cost about 615 bytes for 400 days. What lives that long is now
stored as values separated by ``|``, in fields of one or two letters:

- ``a``: the award: transaction id, points, when (Unix seconds), base (empty: the order total),
  order total, currency,
  presentment total and currency, taxes included (1/0), Loyalty.lt user id, card id and card
  number, then how the bridge learned of it;
- ``r:<refund id>``: a refund or the cancellation applied: points, amount, when, transaction id,
  kind, currency, share (as a fraction when that is exact: ``8/33``), then its source;
- ``s``: why the order earns nothing: when, event, job id, then the reason.

The platform's order id is the hash's ``o`` field (the intake writes it). Empty means None; the
last value of each is free text and may hold ``|``. A value longer than 64 bytes (a long reason)
continues in fields ``<name>+1``, ``<name>+2``, …, so the hash stays a listpack whatever it says.
The transient entries are JSON documents cut the same way: Redis never turns a hash back into a
listpack once one long value made it a hash table, even after that value is gone.
An award, the order id and one refund: about 200 bytes per order (``bench/memory.py``).

Entries written before (JSON under ``award``, ``refund:<id>``, ``skipped``) are read as they are:
a ledger kept for 400 days stays readable, and each entry is rewritten in this form the next time
it changes. Transient entries (pending refunds, due times, failures, in-flight marks) stay JSON
documents, in chunks: they go when the order is settled.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

AWARD = "a"
REFUND_PREFIX = "r:"
SKIPPED = "s"
CHUNK = 64
MORE = "+"
# Chunks a value may take (2 KiB: an in-flight mark with its award is about 400 bytes); a longer
# value keeps its tail whole in the last one.
MAX_CHUNKS = 32
# The usual sources, as one letter (anything else is kept as written).
_SOURCES = {"created": "", "already existed": "x", "recovered": "l", "resolved by a person": "p"}
_SOURCE_NAMES = {letter: name for name, letter in _SOURCES.items()}
_KINDS = {"refund": "r", "cancel": "c"}
_KIND_NAMES = {letter: name for name, letter in _KINDS.items()}


def continuations(name: str) -> list[str]:
    """The fields a long value of ``name`` may continue in."""
    return [f"{name}{MORE}{n}" for n in range(1, MAX_CHUNKS)]


def split(name: str, value: str) -> dict[str, bytes]:
    """``value`` as fields of at most CHUNK bytes: ``name``, then its continuations."""
    data = value.encode()
    if len(data) <= CHUNK:
        return {name: data}
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]
    head, tail = chunks[:MAX_CHUNKS - 1], b"".join(chunks[MAX_CHUNKS - 1:])
    fields = {name: head[0], **{f"{name}{MORE}{n}": chunk for n, chunk in enumerate(head[1:], 1)}}
    if tail:
        fields[f"{name}{MORE}{MAX_CHUNKS - 1}"] = tail
    return fields


def joined(raw: dict[str, bytes]) -> dict[str, str]:
    """The hash's fields with continuations joined to their first part."""
    values = {name: value for name, value in raw.items() if MORE not in name}
    for name in sorted((n for n in raw if MORE in n), key=lambda n: int(n.rpartition(MORE)[2])):
        first = name.rpartition(MORE)[0]
        if first in values:
            values[first] += raw[name]
    return {name: value.decode() for name, value in values.items()}


def _put(*values: Any) -> str:
    return "|".join("" if v is None else ("1" if v is True else "0" if v is False else str(v)) for v in values)


def _parts(value: str, count: int) -> list[str]:
    """``count`` values; the last one takes the rest (free text may hold ``|``)."""
    parts = value.split("|", count - 1)
    return parts + [""] * (count - len(parts))


def _epoch(iso: str) -> str:
    """A time as Unix seconds when they give back the very same text (the ledger's own UTC times to
    the second), else the text itself after ``=``."""
    try:
        epoch = str(round(datetime.fromisoformat(iso).timestamp()))
    except ValueError:
        return "=" + iso.replace("|", " ")
    return epoch if _iso(epoch) == iso else "=" + iso


def _iso(epoch: str) -> str:
    if epoch.startswith("="):
        return epoch[1:]
    return datetime.fromtimestamp(int(epoch), UTC).isoformat(timespec="seconds")


def _opt(convert: Callable[[str], Any], text: str) -> Any:
    return convert(text) if text else None


def award(doc: dict[str, Any]) -> str:
    """An award (``Award.model_dump()``) as the value of ``a`` (its order id goes to ``o``)."""
    source = doc.get("source") or "created"
    base = None if Decimal(doc["base"]) == Decimal(doc["order_total"]) else doc["base"]
    return _put(doc["transaction_id"], doc["points"], _epoch(doc["at"]), base, doc["order_total"],
                doc["currency"], doc.get("presentment_total"), doc.get("presentment_currency"),
                bool(doc.get("taxes_included", True)), doc.get("user_id"), doc.get("loyalty_card_id"),
                doc.get("card_number"), _SOURCES.get(source, source))


def read_award(value: str, order_id: str | None) -> dict[str, Any]:
    """The award's fields (for ``Award.model_validate``) from ``a`` and ``o``."""
    tx, points, at, base, total, currency, p_total, p_currency, taxes, user, card_id, number, source = \
        _parts(value, 13)
    return {"transaction_id": _opt(int, tx), "points": int(points), "at": _iso(at), "base": Decimal(base or total),
            "order_total": Decimal(total), "currency": currency, "order_id": order_id or "",
            "presentment_total": _opt(Decimal, p_total), "presentment_currency": p_currency or None,
            "taxes_included": taxes != "0", "source": _SOURCE_NAMES.get(source, source),
            "user_id": _opt(int, user), "loyalty_card_id": _opt(int, card_id), "card_number": number or None}


def refund(doc: dict[str, Any]) -> str:
    """An applied refund (``AppliedRefund.model_dump()``) as the value of ``r:<id>``."""
    source = doc.get("source") or "created"
    kind = doc.get("kind") or "refund"
    return _put(doc["points"], doc["amount"], _epoch(doc["at"]), doc.get("transaction_id"), _KINDS.get(kind, kind),
                doc.get("currency"), _share(doc.get("share")), _SOURCES.get(source, source))


def _share(value: Decimal | str | None) -> str | None:
    """A share as the fraction it was computed from when that gives back exactly the same Decimal
    (shares are ``Decimal(numerator) / Decimal(denominator)``, 28 digits), else as it is."""
    if value is None:
        return None
    share = Decimal(value)
    fraction = Fraction(share).limit_denominator(10**9)
    if Decimal(fraction.numerator) / Decimal(fraction.denominator) == share and fraction.denominator != 1:
        return f"{fraction.numerator}/{fraction.denominator}"
    return str(share)


def _read_share(text: str) -> Decimal:
    numerator, slash, denominator = text.partition("/")
    return Decimal(numerator) / Decimal(denominator) if slash else Decimal(text)


def read_refund(value: str) -> dict[str, Any]:
    points, amount, at, tx, kind, currency, share, source = _parts(value, 8)
    return {"points": int(points), "amount": Decimal(amount), "at": _iso(at), "transaction_id": _opt(int, tx),
            "kind": _KIND_NAMES.get(kind, kind), "currency": currency or None, "share": _opt(_read_share, share),
            "source": _SOURCE_NAMES.get(source, source)}


def note(doc: dict[str, Any]) -> str:
    """A skip (``Note.model_dump()``) as the value of ``s``."""
    return _put(_epoch(doc["at"]), doc["event"], doc.get("job_id"), doc["reason"])


def read_note(value: str) -> dict[str, Any]:
    at, event, job_id, reason = _parts(value, 4)
    return {"at": _iso(at), "event": event, "job_id": job_id or None, "reason": reason}
