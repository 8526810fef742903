"""POST a body to a checked address: connected to the address that was checked, no redirects, a hard timeout."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from altdub.outbound.addresses import Target

MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Attempt:
    """How one delivery went: the receiver's status code, or the error that stopped it."""

    status_code: int | None
    latency_ms: float
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    """Send ``body`` to ``target``: a 3xx is an answer like any other non-2xx, never followed.

    The TCP connection goes to ``target.address`` (checked by ``addresses.resolve``), with the URL's
    host in ``Host`` and, for https, in the TLS SNI and certificate check.
    """
    default_port = {"http": 80, "https": 443}[target.scheme]
    host = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal keeps its brackets
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    pinned = httpx.URL(target.url).copy_with(host=str(target.address))
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    started = time.monotonic()
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout, trust_env=False) as client:
            response = client.post(
                pinned,
                content=body,
                headers={**headers, "Host": host_header, "Content-Type": "application/json"},
                extensions=extensions,
            )
    except httpx.TimeoutException:
        return Attempt(None, _since(started), f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Attempt(None, _since(started), f"{exc.__class__.__name__}: {exc}"[:MAX_ERROR_CHARS])
    error = None if 200 <= response.status_code < 300 else f"answered {response.status_code}"
    return Attempt(response.status_code, _since(started), error)


def _since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
