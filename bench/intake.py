"""Intake benchmark: the web process exactly as the Procfile runs it, against a bare Flask handler
that answers 202 under the same gunicorn settings, in alternating rounds (A B A B ...) with wrk.

    python -m bench.intake [--duplicates] [--rounds 5] [--seconds 8] [--connections 8]

New orders: every request is a different signed WooCommerce paid order (Redis is emptied before
each bridge round), so dedupe never short-cuts. ``--duplicates``: the same delivery over and over
(the redelivery path). Prints JSON with each round and the median ratio of requests per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from bench.cluster import BIN, ROOT, procfile, wait_until
from bridge.embedded_redis import EmbeddedRedis, free_port
from bridge.samples import sample_webhook
from bridge.signatures import sign
from config.stores import build_store

SECRET = "bench-secret"
STORE = build_store("bench", {"platform": "woocommerce", "webhook_secrets": [SECRET], "api_key": "lty_bench",
                              "api_secret": "bench"}, {}, "bench")
STORES_TOML = f"""
[stores.bench]
platform = "woocommerce"
webhook_secrets = ["{SECRET}"]
api_key = "lty_bench"
api_secret = "bench"
"""
WRK_SCRIPT = Path(__file__).with_name("post.lua")
FIGURES = ("rps", "p50_ms", "p99_ms", "web_cpu_us_per_request", "redis_cpu_us_per_request")


def write_bodies(path: Path, count: int, first_id: int = 1_000_000) -> None:
    """``count`` different signed paid orders, one per line: signature, topic, compact body."""
    with path.open("w") as out:
        for i in range(count):
            sample = sample_webhook(STORE, "paid", first_id + i, f"bench-{i}@example.com")
            body = json.dumps(json.loads(sample.body), separators=(",", ":"))  # one line for wrk
            topic = sample.headers["X-WC-Webhook-Topic"]
            out.write(f"{sign(body.encode(), SECRET.encode())}\t{topic}\t{body}\n")


def start_server(command: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, cwd=ROOT, env={**env, "PORT": str(port)}, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT)
    wait_until(lambda: _up(f"http://127.0.0.1:{port}/healthz", process), 30, f"server on {port}")
    return process


def _up(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"server exited with {process.returncode}")
    try:
        return requests.get(url, timeout=1).status_code in (200, 404)
    except requests.RequestException:
        return False


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:   # gone
            continue
        total += int(fields[11]) + int(fields[12])   # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def with_children(pid: int) -> list[int]:
    """A process and its direct children (a gunicorn master and its workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def run_wrk(url: str, bodies: Path, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--latency",
                          "-s", str(WRK_SCRIPT), url, "--", "/webhooks/woocommerce/bench", str(bodies), str(threads)],
                         capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("{"))
    return json.loads(line)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duplicates", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(benchmark(args.duplicates, args.rounds, args.seconds, args.connections, args.threads), indent=2))


def benchmark(duplicates: bool, rounds: int, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    """Alternate bare / bridge rounds and return every round's figures and the median ratio."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bodies = tmp / "bodies.txt"
        write_bodies(bodies, 1 if duplicates else 60_000)
        (tmp / "stores.toml").write_text(STORES_TOML)
        redis = EmbeddedRedis(tmp / "redis", persist=False).start()
        env = {**os.environ, "REDIS_URL": redis.url, "BRIDGE_STORES_FILE": str(tmp / "stores.toml"),
               "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
               "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
        bridge_port, bare_port = free_port(), free_port()
        bridge = start_server(procfile("web"), bridge_port, env, tmp / "bridge.log")
        bare_cmd = [c if c != "bridge.wsgi:app" else "bench.bare_app:app" for c in procfile("web")]
        bare = start_server(bare_cmd, bare_port, env, tmp / "bare.log")
        connection = Redis.from_url(redis.url)
        results: list[dict[str, Any]] = []
        try:
            if duplicates:   # the one delivery is queued once; every request after is a redelivery
                run_wrk(f"http://127.0.0.1:{bridge_port}", bodies, 1, 1, 1)
            for n in range(rounds):
                for name, port in (("bare", bare_port), ("bridge", bridge_port)):
                    if name == "bridge" and not duplicates:
                        connection.flushall()
                    time.sleep(0.5)
                    server_pids = with_children((bridge if name == "bridge" else bare).pid)
                    assert redis.process is not None
                    before = cpu_seconds(server_pids), cpu_seconds([redis.process.pid])
                    figures = run_wrk(f"http://127.0.0.1:{port}", bodies, seconds, connections, threads)
                    after = cpu_seconds(server_pids), cpu_seconds([redis.process.pid])
                    # CPU per request, so the gap to the bare handler can be split between the web
                    # processes and Redis (both share the machine with wrk).
                    cpu = {f"{who}_cpu_us_per_request": round((a - b) / max(figures["requests"], 1) * 1e6, 1)
                           for who, a, b in zip(("web", "redis"), after, before, strict=True)}
                    results.append({"round": n + 1, "server": name, **figures, **cpu})
            queued = connection.llen("rq:queue:loyalty")
        finally:
            for process in (bridge, bare):
                process.terminate()
                process.wait(20)
            redis.stop()
    ratios = [b["rps"] / a["rps"] for a, b in zip(results[::2], results[1::2], strict=True)]
    bridge_rounds = [r for r in results if r["server"] == "bridge"]
    bare_rounds = [r for r in results if r["server"] == "bare"]
    return {
        "path": "duplicates" if duplicates else "new orders", "connections": connections, "rounds": results,
        "median_ratio": round(statistics.median(ratios), 3),
        "bridge": {k: round(statistics.median(r[k] for r in bridge_rounds), 2) for k in FIGURES},
        "bare": {k: round(statistics.median(r[k] for r in bare_rounds), 2) for k in FIGURES},
        "non_2xx": sum(r["non_2xx"] + r["errors"] for r in results),
        "jobs_queued_in_last_round": queued,
    }


if __name__ == "__main__":
    main()
