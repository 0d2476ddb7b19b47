"""The tables of ``docs/BENCHMARKS.md``, from the JSON files ``bench/run-all`` leaves.

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


def _intake_row(n: int, label: str, goal: str, r: dict[str, Any], headline: tuple[str, ...], command: str) -> str:
    servers, ratios = r["servers"], r["ratios"]
    bridge = servers["bridge"]
    baselines = ", ".join(f"{PEERS[name]} {servers[name]['rps']:.0f} req/s" for name in ("naive", "floor", "bare"))
    by_cpu = r.get("ratios_by_cpu", {})
    ratio = ", ".join(f"**{ratios[key]:.2f}** {key.replace('/', ' to ')}"
                      + (f" (CPU: {by_cpu[key]:.2f})" if key in by_cpu else "") for key in headline)
    return (f"| {n} | {label} | {bridge['rps']:.0f} req/s, p50 {bridge['p50_ms']:.1f} ms, p99 {bridge['p99_ms']:.1f} ms "
            f"| {baselines} | {ratio} | {goal} | `{command}` |")


PEERS = {"bare": "bare Flask", "floor": "HMAC + LPUSH", "naive": "Flask + RQ enqueue", "bridge": "the bridge"}


def _label(name: str) -> str:
    return f"{PEERS[name]} (`{name}`)" if name in PEERS else name


def intake_servers(r: dict[str, Any]) -> str:
    """The four servers of one intake run side by side: throughput, latency and CPU per request."""
    rows = ["| server | req/s | p50 ms | p99 ms | CPU µs per request: web | Redis | wrk | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for name, f in r["servers"].items():
        rows.append(f"| {_label(name)} | {f['rps']:,.0f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} "
                    f"| {f['web_cpu_us_per_request']:,.0f} | {f['redis_cpu_us_per_request']:,.0f} "
                    f"| {f['wrk_cpu_us_per_request']:,.0f} | {r['non_2xx'][name]} |")
    return "\n".join(rows)


def table(folder: Path) -> str:
    """The markdown table of the benchmarks found in ``folder`` (each backlog file a row)."""
    rows = ["| # | benchmark | result | baseline, same run | ratio | goal | command |",
            "|---|---|---|---|---|---|---|"]
    if (r := _load(folder, "intake")) is not None:
        rows.append(_intake_row(1, "intake, new orders (8 connections)",
                                "≥ 1.3 to naive, ≥ 0.8 to floor, p99 ≤ 25 ms", r, ("bridge/naive", "bridge/floor"),
                                "python -m bench.intake"))
    if (r := _load(folder, "duplicates")) is not None:
        rows.append(_intake_row(2, "intake, redeliveries", "≥ 0.9 to floor", r, ("bridge/floor",),
                                "python -m bench.intake --duplicates"))
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
    if (r := _load(folder, "redis-memory")) is not None:
        kept, lasting = r["bytes_per_order"]["payload"], r["bytes_per_order"]["ledger"]
        rows.append(f"| 9 | Redis bytes per order, {r['orders']} orders (WooCommerce and Shopify) | "
                    f"{kept:,} B kept with the payload (≤ 31 days), {lasting:,} B for the ledger's lifetime "
                    "| – | – "
                    f"| ≤ 2,500 and ≤ 250 B | `python -m bench.memory --orders {r['orders']}` |")
    return "\n".join(rows)


def intake_parts(r: dict[str, Any]) -> str:
    """What each part of the bridge's intake costs (``bench.intake --ablate``)."""
    from bench.ablation import PARTS

    rows = ["| part taken out | CPU µs per request it cost: web | Redis | wrk | all |", "|---|---|---|---|---|"]
    for part, cost in r["cpu_us_per_request_of_each_part"].items():
        web, redis, wrk = (cost[f"{who}_cpu_us_per_request"] for who in ("web", "redis", "wrk"))
        rows.append(f"| {part} ({PARTS[part]}) | {web:,.0f} | {redis:,.0f} | {wrk:,.0f} | {web + redis + wrk:,.0f} |")
    return "\n".join(rows)


def report(folder: Path) -> str:
    """The results table, then the intake's servers side by side for each path measured, and what
    each part of the intake costs when that was measured."""
    parts = [table(folder)]
    for name, title in (("intake", "Intake, new orders"), ("duplicates", "Intake, redeliveries"),
                        ("ablation", "The bridge without one part at a time, new orders")):
        if (r := _load(folder, name)) is not None:
            parts.append(f"{title}, medians of {max(x['round'] for x in r['rounds'])} interleaved rounds:\n\n"
                         + intake_servers(r))
            if "cpu_us_per_request_of_each_part" in r:
                parts.append(intake_parts(r))
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(report(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results")))
