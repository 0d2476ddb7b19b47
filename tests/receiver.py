"""An alert receiver on loopback for the alert tests: a real HTTP server that keeps what it is sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bridge.embedded_redis import free_port


class Receiver(ThreadingHTTPServer):
    """An alert receiver on loopback: keeps every POST; answers ``fail_status`` (503) to the
    first ``fail_next``."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes, int]] = []
        self.fail_next = 0
        self.fail_status = 503
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", free_port()), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/secret-path"

    def taken(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """The alerts it answered 2xx to: headers and parsed body."""
        with self.lock:
            return [(h, json.loads(b)) for h, b, status in self.posts if status == 200]

    def seen(self, alert: str, state: str, store: str | None = None) -> int:
        return sum(1 for _, body in self.taken() if body["alert"] == alert and body["state"] == state
                   and body["store"] == store)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            status = self.server.fail_status if self.server.fail_next > 0 else 200
            self.server.fail_next -= status != 200
            self.server.posts.append((dict(self.headers), body, status))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"down")

    def log_message(self, *args: Any) -> None:
        pass
