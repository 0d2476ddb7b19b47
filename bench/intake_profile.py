"""Where the intake's time goes: CPU per webhook of the app in one process, by ablation.

    python -m bench.intake_profile [--requests 1000] [--rounds 5]

Runs the bridge's Flask app and the three peers of ``bench/peers.py`` (bare Flask, HMAC + LPUSH,
Flask + RQ's enqueue) in this process through Flask's test client (no HTTP server, so only the
handlers' own work is counted) against a real Redis, and measures process CPU per webhook (new
signed paid orders each time) for each of them, and for the bridge with one part of its intake
replaced by nothing (``bench/ablation.py``: the log line, the metrics, the compression of the job,
the Redis call, the whole submit, the parsing).

Each variant runs ``--rounds`` times, interleaved; the medians, and the fastest round of each
(contention from other processes only ever adds time), are printed as JSON. The figures are for
comparison with each other within one run, not with other machines; under gunicorn everything
costs more (``python -m bench.intake --ablate`` measures the same parts there).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.ablation import PARTS, without
from bench.intake import STORES_TOML, write_bodies

Request = tuple[dict[str, str], bytes]


def _requests(path: Path) -> Iterator[Request]:
    for line in path.read_text().splitlines():
        signature, topic, body = line.split("\t", 2)
        yield ({"X-WC-Webhook-Signature": signature, "X-WC-Webhook-Topic": topic,
                "Content-Type": "application/json"}, body.encode())


def _cpu_per_request(app: Any, batch: list[Request]) -> float:
    client = app.test_client()
    started = time.process_time()
    for headers, body in batch:
        client.post("/webhooks/woocommerce/bench", data=body, headers=headers)
    return (time.process_time() - started) / len(batch) * 1e6


def profile(requests_per_run: int, rounds: int) -> dict[str, Any]:
    """Median CPU microseconds per webhook of each variant."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "metrics")
        (tmp / "metrics").mkdir()
        (tmp / "stores.toml").write_text(STORES_TOML)
        from bridge.embedded_redis import EmbeddedRedis

        redis = EmbeddedRedis(tmp / "redis", persist=False).start()
        try:
            os.environ.update(REDIS_URL=redis.url, BRIDGE_STORES_FILE=str(tmp / "stores.toml"))
            from bench import peers
            from bridge.app import create_app
            from config.log_format import setup_logging

            setup_logging("INFO")
            logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))
            bridge = create_app()
            variants = _variants(peers, bridge)
            write_bodies(tmp / "bodies.txt", requests_per_run * (len(variants) * rounds + 1))
            feed = _requests(tmp / "bodies.txt")
            _cpu_per_request(bridge, [next(feed) for _ in range(requests_per_run)])   # warm up
            figures: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):
                for name, run in variants.items():
                    figures[name].append(run([next(feed) for _ in range(requests_per_run)]))
        finally:
            redis.stop()
    medians = {name: round(statistics.median(values), 1) for name, values in figures.items()}
    # The least disturbed round of each: on a shared machine, other processes only ever add time.
    fastest = {name: round(min(values), 1) for name, values in figures.items()}
    return {"requests_per_run": requests_per_run, "rounds": rounds, "cpu_us_per_webhook": medians,
            "cpu_us_per_webhook_fastest_round": fastest,
            "bridge_minus_bare_us": round(medians["bridge"] - medians["bare handler"], 1)}


def _variants(peers: Any, bridge: Any) -> dict[str, Callable[[list[Request]], float]]:
    def without_part(part: str) -> Callable[[list[Request]], float]:
        def run(batch: list[Request]) -> float:
            with without(bridge, part):
                return _cpu_per_request(bridge, batch)
        return run

    return {
        "bare handler": lambda batch: _cpu_per_request(peers.bare, batch),
        "floor (HMAC + LPUSH)": lambda batch: _cpu_per_request(peers.floor, batch),
        "naive peer (HMAC + json.loads + Queue.enqueue)": lambda batch: _cpu_per_request(peers.naive, batch),
        "bridge": lambda batch: _cpu_per_request(bridge, batch),
        **{f"bridge without {part}": without_part(part) for part in PARTS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(profile(args.requests, args.rounds), indent=2))


if __name__ == "__main__":
    main()
