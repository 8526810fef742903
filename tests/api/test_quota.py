"""Export quotas: past a workspace's minutes, a new export ends PAYMENT_REQUIRED with no work done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask, Workspace
from altdub.db.session import session_scope
from altdub.service.keys import create_key
from tests.conftest import auth, export, make_run, wait_for_task

ALTDUB = Path(sys.executable).parent / "altdub"


def _key(client: TestClient, workspace: str) -> str:
    with session_scope(client.app.state.context.sessions) as session:
        return create_key(session, workspace)[0]


def _used(client: TestClient, name: str) -> float:
    with client.app.state.context.sessions() as session:
        return session.scalar(select(Workspace.used_minutes).where(Workspace.name == name))


@pytest.fixture
def quota_client(tmp_path: Path):
    """A server whose default quota is 10 s of exports per workspace (the media last 4 s)."""
    settings = Settings(data_dir=tmp_path / "data", create_demo=False, export_quota_minutes=10 / 60)
    with TestClient(create_app(settings)) as client:
        yield client


def test_past_the_quota_a_new_export_ends_payment_required_with_no_work(quota_client, media) -> None:
    key = _key(quota_client, "metered")
    run_id = make_run(quota_client, key, {"source": media.video, "dub_es-es": media.dub_wav})
    for output_format in ("mp3", "flac"):  # 4 s + 4 s of 10 s
        assert export(quota_client, key, run_id, "es-es", output_format)["status"] == "SUCCESS"
    assert _used(quota_client, "metered") == pytest.approx(8 / 60)

    response = quota_client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json={"output_format": "wav"})
    assert response.status_code == 200, response.text
    status = wait_for_task(quota_client, key, response.json()["task_id"])
    assert status["status"] == "PAYMENT_REQUIRED"
    assert status["exception_reason"] == "PAYMENT_REQUIRED"
    assert "quota" in status["message"] and "no work was done" in status["message"]
    assert "output_url" not in status
    with quota_client.app.state.context.sessions() as session:
        task = session.get(ExportTask, response.json()["task_id"])
        assert task.attempts == 0 and task.started_at is None and task.storage_key is None
    assert _used(quota_client, "metered") == pytest.approx(8 / 60), "a refused export charges nothing"

    # Exports that exist cost nothing more: still served.
    again = quota_client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json={"output_format": "mp3"})
    assert set(again.json()) == {"output_url"}


def test_quotas_are_per_workspace(quota_client, media) -> None:
    spent, fresh = _key(quota_client, "spent"), _key(quota_client, "fresh")
    for key in (spent, fresh):
        run_id = make_run(quota_client, key, {"source": media.video, "dub_es-es": media.dub_wav})
        assert export(quota_client, key, run_id, "es-es", "mp3")["status"] == "SUCCESS"
        assert export(quota_client, key, run_id, "es-es", "wav")["status"] == "SUCCESS"
    assert _used(quota_client, "fresh") == pytest.approx(8 / 60)


def test_a_failed_export_gives_its_minutes_back(tmp_path: Path, media) -> None:
    settings = Settings(data_dir=tmp_path / "data", create_demo=False, export_quota_minutes=1, task_time_limit=0.01)
    with TestClient(create_app(settings)) as client:
        key = _key(client, "unlucky")
        run_id = make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav})
        assert export(client, key, run_id, "es-es", "mxf")["status"] == "TIMEOUT"
        assert _used(client, "unlucky") == pytest.approx(0)


def test_unlimited_by_default(client, api_key, media) -> None:
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    for output_format in ("mp3", "wav", "flac", "aac"):
        assert export(client, api_key, run_id, "es-es", output_format)["status"] == "SUCCESS"


def test_workspace_quota_from_the_command_line(tmp_path: Path, media) -> None:
    """`altdub workspaces quota NAME --minutes N` overrides the server default for that workspace."""
    data_dir = tmp_path / "data"
    env = {"ALTDUB_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}
    subprocess.run([str(ALTDUB), "keys", "create", "--workspace", "tiny"], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [str(ALTDUB), "workspaces", "quota", "tiny", "--minutes", "0.05"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([str(ALTDUB), "workspaces", "list"], env=env, capture_output=True, text=True).stdout
    assert "tiny" in listed and "quota 0.05 min" in listed
    missing = subprocess.run(
        [str(ALTDUB), "workspaces", "quota", "nobody", "--minutes", "1"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "nobody" in missing.stderr

    with TestClient(create_app(Settings(data_dir=data_dir, create_demo=False))) as client:
        key = _key(client, "tiny")
        run_id = make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav})
        assert export(client, key, run_id, "es-es", "mp3")["status"] == "PAYMENT_REQUIRED"  # 4 s > 3 s
