"""Intake benchmark: the web process exactly as the Procfile runs it, against the three peers of
``bench/peers.py`` (bare Flask; HMAC + one ``LPUSH``, the floor; HMAC + ``json.loads`` + RQ's
``Queue.enqueue``, the naive peer), all under the same gunicorn settings, in interleaved rounds.

    python -m bench.intake [--duplicates] [--rounds 5] [--seconds 8] [--connections 8]
    python -m bench.intake --ablate      # what each part of the bridge's intake costs
    python -m bench.intake --min-replicas  # what BRIDGE_REDIS_MIN_REPLICAS=1 costs (a replica on loopback)

Every round runs each server once (the order reversed every other round, so none always goes first),
with wrk posting the same signed WooCommerce paid orders; Redis is emptied before each server's turn.
New orders: every request is a different order, so the bridge's dedupe never short-cuts.
``--duplicates``: the same delivery over and over (for the bridge, the redelivery path: it is queued
once before each of its turns).

Prints JSON: every round's figures (requests/s, p50, p99, errors, and CPU per request of wrk, the
server's processes and Redis, read from /proc), the medians per server, and the medians of the
per-round ratios (bridge to naive peer, bridge to floor, each to bare), of requests per second and
of total CPU per request (inverted, so both read as "how many times the baseline's throughput"). ``--ablate`` serves, beside
the floor and the bridge, the bridge without one part of its intake at a time (``bench/ablation.py``)
and adds what each part costs: the bridge's CPU per request minus the variant's, same round.
``--min-replicas`` gives Redis a replica (on loopback) and serves the bridge as it is and with
``BRIDGE_REDIS_MIN_REPLICAS=1`` (every batch of submits waits for the replica's WAIT); Redis's CPU
is then the primary's and the replica's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from bench.ablation import PARTS
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
# The servers, as gunicorn app targets; the bridge is the Procfile's.
SERVERS = {"bare": "bench.peers:bare", "floor": "bench.peers:floor", "naive": "bench.peers:naive",
           "bridge": "bridge.wsgi:app"}
# --ablate: the bridge without one part of its intake at a time (bench/ablation.py), beside the floor.
ABLATED = {f"bridge without {part}": part for part in PARTS}
# --min-replicas: the bridge acknowledging only what a replica holds.
WAITING = "bridge min-replicas=1"
CPU = ("web_cpu_us_per_request", "redis_cpu_us_per_request", "wrk_cpu_us_per_request")
FIGURES = ("rps", "p50_ms", "p99_ms", *CPU)
# The headline ratios: (server, baseline).
# Where each server leaves what it took, to check that it did store every request it answered.
STORED = {"floor": "bench:floor", "naive": "rq:queue:naive", "bridge": "rq:queue:loyalty"}
STORED.update({name: "rq:queue:loyalty" for name in [*ABLATED, WAITING]})
RATIOS = (("bridge", "naive"), ("bridge", "floor"), ("floor", "bare"), ("naive", "bare"), ("bridge", "bare"),
          (WAITING, "bridge"))


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


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's finished children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated subset of {', '.join(SERVERS)} (default: all)")
    parser.add_argument("--ablate", action="store_true",
                        help="instead: the floor, the bridge, and the bridge without each part of its intake")
    parser.add_argument("--min-replicas", action="store_true",
                        help="instead: the bridge, and the bridge with BRIDGE_REDIS_MIN_REPLICAS=1, Redis with a replica")
    args = parser.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if args.ablate:
        servers = ["floor", "bridge", *ABLATED]
    if args.min_replicas:
        servers = ["bridge", WAITING]
    if unknown := set(servers) - set(SERVERS) - set(ABLATED) - {WAITING}:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    print(json.dumps(benchmark(args.duplicates, args.rounds, args.seconds, args.connections, args.threads,
                               servers), indent=2))


def benchmark(duplicates: bool, rounds: int, seconds: float, connections: int, threads: int,
              servers: list[str] | None = None) -> dict[str, Any]:
    """Interleaved rounds of every server; every round's figures, the medians and the median ratios."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    servers = servers or list(SERVERS)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bodies = tmp / "bodies.txt"
        write_bodies(bodies, 1 if duplicates else 60_000)
        (tmp / "stores.toml").write_text(STORES_TOML)
        redis = EmbeddedRedis(tmp / "redis", persist=False).start()
        assert redis.process is not None
        replica = EmbeddedRedis(tmp / "replica", persist=False, replica_of=redis.port).start() \
            if WAITING in servers else None
        redis_pids = [p.pid for p in (redis.process, replica and replica.process) if p]
        env = {**os.environ, "REDIS_URL": redis.url, "BRIDGE_STORES_FILE": str(tmp / "stores.toml"),
               "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
               "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
        ports = {name: free_port() for name in servers}
        processes = {}
        results: list[dict[str, Any]] = []
        connection = Redis.from_url(redis.url)
        try:
            for name in servers:
                target = SERVERS["bridge"] if name == WAITING else SERVERS.get(name, "bench.ablation:app")
                command = [c if c != "bridge.wsgi:app" else target for c in procfile("web")]
                processes[name] = start_server(command, ports[name],
                                               {**env, "BENCH_WITHOUT": ABLATED.get(name, ""),
                                                "BRIDGE_REDIS_MIN_REPLICAS": "1" if name == WAITING else "0"},
                                               tmp / f"{name}.log")
            for n in range(rounds):
                for name in servers if n % 2 == 0 else servers[::-1]:
                    url = f"http://127.0.0.1:{ports[name]}"
                    connection.flushall()
                    if duplicates and name.startswith("bridge"):   # queued once; every request after is a redelivery
                        run_wrk(url, bodies, 1, 1, 1)
                    time.sleep(0.5)
                    server_pids = with_children(processes[name].pid)
                    before = cpu_seconds(server_pids), cpu_seconds(redis_pids), children_cpu_seconds()
                    figures = run_wrk(url, bodies, seconds, connections, threads)
                    after = cpu_seconds(server_pids), cpu_seconds(redis_pids), children_cpu_seconds()
                    # CPU per request: the machine's cores are shared by all three, so the gap between
                    # servers shows where it is spent, and contention from elsewhere disturbs it less
                    # than requests per second.
                    cpu = {f"{who}_cpu_us_per_request": round((a - b) / max(figures["requests"], 1) * 1e6, 1)
                           for who, a, b in zip(("web", "redis", "wrk"), after, before, strict=True)}
                    stored = connection.llen(STORED[name]) if name in STORED else None
                    results.append({"round": n + 1, "server": name, "load_1min": os.getloadavg()[0],
                                    **figures, **cpu, "stored": stored})
        finally:
            for process in processes.values():
                process.terminate()
                process.wait(20)
            if replica:
                replica.stop()
            redis.stop()
    return summarise(results, servers, duplicates, connections)


def _cpu(figures: dict[str, Any]) -> float:
    return sum(figures[k] for k in CPU)  # type: ignore[no-any-return]


def summarise(results: list[dict[str, Any]], servers: list[str], duplicates: bool,
              connections: int) -> dict[str, Any]:
    """Medians per server, and the medians of the per-round ratios between servers."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_round.setdefault(r["round"], {})[r["server"]] = r
    ratios, cpu_ratios, p99_ratios = {}, {}, {}
    for a, b in RATIOS:
        if a in servers and b in servers:
            ratios[f"{a}/{b}"] = round(statistics.median(rs[a]["rps"] / rs[b]["rps"] for rs in by_round.values()), 3)
            p99_ratios[f"{a}/{b}"] = round(statistics.median(rs[a]["p99_ms"] / rs[b]["p99_ms"]
                                                             for rs in by_round.values()), 3)
            # The same ratio from CPU per request (all three: web, Redis, wrk): on a machine the
            # benchmark saturates, requests per second go as its inverse, and other processes'
            # load disturbs it far less than they disturb requests per second.
            cpu_ratios[f"{a}/{b}"] = round(statistics.median(_cpu(rs[b]) / _cpu(rs[a]) for rs in by_round.values()), 3)
    # What each part of the bridge costs: the bridge's CPU per request minus its variant's, same round.
    parts = {}
    for name in servers:
        if name in ABLATED and "bridge" in servers:
            parts[ABLATED[name]] = {
                k: round(statistics.median(rs["bridge"][k] - rs[name][k] for rs in by_round.values()), 1) for k in CPU}
    return {
        "path": "duplicates" if duplicates else "new orders", "connections": connections,
        "ratios": ratios, "ratios_by_cpu": cpu_ratios, "p99_ratios": p99_ratios,
        **({"cpu_us_per_request_of_each_part": parts} if parts else {}),
        "servers": {name: {k: round(statistics.median(r[k] for r in results if r["server"] == name), 2)
                           for k in FIGURES} for name in servers},
        "non_2xx": {name: sum(r["non_2xx"] + r["errors"] for r in results if r["server"] == name) for name in servers},
        "rounds": results,
    }


if __name__ == "__main__":
    main()
