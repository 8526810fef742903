"""Fixtures for the format tests: one app per module, runs and exports made once and reused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.session import session_scope
from altdub.service.keys import create_key
from tests.conftest import auth, make_run


class Exports:
    """Runs and downloaded exports of one app, each made once (keyed by its inputs)."""

    def __init__(self, client: TestClient, key: str, directory: Path) -> None:
        self.client, self.key, self.directory = client, key, directory
        self._runs: dict[tuple[tuple[str, Path], ...], int] = {}
        self._tasks: dict[tuple[int, str, str], dict[str, Any]] = {}
        self._files: dict[tuple[int, str, str], Path] = {}

    def run(self, files: dict[str, Path]) -> int:
        """The run made of these files (created on first use)."""
        identity = tuple(sorted(files.items()))
        if identity not in self._runs:
            self._runs[identity] = make_run(self.client, self.key, files)
        return self._runs[identity]

    def request(self, run_id: int, output_format: str, language: str = "es-es") -> None:
        """Ask for an export without waiting, so several conversions run at once."""
        slot = (run_id, language, output_format)
        if slot in self._tasks:
            return
        response = self.client.post(
            f"/dub-alt-format/{run_id}/{language}",
            headers=auth(self.key),
            json={"output_format": output_format},
        )
        assert response.status_code == 200, response.text
        self._tasks[slot] = response.json()

    def status(self, run_id: int, output_format: str, language: str = "es-es") -> dict[str, Any]:
        """The final status of the export (requested if it was not yet)."""
        self.request(run_id, output_format, language)
        answer = self._tasks[(run_id, language, output_format)]
        if "output_url" in answer:
            return {"status": "SUCCESS", "output_url": answer["output_url"]}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            body = self.client.get(f"/dub-alt-format/{answer['task_id']}", headers=auth(self.key)).json()
            if body["status"] != "PENDING":
                return body
            time.sleep(0.05)
        raise AssertionError(f"export {output_format} of run {run_id} still PENDING")

    def file(self, run_id: int, output_format: str, language: str = "es-es") -> Path:
        """The downloaded export (made, waited for and fetched through its signed URL on first use)."""
        slot = (run_id, language, output_format)
        if slot not in self._files:
            status = self.status(run_id, output_format, language)
            assert status["status"] == "SUCCESS", status
            response = self.client.get(status["output_url"])
            assert response.status_code == 200, response.text
            path = self.directory / f"run{run_id}-{language}.{output_format}"
            path.write_bytes(response.content)
            self._files[slot] = path
        return self._files[slot]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exports]:
    # The format tests ask for dozens of exports at once from one workspace: above the default pending
    # limit, whose 429 is tests/reliability/test_fairness.py's to check.
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("formats-data"),
        create_demo=False,
        workers=4,
        task_time_limit=120,
        max_pending_tasks=10_000,
    )
    with TestClient(create_app(settings)) as client:
        context = client.app.state.context  # type: ignore[attr-defined]
        with session_scope(context.sessions) as session:
            key, _ = create_key(session, "formats")
        yield Exports(client, key, tmp_path_factory.mktemp("exports"))
