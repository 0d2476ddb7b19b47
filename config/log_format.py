"""Logs: one JSON object per line, so ops can search them by store, reference and outcome.

Call sites pass their fields as ``extra={"fields": {...}}`` (see :func:`log`); customer emails are
masked before they get here (``workers.orders.mask_email``) and secrets never do.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


# One encoder for every line (json.dumps with options builds a new one per call).
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry)


def setup_logging(level: str = "INFO") -> None:
    """Send every log line to stderr as JSON (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The lines hold none of these; not collecting them makes every record cheaper (the logging
    # HOWTO's "Optimization" section). The intake writes one line per webhook.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def log(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` with structured ``fields``."""
    if logger.isEnabledFor(level):
        # Logger.log would also walk the stack for the caller's file and line, which these lines
        # do not show; a record made here goes through the same handlers and filters.
        logger.handle(logger.makeRecord(logger.name, level, "", 0, message, (), None, extra={"fields": fields}))
