"""GET /dub-alt-format/{task_id}?wait=S: answered when the task ends, or when the wait is over."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from altdub.api.app import create_app
from altdub.api.routes import exports as export_routes
from altdub.db.models import ExportTask, TaskStatus
from altdub.service import conversion
from tests.api.conftest import new_key
from tests.conftest import auth, make_run


@pytest.fixture
def pending(idle_client, media):
    """(client, key, task_id) of an mp3 export in an app without workers: it stays PENDING until run here."""
    key = new_key(idle_client, "waiting")
    run_id = make_run(idle_client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    response = idle_client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json={"output_format": "mp3"})
    assert response.status_code == 200, response.text
    return idle_client, key, response.json()["task_id"]


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def test_a_worker_of_this_process_wakes_the_waiting_request(pending, monkeypatch):
    """Re-reading is switched off: only the worker's notification can end the wait before 30 s."""
    client, key, task_id = pending
    monkeypatch.setattr(export_routes, "RECHECK_SECONDS", 60.0)
    context = client.app.state.context
    worker = later(0.3, lambda: conversion.run_next_task(context))
    started = time.monotonic()
    response = client.get(f"/dub-alt-format/{task_id}", params={"wait": 30}, headers=auth(key))
    elapsed = time.monotonic() - started
    worker.join()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "SUCCESS", body
    assert body["progress"] == 100 and body["output_url"].startswith("http")
    assert elapsed < 20, f"answered after {elapsed:.1f} s: the notification did not wake the request"


def end_in_database(client, task_id: str) -> None:
    """End the task as a worker of another process would: in the database, notifying nobody here."""
    with client.app.state.context.sessions.begin() as session:
        session.execute(
            update(ExportTask)
            .where(ExportTask.id == task_id)
            .values(status=TaskStatus.ERROR.value, exception_reason="PROCESSING_ERROR", message="ended elsewhere")
        )


def test_with_a_broker_a_task_ended_elsewhere_is_seen_by_re_reading(pending, settings):
    """Workers in other processes (a broker is set) notify nobody here: the waiting request reads the task again."""
    client, key, task_id = pending
    brokered = settings.model_copy(update={"broker_url": "redis://127.0.0.1:6379/13"})  # never sent to: no export
    with TestClient(create_app(brokered, workers=False)) as api:
        writer = later(0.3, lambda: end_in_database(client, task_id))
        started = time.monotonic()
        response = api.get(f"/dub-alt-format/{task_id}", params={"wait": 20}, headers=auth(key))
        elapsed = time.monotonic() - started
        writer.join()
    assert response.json()["status"] == "ERROR", response.text
    assert response.json()["message"] == "ended elsewhere"
    assert elapsed < export_routes.RECHECK_SECONDS + 5, f"answered after {elapsed:.1f} s"


def test_embedded_waiting_reads_the_task_only_when_woken_or_at_the_end(pending):
    """No broker: nothing but this process's workers ends a task, so a waiting request reads no more in between."""
    client, key, task_id = pending
    writer = later(0.2, lambda: end_in_database(client, task_id))
    started = time.monotonic()
    response = client.get(f"/dub-alt-format/{task_id}", params={"wait": 1.5}, headers=auth(key))
    elapsed = time.monotonic() - started
    writer.join()
    assert response.json()["status"] == "ERROR", response.text  # read once more at the end of the wait
    assert elapsed >= 1.5, f"answered after {elapsed:.2f} s: the task was read again while waiting"


def test_waiting_requests_beyond_the_limit_answer_at_once(pending):
    client, key, task_id = pending
    context = client.app.state.context
    context.settings.max_waiting_requests = 0
    started = time.monotonic()
    response = client.get(f"/dub-alt-format/{task_id}", params={"wait": 30}, headers=auth(key))
    assert response.status_code == 200 and response.json()["status"] == "PENDING"
    assert time.monotonic() - started < 10


def test_the_wait_ends_with_the_task_still_pending(pending):
    client, key, task_id = pending
    started = time.monotonic()
    response = client.get(f"/dub-alt-format/{task_id}", params={"wait": 0.6}, headers=auth(key))
    assert time.monotonic() - started >= 0.6
    assert response.status_code == 200
    assert response.json()["status"] == "PENDING"
    assert "output_url" not in response.json()


def test_a_finished_task_is_answered_at_once(pending):
    client, key, task_id = pending
    conversion.run_next_task(client.app.state.context)
    started = time.monotonic()
    response = client.get(f"/dub-alt-format/{task_id}", params={"wait": 30}, headers=auth(key))
    assert response.json()["status"] == "SUCCESS"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("value", ["-1", "30.5", "1e9", "nan", "soon"])
def test_wait_out_of_range_is_422(pending, value):
    client, key, task_id = pending
    response = client.get(f"/dub-alt-format/{task_id}", params={"wait": value}, headers=auth(key))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "wait"]


def test_waiting_never_reveals_another_workspaces_task(pending):
    client, _, task_id = pending
    stranger = new_key(client, "stranger")
    started = time.monotonic()
    response = client.get(f"/dub-alt-format/{task_id}", params={"wait": 30}, headers=auth(stranger))
    assert response.status_code == 404
    no_key = client.get(f"/dub-alt-format/{task_id}", params={"wait": 30})
    assert no_key.status_code == 401
    assert time.monotonic() - started < 10  # refused at once, not after the wait


def test_waiters_are_forgotten_when_answered(pending):
    client, key, task_id = pending
    client.get(f"/dub-alt-format/{task_id}", params={"wait": 0.3}, headers=auth(key))
    assert client.app.state.context.task_events._waiters == {}
