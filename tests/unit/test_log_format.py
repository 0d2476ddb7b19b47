"""Log lines: one JSON object each, the same whether written directly or through ``logging``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from config.log_format import JsonLinesHandler, log, setup_logging

FIELDS = {"store": "coffee-woo", "reference": "WC-1", "job_ids": ["paid-coffee-woo-1"], "http_status": 202,
          "note": "Ąžuolas"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """setup_logging's handler, writing to a buffer; the root's handlers are restored afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    setup_logging("INFO")
    out = io.StringIO()
    root.handlers[0].setStream(out)  # type: ignore[attr-defined]
    yield out
    root.handlers[:] = saved
    root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_fields(stream: io.StringIO) -> None:
    log(logging.getLogger("bridge.intake"), "webhook", **FIELDS)
    [line] = lines(stream)
    assert {k: line[k] for k in ("level", "logger", "msg")} == {"level": "info", "logger": "bridge.intake",
                                                               "msg": "webhook"}
    assert {k: line[k] for k in FIELDS} == FIELDS
    assert str(line["ts"]).endswith("+00:00")
    assert "Ąžuolas" in stream.getvalue()   # not escaped: logs are read by people


def test_the_direct_line_is_the_formatters_line(stream: io.StringIO) -> None:
    logger = logging.getLogger("bridge.intake")
    log(logger, "webhook", **FIELDS)                      # written directly
    logger.addFilter(lambda record: True)                  # a filter on the way: through logging
    try:
        log(logger, "webhook", **FIELDS)
    finally:
        logger.filters.clear()
    direct, formatted = lines(stream)
    assert {**direct, "ts": None} == {**formatted, "ts": None}


def test_other_handlers_and_filters_still_get_the_record(stream: io.StringIO,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("bridge.intake")
    log(logger, "webhook", **FIELDS)
    [record] = [r for r in caplog.records if r.name == "bridge.intake"]
    assert record.fields == FIELDS  # type: ignore[attr-defined]
    assert len(lines(stream)) == 1

    logger.addFilter(lambda record: False)
    try:
        log(logger, "dropped", **FIELDS)
    finally:
        logger.filters.clear()
    assert len(lines(stream)) == 1


def test_levels_are_respected(stream: io.StringIO) -> None:
    logging.getLogger().setLevel("WARNING")
    log(logging.getLogger("bridge.intake"), "webhook", **FIELDS)
    log(logging.getLogger("bridge.intake"), "trouble", logging.WARNING, **FIELDS)
    assert [(line["level"], line["msg"]) for line in lines(stream)] == [("warning", "trouble")]
    assert isinstance(logging.getLogger().handlers[0], JsonLinesHandler)
