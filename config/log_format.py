"""Logs: one JSON object per line, so ops can search them by store, reference and outcome.

Call sites pass their fields to :func:`log`; customer emails are masked before they get here
(``workers.orders.mask_email``) and secrets never do.

The intake writes one line per webhook, so a line costs as little as it can: when the only place a
record would go is the handler :func:`setup_logging` installs, with nothing filtering on the way
(how every process runs), :func:`log` formats the line once and writes it in one call, without a
``LogRecord``; anything else (another handler, a filter, pytest's log capture) gets the record
through ``logging`` as usual. Both ways give the same line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

# One encoder for every line (json.dumps with options builds a new one per call).
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


def _line(created: float, level_name: str, logger: str, message: str, fields: Mapping[str, Any]) -> str:
    return _encode({"ts": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
                    "level": level_name.lower(), "logger": logger, "msg": message, **fields})


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        if record.exc_info:
            fields = {**fields, "exc": self.formatException(record.exc_info)}
        return _line(record.created, record.levelname, record.name, record.getMessage(), fields)


class JsonLinesHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`setup_logging` installs: JSON lines on a stream, one write each."""

    def write_line(self, line: str) -> None:
        """Write a line :func:`log` formatted already."""
        try:
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line + self.terminator)
                self.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": line}))


def setup_logging(level: str = "INFO") -> None:
    """Send every log line to stderr as JSON (idempotent)."""
    handler = JsonLinesHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The lines hold none of these; not collecting them makes every record cheaper (the logging
    # HOWTO's "Optimization" section).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def _sole_handler(logger: logging.Logger, level: int) -> JsonLinesHandler | None:
    """The root's JSON handler, when a record of ``logger`` would reach it and nothing else."""
    current = logger
    while not current.filters:
        if current.handlers:
            handler = current.handlers[0]
            sole = current is logging.root and len(current.handlers) == 1 and type(handler) is JsonLinesHandler
            if sole and not handler.filters and level >= handler.level:
                return handler  # type: ignore[return-value]
            return None
        if not current.propagate or current.parent is None:
            return None
        current = current.parent
    return None


def log(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` with structured ``fields``."""
    if not logger.isEnabledFor(level):
        return
    handler = _sole_handler(logger, level)
    if handler is not None:
        handler.write_line(_line(time.time(), logging.getLevelName(level), logger.name, message, fields))
    else:
        # Logger.log would also walk the stack for the caller's file and line, which the lines do
        # not show.
        logger.handle(logger.makeRecord(logger.name, level, "", 0, message, (), None, extra={"fields": fields}))
