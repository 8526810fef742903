"""How a conversion's end becomes its task's outcome (service.conversion): a stop is never a failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask, FileRole, RunFile, TaskStatus, Workspace
from altdub.db.session import session_scope
from altdub.service import conversion, tasks
from altdub.service.context import Context
from altdub.service.keys import create_key
from tests.conftest import auth, make_run


@pytest.fixture
def idle(settings: Settings) -> Iterator[TestClient]:
    """An app without workers: tasks stay PENDING until a test runs them."""
    with TestClient(create_app(settings, workers=False)) as client:
        yield client


def _pending_export_with_a_changed_dub(client: TestClient, api_key: str, media) -> tuple[Context, str]:
    """A PENDING mp3 export whose stored dub no longer has its imported size: converting it fails."""
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    response = client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(api_key), json={"output_format": "mp3"})
    assert response.status_code == 200, response.text
    context: Context = client.app.state.context
    with context.sessions() as session:
        dub = session.query(RunFile).filter_by(run_id=run_id, role=FileRole.DUB.value).one()
        key = dub.storage_key
    with context.storage.local_copy(key) as path, path.open("ab") as stored:
        stored.write(b"\0" * 16)
    return context, response.json()["task_id"]


def _task(context: Context, task_id: str) -> ExportTask:
    with context.sessions() as session:
        task = session.get(ExportTask, task_id)
        assert task is not None
        session.expunge(task)
        return task


def _used_minutes(context: Context, workspace_id: int) -> float:
    with context.sessions() as session:
        return session.get(Workspace, workspace_id).used_minutes


def test_a_failure_while_the_process_stops_is_no_outcome_and_the_task_meets_its_own_at_the_next_start(
    idle: TestClient, media
) -> None:
    with session_scope(idle.app.state.context.sessions) as session:
        api_key, _ = create_key(session, "stopping")
    context, task_id = _pending_export_with_a_changed_dub(idle, api_key, media)
    workspace_id = _task(context, task_id).workspace_id
    reserved = _used_minutes(context, workspace_id)

    assert tasks.claim_next(context) == task_id
    context.stopping.set()  # shutdown begins while the claimed task converts
    try:
        conversion._run_claimed(context, task_id)  # fails (the dub changed) while stopping
    finally:
        context.stopping.clear()
    stopped = _task(context, task_id)
    assert stopped.status == TaskStatus.PENDING, (stopped.status, stopped.message)
    assert stopped.exception_reason is None and stopped.finished_at is None
    assert _used_minutes(context, workspace_id) == reserved  # nothing given back: the task is still to be made

    assert tasks.release_pending_tasks(context) == [task_id]  # the next start
    assert conversion.run_next_task(context) == task_id
    ended = _task(context, task_id)
    assert ended.status == TaskStatus.ERROR and ended.exception_reason == "INVALID_SOURCE_DATA", ended.message
    assert "changed since it was imported" in ended.message
    assert _used_minutes(context, workspace_id) == pytest.approx(reserved - ended.minutes)


def test_a_package_finished_after_its_run_was_deleted_is_dropped_whole(
    idle: TestClient, media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is deleted while its package is being published: the folder appears after the run's files were
    removed, and every file of it must go, not only the playlist the task's key names."""
    with session_scope(idle.app.state.context.sessions) as session:
        api_key, _ = create_key(session, "orphans")
    run_id = make_run(idle, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    response = idle.post(f"/runs/{run_id}/exports", headers=auth(api_key), json={"output_format": "hls"})
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    context: Context = idle.app.state.context
    publish = context.storage.put_folder

    def deleted_first(prefix: str, folder: Path) -> int:
        assert idle.delete(f"/runs/{run_id}", headers=auth(api_key)).status_code == 204
        return publish(prefix, folder)

    monkeypatch.setattr(context.storage, "put_folder", deleted_first)
    assert tasks.claim_next(context) == task_id
    conversion._run_claimed(context, task_id)
    exports = context.settings.resolved_data_dir / "files"
    assert [p for p in exports.rglob("*") if p.is_file() and "exports" in p.parts] == []
    assert not tasks.task_exists(context, task_id)
