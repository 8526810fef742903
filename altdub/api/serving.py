"""How `altdub serve` runs uvicorn: its configuration in one place, and the HTTP limits uvicorn lacks.

uvicorn's httptools protocol takes headers of any size (httptools buffers a header line until it
ends) for as long as a client cares to send them, and waits for a body forever: one connection
could hold 64 MiB, and any number of idle half-requests could stay open. The protocol below
counts, and times, what a client sends before the application sees it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from copy import deepcopy
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from altdub.api.app import EVENT_LOOP
from altdub.config import Settings

log = logging.getLogger(__name__)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time limit on headers and a progress limit on bodies.

    - The bytes of a request's line and headers are counted as they arrive: past
      ``max_header_bytes`` the answer is 431 and the connection is closed.
    - A connection gets ``header_timeout`` seconds, from its opening or from the first byte of a
      request, to send complete headers; then it is closed (408 when a request had begun).
    - A body that brings no byte for ``body_idle_timeout`` seconds while the application is ready
      for more is given up (the connection closed); a slow body that keeps moving is not.

    A timer runs only while a request is incomplete after a read, so a request that arrives in one
    read (most of them) costs none. Subclassed per server by ``protocol_class``, which sets the limits.
    """

    max_header_bytes: ClassVar[int]
    header_timeout: ClassVar[float]
    body_idle_timeout: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        self._header_bytes = 0  # of the request whose headers are awaited
        self._in_body = False
        self._body_progress_at = 0.0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)  # a connection that never sends a request does not stay

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._awaiting_headers and self._header_bytes:
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, f"Request line and headers are over {self.max_header_bytes} bytes.")
            elif self._deadline is None:
                self._arm(self.header_timeout)
        elif self._in_body:
            self._body_progress_at = self.loop.time()
            if self._deadline is None:
                self._arm(self.body_idle_timeout)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._in_body = True
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._awaiting_headers = True
        self._header_bytes = 0
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._awaiting_headers:
            if self.cycle is not None and not self.cycle.response_complete:  # a pipelined request is being answered
                self.cycle.keep_alive = False  # the connection closes after that answer
            elif self._header_bytes:
                self._refuse(408, f"Request headers not complete after {self.header_timeout:g} s.")
            else:
                self.transport.close()
        elif self._in_body:
            idle = self.loop.time() - self._body_progress_at
            if self.flow.read_paused:  # the application is behind, not the client
                self._arm(self.body_idle_timeout)
            elif idle < self.body_idle_timeout:
                self._arm(self.body_idle_timeout - idle)
            else:
                log.warning("%s: request body made no progress for %g s; connection closed", self.client, idle)
                self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close; only closes when an answer to an earlier request is under way."""
        if self.cycle is None or self.cycle.response_complete:
            body = message.encode("ascii")
            head = b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
            self.transport.write(STATUS_LINE[status] + head % len(body) + body)
        log.warning("%s: %s", self.client, message)
        self.transport.close()


def protocol_class(settings: Settings) -> type[GuardedHttpProtocol]:
    """The HTTP protocol with the limits of ``settings``."""
    limits = {
        "max_header_bytes": settings.max_header_bytes,
        "header_timeout": settings.header_timeout,
        "body_idle_timeout": settings.body_idle_timeout,
    }
    return type("AltdubHttpProtocol", (GuardedHttpProtocol,), limits)


# A query parameter whose name says it is a secret (signature, X-Amz-Signature, api_key, token, ...): name, value.
SECRET_QUERY = re.compile(
    r"([?&][^=&\s\"]*(?:signature|api[-_]?key|token|secret|password|credential)[^=&\s\"]*=)[^&\s\"]*", re.I
)


class RedactSecrets(logging.Filter):
    """Blanks the values of secret query parameters (a signed URL's ``signature``) in log lines.

    uvicorn's access log prints each request's path with its query string: without this, every
    download's signature would be in the log, and anyone who reads it could fetch the file.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = _redacted(record.msg)
        return True


def _redacted(text: str) -> str:
    """``text`` with secret query values blanked; text with no ``=`` holds none (an access line's method,
    version, address, or a path without a query: most of them), and skips the regular expression."""
    return SECRET_QUERY.sub(r"\1REDACTED", text) if "=" in text else text


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with secrets redacted from the access log."""
    config = deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_secrets"]
    return config


class AltdubServer(uvicorn.Server):
    """uvicorn's server, answering open long polls the moment it starts to stop.

    uvicorn tells the application of a shutdown only once every connection has closed (or the grace
    is over): a request that only waits for a task would hold the whole grace period.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        context = getattr(self.config.app.state, "context", None)  # set by the lifespan once started
        if context is not None:
            context.task_events.close()
        await super().shutdown(sockets)


def uvicorn_config(app: ASGIApp, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """Everything `altdub serve` tells uvicorn.

    With the limits above, a connection holds at most ``max_header_bytes`` of headers, uvicorn's
    64 KiB of unread body and the ``max_json_bytes`` that ``BodySizeLimit`` reads; ``max_connections``
    bounds how many connections there are.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        loop=EVENT_LOOP,
        http=protocol_class(settings),
        limit_concurrency=settings.max_connections,
        log_config=_log_config(),
        timeout_graceful_shutdown=settings.shutdown_grace,
    )
