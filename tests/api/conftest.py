"""Helpers for the API tests: data-directory inspection, extra apps on the same data dir, raw requests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.session import session_scope
from altdub.service.keys import create_key


def new_key(client: TestClient, workspace: str) -> str:
    """A fresh raw API key for ``workspace`` (created if new) in the app behind ``client``."""
    context = client.app.state.context  # type: ignore[attr-defined]
    with session_scope(context.sessions) as session:
        raw, _ = create_key(session, workspace)
    return raw


def stored_files(directory: Path) -> list[Path]:
    """Every file below ``directory`` (hidden partial files included); empty when it does not exist."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file())


def files_root(settings: Settings) -> Path:
    return settings.resolved_data_dir / "files"


def staging_root(settings: Settings) -> Path:
    return settings.resolved_data_dir / "tmp"


def ffmpeg_children() -> list[tuple[int, str, str]]:
    """(pid, name, state) of every ffmpeg process whose parent is this test process (zombies included)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == me and "ffmpeg" in comm.lower():
            found.append((int(entry.name), comm, state))
    return found


def raw_get(
    client: TestClient, path: str, query: str = "", raw: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as given (no client-side dot-segment normalisation), as a server would see it.

    ``path`` is the decoded path (as uvicorn puts it in the ASGI scope); ``raw_path`` keeps it verbatim
    (``raw``: the request target as sent, escapes such as ``%2F`` kept, when it differs from ``path``).
    Returns (status, headers, body).
    """
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("testclient", 50000),
        "root_path": "",
        "path": path,
        "raw_path": (path if raw is None else raw).encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "headers": [(b"host", b"testserver")],
        "state": {},
    }
    messages: list[dict[str, Any]] = []
    requested = False

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            nonlocal requested
            if requested:  # a client that stays connected: nothing more until the app is done answering
                await anyio.sleep_forever()
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await client.app(scope, receive, send)

    client.portal.call(call)  # type: ignore[union-attr]
    start = next(m for m in messages if m["type"] == "http.response.start")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], headers, body


@pytest.fixture
def idle_client(settings: Settings) -> Iterator[TestClient]:
    """An app on the fresh data dir with no workers: tasks stay PENDING until a worker app starts."""
    with TestClient(create_app(settings, workers=False)) as test_client:
        yield test_client
