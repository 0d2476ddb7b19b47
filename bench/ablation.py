"""The bridge with one part of its intake replaced by nothing, to see what each part costs.

    BENCH_WITHOUT="log line" gunicorn -c python:bridge.gunicorn_conf bench.ablation:app

``python -m bench.intake --ablate`` serves each variant this way (gunicorn, interleaved rounds, CPU
per request); ``python -m bench.intake_profile`` uses :func:`without` in one process. A variant
answers like the bridge but is not the bridge: these exist only to be measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

import bridge.intake
from workers.events import Event

# What can be taken out, and what is left doing the work in its place.
PARTS: dict[str, str] = {
    "log line": "no log line per webhook",
    "metrics": "no Prometheus counters",
    "compression": "the job's call stored uncompressed",
    "Redis call": "the job hash built, nothing sent to Redis",
    "submit": "no job built, nothing sent to Redis",
    "classify": "no parsing: each webhook is taken for a new paid order",
}


@contextmanager
def _replaced(obj: Any, attribute: str, stand_in: Any) -> Iterator[None]:
    original = getattr(obj, attribute)
    setattr(obj, attribute, stand_in)
    try:
        yield
    finally:
        setattr(obj, attribute, original)


class _NoRedis:
    @staticmethod
    def call(sha: str, keys: list[Any], args: list[Any]) -> int:
        return 1


def _unparsed(adapter: Any) -> Any:
    """The adapter, except that classify reads nothing: a new paid order each time."""
    counter = iter(range(10**12))

    class Unparsed:
        def __getattr__(self, name: str) -> Any:
            return getattr(adapter, name)

        @staticmethod
        def classify(topic: str, body: bytes, store: Any) -> list[Event]:
            order_id = f"{os.getpid()}{next(counter)}"
            return [Event(store=store.id, platform=adapter.PLATFORM, kind="paid", order_id=order_id,
                          reference=order_id, topic=topic)]

    return Unparsed()


@contextmanager
def without(app: Flask, part: str) -> Iterator[None]:
    """``app`` (the bridge's) with ``part`` (one of :data:`PARTS`) replaced by nothing."""
    intake = app.extensions[bridge.intake.EXTENSION]
    events = intake.events
    replacements: dict[str, Callable[[], Any]] = {
        "log line": lambda: _replaced(bridge.intake, "log", lambda *args, **kwargs: None),
        "metrics": lambda: _replaced(intake, "observe", lambda fields: None),
        "compression": lambda: _replaced(events.jobs, "data", lambda args: events.jobs._serializer.dumps(
            (events.jobs._func_name, None, args, {}))),
        "Redis call": lambda: _replaced(events, "_commit", _NoRedis),
        "submit": lambda: _replaced(events, "submit", lambda *args, **kwargs: True),
        "classify": lambda: _replaced(bridge.intake, "ADAPTERS",
                                      {name: _unparsed(a) for name, a in bridge.intake.ADAPTERS.items()}),
    }
    if part not in replacements:
        raise ValueError(f"unknown part {part!r}; one of: {', '.join(PARTS)}")
    with replacements[part]():
        yield


def __getattr__(name: str) -> Any:
    """``app``, for gunicorn: the bridge's, without ``BENCH_WITHOUT`` (built on first use, so that
    importing :func:`without` builds nothing)."""
    if name != "app":
        raise AttributeError(name)
    from bridge.wsgi import app as served

    part = os.environ.get("BENCH_WITHOUT", "")
    if part and not _held:
        _held.append(without(served, part))   # held for the life of the process (a dropped one restores)
        _held[0].__enter__()
    return served


_held: list[Any] = []
