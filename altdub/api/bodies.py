"""Request bodies, whatever a client sends: bounded in size, undecodable JSON a 422, echoes always encodable.

A 422 echoes the value it refuses (FastAPI's ``input``). JSON cannot spell every value a request
can carry: Python's decoder reads ``NaN``, ``Infinity`` and ``1e400`` as non-finite floats, and a
``"\\ud800"`` escape as a lone surrogate that UTF-8 cannot encode. ``json_safe`` turns such values
into text, so that encoding an error answer cannot fail (which would turn the 422 into a 500).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ECHO_DEPTH = 8  # nesting kept when a refused value is echoed back; deeper levels are shown as "..."
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with every part JSON (and UTF-8) can carry as is, the rest spelled as text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if _has_surrogates(value) else value
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE.get(value, "NaN")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if depth >= ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, depth + 1) for item in value]
    return json_safe(jsonable_encoder(value), depth + 1)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def decode_json(body: bytes) -> Any:
    """The body's JSON value; every failure, not only a syntax error, is a ``json.JSONDecodeError``.

    Python's decoder also fails with a ``RecursionError`` (nesting too deep), a ``UnicodeDecodeError``
    (not UTF-8/16/32) or a ``ValueError`` (an integer of more than 4,300 digits); FastAPI answers
    those with a bare 400, and a ``JSONDecodeError`` with its 422 naming the body.
    """
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        reason = "nested too deeply"
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except ValueError as exc:  # the integer digit limit of int()
        reason = f"unreadable number ({str(exc).split(':')[0]})"
    raise json.JSONDecodeError(reason, body.decode("utf-8", "replace"), 0)


class _StrictJsonRequest(Request):
    """A request whose ``json()`` is ``decode_json``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json(await self.body())
        return self._json


def _has_body(request: Request) -> bool:
    """Whether the request declares a body: a non-zero Content-Length, or a chunked one."""
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters (``charset``) aside."""
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _content_type_error(content_type: str | None) -> dict[str, Any]:
    """The 422 entry for a body sent as anything but JSON (FastAPI would only say the body is not an object)."""
    sent = f"it was sent as {content_type!r}" if content_type else "it was sent without a Content-Type"
    return {
        "loc": ["header", "content-type"],
        "msg": f"the body must be JSON sent with Content-Type: application/json ({sent})",
        "type": "content_type",
        "input": content_type,
    }


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read with ``decode_json``: anything undecodable is a 422, never a 400 or 500.

    A body sent without ``Content-Type: application/json`` (curl's ``-d`` sends form encoding,
    some clients send none or ``text/plain``) is a 422 that says so, naming the header.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_json = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if takes_json and _has_body(request) and not _is_json(content_type or ""):
                raise RequestValidationError([_content_type_error(content_type)])  # the app's 422, as for the body
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict_handler


class BodySizeLimit:
    """Refuses a request body over ``max_bytes`` with 413 before the application sees it.

    The declared Content-Length is checked first, then the bytes are counted as they arrive (a
    chunked body declares none), so at most ``max_bytes`` are ever held. The ``streamed`` routes
    (the multipart import) read their bodies in pieces and apply their own per-file limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, streamed: set[tuple[str, str]]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.streamed:
            return await self.app(scope, receive, send)
        declared: int | None = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                has_body = True
                declared = int(value) if value.isdigit() else None  # the HTTP parser refuses other values
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body or declared == 0:
            return await self.app(scope, receive, send)
        if declared is not None and declared > self.max_bytes:
            return await self._refuse(scope, receive, send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: nothing to answer
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """413, and the connection closed: the rest of the body is not worth reading."""
        detail = f"request body is larger than the {self.max_bytes} byte limit"
        response = JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})
        await response(scope, receive, send)
