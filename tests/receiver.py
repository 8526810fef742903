"""A real webhook receiver on loopback (``http.server`` in a thread) that can fail, hang, redirect and recover.

Tests tell it how to answer (``receiver.answer(500)``, ``receiver.hang()``, ``receiver.redirect()``,
``receiver.answer(204)``) and read what it got: every request, with its body and headers, in order.
A redirect points at ``/redirected`` on the same receiver, so a client that followed it would be seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

REDIRECT_PATH = "/redirected"
HANG_SECONDS = 30.0  # how long a hanging answer waits at most (released at once when the mode changes)

T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it, and what it answered (None: it hung and the client gave up)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Receiver:
    """``ThreadingHTTPServer`` on 127.0.0.1 (or ``host``) with a switchable answer: a status code, a hang, a 302."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.Lock()
        self._mode: tuple[str, int] = ("status", 204)
        self._released = threading.Event()
        self._received: list[Received] = []
        self._arrived: list[Received] = []  # every request when it came, before any hang (answered None)
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str = "/hooks") -> str:
        return f"http://{self.netloc}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    # --- how it answers ---

    def answer(self, status: int) -> None:
        """Answer every request with ``status`` (and release any hanging one)."""
        self._set(("status", status))

    def hang(self) -> None:
        """Answer nothing until the mode changes (or HANG_SECONDS pass): the sender's timeout must fire."""
        with self._lock:
            self._mode = ("hang", 0)
            self._released.clear()

    def redirect(self, status: int = 302) -> None:
        """Answer ``status`` with ``Location: /redirected`` on this receiver."""
        self._set(("redirect", status))

    def _set(self, mode: tuple[str, int]) -> None:
        with self._lock:
            self._mode = mode
        self._released.set()

    # --- what it got ---

    def received(self, path: str | None = None) -> list[Received]:
        """Every request so far (to ``path`` only, when given), in the order they arrived."""
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def arrived(self) -> list[Received]:
        """Every request as it came in (a hanging one too, before it is answered), in order."""
        with self._lock:
            return list(self._arrived)

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies of the POSTs so far (to ``path`` only, when given)."""
        return [r.event for r in self.received(path) if r.method == "POST" and r.path != REDIRECT_PATH]

    def delivered(self, path: str | None = None) -> list[dict[str, Any]]:
        """The events this receiver answered 2xx, in order."""
        return [
            r.event
            for r in self.received(path)
            if r.method == "POST" and r.answered is not None and 200 <= r.answered < 300
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    kind, status = receiver._mode
                    receiver._arrived.append(Received(self.command, self.path, headers, body, None))
                if self.path == REDIRECT_PATH:
                    kind, status = "status", 200  # the redirect's target: only a client that followed gets here
                if kind == "hang":
                    receiver._released.wait(HANG_SECONDS)
                    with receiver._lock:
                        receiver._received.append(Received(self.command, self.path, headers, body, None))
                    self.close_connection = True
                    return
                with receiver._lock:
                    receiver._received.append(Received(self.command, self.path, headers, body, status))
                self.send_response(status)
                if kind == "redirect":
                    self.send_header("Location", f"http://{receiver.netloc}{REDIRECT_PATH}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = _any
            do_GET = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads ``received``

        return Handler


def verify(secret: str, request: Received) -> bool:
    """The README's check of ``altdub-signature``: ``t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    parts = dict(part.split("=", 1) for part in request.headers["altdub-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(parts["v1"], expected) and abs(time.time() - int(parts["t"])) < 300


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` passes (AssertionError naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
