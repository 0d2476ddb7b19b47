"""Run the sandbox over real HTTP: in a background thread (tests, demos, benchmarks) or in the foreground (CLI)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bridge.sandbox.app import Sandbox, create_sandbox_app, sandbox_of
from bridge.sandbox.state import SandboxConfig


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without the per-request access log line (noisy under load); errors still log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class BackgroundServer:
    """A WSGI app on werkzeug's threaded server, served from a daemon thread (or the foreground). The
    port is bound at construction (``port=0`` picks a free one), so :attr:`url` is known before the
    app is built and before :meth:`start`."""

    thread_name = "background-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> None:
        handler = QuietRequestHandler if quiet else None
        self._server: BaseWSGIServer = make_server(host, port, _not_mounted, threaded=True, request_handler=handler)
        self.host, self.port = host, self._server.server_port
        self._thread: threading.Thread | None = None

    def mount(self, app: Flask) -> None:
        """The app to serve."""
        self.app = app
        self._server.app = app

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def closing(self) -> None:
        """Called as the server stops (subclasses wake what sleeps in their requests)."""

    def start(self) -> Self:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def serve(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C), then close."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.closing()
            self._server.server_close()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.closing()
        if self._thread is not None:
            self._server.shutdown()  # only safe while serve_forever runs: it waits for the loop to end
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _not_mounted(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not mounted yet"]


class SandboxServer(BackgroundServer):
    """The sandbox app served in the background (tests, demos, benchmarks) or the foreground (CLI)."""

    thread_name = "loyalty-sandbox"

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0, *,
                 quiet: bool = True, state_file: Path | None = None) -> None:
        super().__init__(host, port, quiet=quiet)
        self.mount(create_sandbox_app(config, state_file=state_file))

    @property
    def sandbox(self) -> Sandbox:
        """The running app's state, faults and configuration, for direct inspection."""
        return sandbox_of(self.app)

    def closing(self) -> None:
        """Requests asleep in a latency or timeout fault end at once."""
        self.sandbox.faults.close()


def serve_forever(config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 8787, *,
                  quiet: bool = True, announce: Callable[[str], None] | None = None) -> None:
    """Run a sandbox in the foreground until Ctrl-C (``bridge sandbox``); ``announce`` gets its URL first."""
    server = SandboxServer(config, host, port, quiet=quiet)
    if announce is not None:
        announce(server.url)
    server.serve()
