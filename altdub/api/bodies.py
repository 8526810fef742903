"""JSON in and out of the API, whatever a client sends: undecodable bodies are a 422, echoes always encode.

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
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

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


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read with ``decode_json``: anything undecodable is a 422, never a 400 or 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict_handler
