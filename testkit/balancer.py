"""A round-robin load balancer for webhook front ends: what sits before them in production.

The Bot API emulator posts each update here; it goes to the next front end, or past one that does not
answer (as a balancer's health check would). ``pin`` sends everything to one front end, for tests that
need to know where a job was submitted.
"""

from __future__ import annotations

import itertools
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Balancer:
    def __init__(self, backends: list[str]) -> None:
        self.backends = backends  # base URLs, e.g. http://127.0.0.1:8001
        self._turns = itertools.count()
        self.pinned: int | None = None
        self.sent_to: list[int] = []  # which front end got each update
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Balancer:
        balancer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = balancer.forward(self.path, body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="balancer").start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def pin(self, index: int | None) -> None:
        self.pinned = index

    def forward(self, path: str, body: bytes, headers: dict) -> int:
        first = self.pinned if self.pinned is not None else next(self._turns)
        for offset in range(len(self.backends)):
            index = (first + offset) % len(self.backends)
            request = urllib.request.Request(self.backends[index] + path, data=body, method="POST")
            for name in ("Content-Type", "X-Telegram-Bot-Api-Secret-Token"):
                if name in headers:
                    request.add_header(name, headers[name])
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.sent_to.append(index)
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
            except OSError:
                continue  # that front end is down: the next one
        return 502

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
