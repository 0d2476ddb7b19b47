"""What each persistence setting means for a crash, as `bridge check` and the metrics say it."""

from __future__ import annotations

import math

import pytest

from workers.redis_checks.persistence import describe, save_points

CASES = [
    ({"appendonly": "yes", "appendfsync": "always", "save": ""}, "AOF, fsync always", 0.0, True),
    ({"appendonly": "yes", "appendfsync": "everysec", "save": "3600 1"},
     "AOF, fsync every second; RDB snapshots too (after 3600 s if 1 change)", 1.0, True),
    ({"appendonly": "yes", "appendfsync": "no", "save": ""}, "AOF, fsync left to the operating system", 30.0, True),
    ({"appendonly": "no", "appendfsync": "everysec", "save": "3600 1 300 100 60 10000"},
     "RDB snapshots only (after 3600 s if 1 change, after 300 s if 100 changes, after 60 s if 10000 changes)",
     3600.0, True),
    ({"appendonly": "no", "appendfsync": "everysec", "save": ""}, "nothing (no AOF, no RDB snapshots)", math.inf,
     False),
]


@pytest.mark.parametrize(("config", "summary", "loss", "persists"), CASES, ids=[c[1][:24] for c in CASES])
def test_each_setting_says_what_a_crash_loses(config: dict[str, str | None], summary: str, loss: float,
                                               persists: bool) -> None:
    kept = describe(config, {})
    assert (kept.summary, kept.loss_seconds, kept.persists) == (summary, loss, persists)


def test_info_stands_in_for_a_refused_config() -> None:
    kept = describe({"appendonly": None, "appendfsync": None, "save": None}, {"aof_enabled": 1})
    assert kept.summary.startswith("AOF (its fsync policy unknown") and kept.persists and kept.loss_seconds is None
    assert save_points("") == [] and save_points(None) is None and save_points("900 1") == [(900, 1)]
