"""Helpers for the reliability tests: real servers, the processes they leave, their database and files."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.conftest import ServerFactory, auth

# The Camb.ai exception_reason vocabulary of the spec (§3): an ERROR task carries one of these.
REASONS = {
    "INVALID_SOURCE_DATA",
    "PROCESSING_ERROR",
    "MISMATCHED_SOURCE_CODEC",
    "VIDEO_DOES_NOT_HAVE_AUDIO_STREAMS",
    "INTERNAL_ERROR",
}
TERMINAL = {"SUCCESS", "ERROR", "TIMEOUT", "PAYMENT_REQUIRED"}
DURATION_TOLERANCE = 0.05  # spec §4


@pytest.fixture
def servers() -> Iterator[ServerFactory]:
    """``servers(data_dir, env=...)`` starts ``altdub serve``; every one is stopped at teardown."""
    factory = ServerFactory()
    yield factory
    factory.stop_all()
    for number, server in enumerate(factory.started):  # shown by pytest when the test failed
        print(f"--- altdub serve #{number} (pid {server.process.pid}) ---\n" + "\n".join(server.output[-200:]))


def ffmpeg_processes(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) FFmpeg processes whose command line mentions ``marker`` (a data directory).

    Found by command line, not by parent: an FFmpeg whose server died is re-parented and would
    escape a look at the server's children.
    """
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        program = " ".join(argv[:2]).lower()  # the binary, or an interpreter and its script
        if "ffmpeg" in program and marker in " ".join(argv) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def task_row(data_dir: Path, task_id: str) -> dict[str, Any] | None:
    """The task's row, read straight from the embedded SQLite database."""
    with closing(sqlite3.connect(data_dir / "altdub.db")) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM export_tasks WHERE id = ?", (task_id,)).fetchone()
    return dict(row) if row else None


def count_rows(data_dir: Path, table: str) -> int:
    with closing(sqlite3.connect(data_dir / "altdub.db")) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def files_under(directory: Path) -> list[Path]:
    """Every file below ``directory`` (hidden partial files included); empty when it does not exist."""
    if not directory.exists():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() or p.is_fifo())


def wait_task(base_url: str, key: str, task_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll until the task leaves PENDING; returns its last status body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{base_url}/dub-alt-format/{task_id}", headers=auth(key), timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still PENDING after {timeout:g} s: {body}")


def request_export(base_url: str, key: str, run_id: int, body: dict[str, Any], language: str = "es-es") -> str:
    """POST an export that does not exist yet; returns its task id."""
    response = httpx.post(f"{base_url}/dub-alt-format/{run_id}/{language}", headers=auth(key), json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"task_id"}, response.text
    return response.json()["task_id"]
