"""The results table of ``docs/BENCHMARKS.md``, from the JSON files ``bench/run-all`` leaves.

    python -m bench.report bench-results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _intake_row(n: int, label: str, goal: str, r: dict[str, Any], command: str) -> str:
    bridge, bare = r["bridge"], r["bare"]
    return (f"| {n} | {label} | {bridge['rps']:.0f} req/s, p50 {bridge['p50_ms']:.1f} ms, p99 {bridge['p99_ms']:.1f} ms "
            f"| bare handler {bare['rps']:.0f} req/s, p99 {bare['p99_ms']:.1f} ms | **{r['median_ratio']:.2f}** "
            f"| {goal} | `{command}` |")


def table(folder: Path) -> str:
    """The markdown table of the benchmarks found in ``folder`` (each backlog file a row)."""
    rows = ["| # | benchmark | result | baseline, same run | ratio | goal | command |",
            "|---|---|---|---|---|---|---|"]
    if (r := _load(folder, "intake")) is not None:
        rows.append(_intake_row(1, "intake, new orders (8 connections)", "≥ 0.8, p99 ≤ 25 ms", r,
                                "python -m bench.intake"))
    if (r := _load(folder, "duplicates")) is not None:
        rows.append(_intake_row(2, "intake, redeliveries", "≥ 0.9", r, "python -m bench.intake --duplicates"))
    if (r := _load(folder, "workers")) is not None:
        rows.append(f"| 3 | worker, paid-order jobs | {r['paid_jobs_per_s']:.0f} jobs/s, "
                    f"{r['calls_per_paid_order']:.2f} Loyalty.lt calls per order | RQ SimpleWorker no-op jobs "
                    f"{r['noop_jobs_per_s']:.0f} jobs/s | **{r['ratio']:.2f}** ({r['overhead_ms_per_job']:.1f} ms "
                    f"per job over RQ's floor) | 1.0 call per order | `python -m bench.pipeline workers` |")
    backlogs = sorted((json.loads(p.read_text()) for p in folder.glob("backlog*.json")),
                      key=lambda r: r["limit_per_minute"])
    for r in backlogs:
        rows.append(f"| 4 | backlog of {r['orders']} paid orders, limit {r['limit_per_minute']}/min, "
                    f"{r['workers']} workers | {r['sustained_calls_per_minute']:.0f} calls/min sustained, "
                    f"{r['answers_429']} × 429 | the limit, {r['limit_per_minute']}/min "
                    f"| **{r['share_of_limit']:.3f}** | ≥ 0.95, zero 429 "
                    f"| `python -m bench.pipeline backlog --orders {r['orders']} --per-minute {r['limit_per_minute']}` |")
    if (r := _load(folder, "storm")) is not None:
        rows.append(f"| 4b | {r['orders']} paid orders while Loyalty.lt answers 429 (Retry-After {r['retry_after']}) "
                    f"for {r['storm_seconds']:.0f} s | {r['answers_429']} × 429, last award "
                    f"{r['last_award_after_storm_s']:.1f} s after the storm | {r['pauses_in_storm']} pauses "
                    f"| **{r['answers_429'] / r['pauses_in_storm']:.1f}** × 429 per pause "
                    f"| ≤ 1 per pause, ≤ 5 s | `python -m bench.pipeline storm` |")
    if (r := _load(folder, "lag")) is not None:
        rows.append(f"| 5 | lag, webhook → points, {r['achieved_rate_per_s']:.0f} webhooks/s for "
                    f"{r['webhooks'] / r['rate_per_s']:.0f} s | p50 {r['lag_p50_ms']:.0f} ms, p99 {r['lag_p99_ms']:.0f} ms, "
                    f"max {r['lag_max_ms']:.0f} ms ({r['awarded']}/{r['webhooks']} awarded) | – | – | – "
                    f"| `python -m bench.pipeline lag` |")
    if (r := _load(folder, "memory")) is not None:
        workers = ", ".join(f"{k / 1024:.0f}" for k in r["web_worker_kib"])
        rows.append(f"| 6 | memory after {r['after_orders']} orders | web master {r['web_master_kib'] / 1024:.0f} MiB, "
                    f"web workers {workers} MiB, worker {r['worker_kib'] / 1024:.0f} MiB | – | – | – "
                    f"| `python -m bench.pipeline memory` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results")))
