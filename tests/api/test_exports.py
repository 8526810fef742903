"""Spec §3: POST/GET /dub-alt-format: answers, status, errors, isolation, concurrency, limits, recovery."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask
from altdub.media.synth import make_tone, make_video
from altdub.service import tasks as tasks_service
from tests.api.conftest import ffmpeg_children, files_root, new_key, staging_root, stored_files
from tests.conftest import SOURCE_SECONDS, auth, export, make_run, wait_for_task

STATUS_KEYS = {"status", "run_id", "exception_reason", "message", "progress"}
UNKNOWN_TASK = "00000000-0000-0000-0000-000000000000"


def post_export(client: TestClient, key: str, run_id: int, language: str = "es-es", body=None, **kwargs):
    payload = {"output_format": "mp3"} if body is None else body
    return client.post(f"/dub-alt-format/{run_id}/{language}", headers=auth(key), json=payload, **kwargs)


def task_rows(client: TestClient, run_id: int) -> list[ExportTask]:
    with client.app.state.context.sessions() as session:
        return list(session.scalars(select(ExportTask).where(ExportTask.run_id == run_id)))


def assert_422(response, loc: list, error_type: str | None = None) -> dict:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and len(detail) == 1, detail
    error = detail[0]
    assert error["loc"] == loc, error
    assert isinstance(error["msg"], str) and error["msg"]
    if error_type is not None:
        assert error["type"] == error_type, error
    return error


@pytest.fixture
def audio_run(client, api_key, media) -> int:
    return make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})


@pytest.fixture
def video_run(client, api_key, media) -> int:
    return make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})


@pytest.fixture
def idle(idle_client, media):
    """(client, key, run_id) in an app without workers: tasks stay PENDING."""
    key = new_key(idle_client, "idle")
    run_id = make_run(idle_client, key, {"source": media.video, "dub_es-es": media.dub_wav})
    return idle_client, key, run_id


# --- answers ---------------------------------------------------------------------------------------------


def test_post_returns_task_id_then_the_same_while_pending(idle):
    client, key, run_id = idle
    first = post_export(client, key, run_id)
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"task_id"}
    assert isinstance(body["task_id"], str) and body["task_id"]
    for _ in range(3):
        again = post_export(client, key, run_id)
        assert again.status_code == 200
        assert again.json() == body
    assert len(task_rows(client, run_id)) == 1


def test_different_format_is_a_different_task(idle):
    client, key, run_id = idle
    mp3 = post_export(client, key, run_id, body={"output_format": "mp3"}).json()["task_id"]
    wav = post_export(client, key, run_id, body={"output_format": "wav"}).json()["task_id"]
    assert mp3 != wav
    assert len(task_rows(client, run_id)) == 2


def test_pending_status_shape(idle):
    client, key, run_id = idle
    task_id = post_export(client, key, run_id).json()["task_id"]
    response = client.get(f"/dub-alt-format/{task_id}", headers=auth(key))
    assert response.status_code == 200
    assert response.json() == {
        "status": "PENDING",
        "run_id": run_id,
        "exception_reason": None,
        "message": None,
        "progress": 0,
    }


def test_success_status_shape_progress_and_output_url(client, api_key, audio_run):
    first = post_export(client, api_key, audio_run)
    assert first.status_code == 200
    task_id = first.json()["task_id"]

    seen: list[int] = []
    deadline = time.monotonic() + 60
    while True:
        response = client.get(f"/dub-alt-format/{task_id}", headers=auth(api_key))
        assert response.status_code == 200
        body = response.json()
        seen.append(body["progress"])
        assert isinstance(body["progress"], int) and 0 <= body["progress"] <= 100
        if body["status"] != "PENDING":
            break
        assert set(body) == STATUS_KEYS, body
        assert time.monotonic() < deadline, "task did not finish"
        time.sleep(0.05)

    assert seen == sorted(seen), f"progress went down: {seen}"
    assert body["status"] == "SUCCESS", body
    assert set(body) == {*STATUS_KEYS, "output_url"}
    assert body["run_id"] == audio_run
    assert body["exception_reason"] is None
    assert body["message"] is None
    assert body["progress"] == 100
    assert isinstance(body["output_url"], str) and "/files/" in body["output_url"]

    # after SUCCESS the same POST answers the URL, and only that
    again = post_export(client, api_key, audio_run)
    assert again.status_code == 200
    answer = again.json()
    assert set(answer) == {"output_url"}
    assert isinstance(answer["output_url"], str)
    assert client.get(answer["output_url"]).content == client.get(body["output_url"]).content

    # the status may be read with the matching run_id too
    matching = client.get(f"/dub-alt-format/{task_id}", headers=auth(api_key), params={"run_id": audio_run})
    assert matching.status_code == 200
    assert matching.json()["status"] == "SUCCESS"
    assert len(task_rows(client, audio_run)) == 1


def test_export_by_language_id_reuses_the_finished_export(client, api_key, audio_run):
    assert export(client, api_key, audio_run, "es-es", "flac")["status"] == "SUCCESS"
    response = post_export(client, api_key, audio_run, "54", {"output_format": "flac"})
    assert set(response.json()) == {"output_url"}


# --- request errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", ["extra", "format", "outputFormat"])
def test_unknown_body_key_is_422(client, api_key, audio_run, extra):
    response = post_export(client, api_key, audio_run, body={"output_format": "mp3", extra: "x"})
    assert_422(response, ["body", extra], "extra_forbidden")
    assert task_rows(client, audio_run) == []


@pytest.mark.parametrize("value", ["ogg", "", "MP3", ".mp3", 3, None, ["mp3"]])
def test_bad_format_is_422(client, api_key, audio_run, value):
    response = post_export(client, api_key, audio_run, body={"output_format": value})
    assert_422(response, ["body", "output_format"])
    assert task_rows(client, audio_run) == []


def test_missing_output_format_is_422(client, api_key, audio_run):
    response = post_export(client, api_key, audio_run, body={})
    assert_422(response, ["body", "output_format"], "missing")


def test_no_body_is_422(client, api_key, audio_run):
    response = client.post(f"/dub-alt-format/{audio_run}/es-es", headers=auth(api_key))
    assert_422(response, ["body"], "missing")


def test_unknown_run_is_404(client, api_key):
    response = post_export(client, api_key, 999999)
    assert response.status_code == 404
    assert response.json() == {"detail": "run not found"}


def test_language_not_in_run_is_404(client, api_key, audio_run):
    response = post_export(client, api_key, audio_run, "fr-fr")
    assert response.status_code == 404
    assert response.json() == {"detail": f"language fr-fr is not in run {audio_run}"}
    assert task_rows(client, audio_run) == []


@pytest.mark.parametrize("output_format", ["mp4", "mov", "mkv", "mxf"])
def test_video_format_on_audio_only_run_is_422(client, api_key, audio_run, output_format):
    response = post_export(client, api_key, audio_run, body={"output_format": output_format})
    error = assert_422(response, ["body", "output_format"])
    assert output_format in error["msg"]
    assert task_rows(client, audio_run) == []


def test_unknown_task_is_404(client, api_key):
    for task_id in (UNKNOWN_TASK, "nope", "1"):
        response = client.get(f"/dub-alt-format/{task_id}", headers=auth(api_key))
        assert response.status_code == 404
        assert response.json() == {"detail": "task not found"}


def test_status_with_mismatching_run_id_is_404(idle, media):
    client, key, run_id = idle
    other_run = make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = post_export(client, key, run_id).json()["task_id"]
    assert client.get(f"/dub-alt-format/{task_id}", headers=auth(key), params={"run_id": run_id}).status_code == 200
    for wrong in (other_run, 999999):
        response = client.get(f"/dub-alt-format/{task_id}", headers=auth(key), params={"run_id": wrong})
        assert response.status_code == 404
        assert response.json() == {"detail": "task not found"}


# --- workspace isolation ---------------------------------------------------------------------------------


def test_other_workspace_run_is_404(idle):
    client, key, run_id = idle
    other = new_key(client, "someone-else")
    unknown = post_export(client, other, 999999)
    response = post_export(client, other, run_id)
    assert response.status_code == 404
    assert response.json() == unknown.json() == {"detail": "run not found"}
    # not even a language check that would tell the run exists
    assert post_export(client, other, run_id, "fr-fr").json() == {"detail": "run not found"}
    assert task_rows(client, run_id) == []
    assert post_export(client, key, run_id).status_code == 200  # the owner still can


def test_other_workspace_task_is_404(idle):
    client, key, run_id = idle
    other = new_key(client, "someone-else")
    task_id = post_export(client, key, run_id).json()["task_id"]
    unknown = client.get(f"/dub-alt-format/{UNKNOWN_TASK}", headers=auth(other))
    for params in ({}, {"run_id": run_id}):
        response = client.get(f"/dub-alt-format/{task_id}", headers=auth(other), params=params)
        assert response.status_code == 404
        assert response.json() == unknown.json() == {"detail": "task not found"}


# --- concurrency -----------------------------------------------------------------------------------------


def _post_concurrently(client: TestClient, key: str, run_id: int, output_format: str, n: int = 20):
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = post_export(client, key, run_id, body={"output_format": output_format})
        except Exception as exc:  # reported below, not swallowed
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_identical_requests_share_one_task(idle, monkeypatch):
    client, key, run_id = idle
    # Widen the window between "no live task" and the insert, so the requests really collide
    # and the database's unique index (not luck in scheduling) has to make them converge.
    misses: list[str] = []
    lookup = tasks_service.live_task

    def slow_lookup(session, identity):
        task = lookup(session, identity)
        if task is None:
            misses.append(identity)
            time.sleep(0.3)
        return task

    monkeypatch.setattr(tasks_service, "live_task", slow_lookup)
    results = _post_concurrently(client, key, run_id, "wav")
    for r in results:
        assert not isinstance(r, Exception), repr(r)
        assert r.status_code == 200, r.text
    bodies = [r.json() for r in results]
    assert all(set(b) == {"task_id"} for b in bodies), bodies
    assert len({b["task_id"] for b in bodies}) == 1, bodies
    rows = task_rows(client, run_id)
    assert [row.id for row in rows] == [bodies[0]["task_id"]]
    assert len(misses) > 1, "the requests did not overlap; the test proves nothing"


def test_concurrent_identical_requests_run_one_conversion(client, api_key, video_run):
    results = _post_concurrently(client, api_key, video_run, "flac")
    task_ids, urls = set(), 0
    for r in results:
        assert not isinstance(r, Exception), repr(r)
        assert r.status_code == 200, r.text
        body = r.json()
        if "task_id" in body:
            assert set(body) == {"task_id"}
            task_ids.add(body["task_id"])
        else:
            assert set(body) == {"output_url"}
            urls += 1
    assert len(task_ids) == 1
    (task_id,) = task_ids
    assert wait_for_task(client, api_key, task_id)["status"] == "SUCCESS"
    rows = task_rows(client, video_run)
    assert len(rows) == 1
    assert rows[0].id == task_id
    assert rows[0].attempts == 1, "the conversion ran more than once"
    with client.app.state.context.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ExportTask)) == 1


# --- options (spec §3 table) -----------------------------------------------------------------------------


# --- time limit ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heavy_video(tmp_path_factory):
    """A 4 s 1280x720 source and its dub: its MXF conversion (MPEG-2 4:2:2 encode) takes ~0.5 s."""
    d = tmp_path_factory.mktemp("heavy")
    return (
        make_video(d / "heavy.mp4", SOURCE_SECONDS, size="1280x720"),
        make_tone(d / "heavy-dub.wav", SOURCE_SECONDS),
    )


@pytest.fixture
def limited(tmp_path):
    """An app whose conversions may last 0.05 s."""
    settings = Settings(data_dir=tmp_path / "slow", create_demo=False, workers=1, task_time_limit=0.05)
    with TestClient(create_app(settings)) as client:
        yield client, new_key(client, "slow"), settings


def _assert_timed_out(client, key, run_id, task_id) -> dict:
    body = wait_for_task(client, key, task_id, timeout=60)
    assert body["status"] == "TIMEOUT", body
    assert set(body) == STATUS_KEYS
    assert body["run_id"] == run_id
    assert isinstance(body["message"], str) and body["message"]
    assert body["progress"] < 100
    return body


def test_conversion_past_time_limit_is_killed(limited, heavy_video):
    client, key, settings = limited
    source, dub = heavy_video
    run_id = make_run(client, key, {"source": source, "dub_es-es": dub})
    response = post_export(client, key, run_id, body={"output_format": "mxf"})
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    _assert_timed_out(client, key, run_id, task_id)

    assert ffmpeg_children() == [], "an ffmpeg process outlived its time limit"
    # nothing published, nothing left in staging
    assert [p for p in stored_files(files_root(settings)) if "exports" in p.parts] == []
    assert stored_files(staging_root(settings)) == []
    with client.app.state.context.sessions() as session:
        row = session.get(ExportTask, task_id)
        assert row.storage_key is None and row.size is None

    # the export does not exist: asking again queues a new task
    again = post_export(client, key, run_id, body={"output_format": "mxf"})
    assert again.status_code == 200
    assert set(again.json()) == {"task_id"}
    assert again.json()["task_id"] != task_id
    _assert_timed_out(client, key, run_id, again.json()["task_id"])
    assert ffmpeg_children() == []


def test_short_conversion_past_time_limit_is_killed(limited, media):
    """The limit holds for conversions shorter than any polling interval: the fixture video's MXF
    conversion takes ~0.15 s, three times the 0.05 s limit, so it must end TIMEOUT, not SUCCESS."""
    client, key, _ = limited
    run_id = make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav})
    task_id = post_export(client, key, run_id, body={"output_format": "mxf"}).json()["task_id"]
    _assert_timed_out(client, key, run_id, task_id)
    assert ffmpeg_children() == []


# --- crash recovery --------------------------------------------------------------------------------------


def test_pending_task_is_run_after_restart(settings, media):
    with TestClient(create_app(settings, workers=False)) as first:
        key = new_key(first, "restart")
        run_id = make_run(first, key, {"source": media.video, "dub_es-es": media.dub_wav})
        task_id = post_export(first, key, run_id, body={"output_format": "mp3"}).json()["task_id"]
        assert first.get(f"/dub-alt-format/{task_id}", headers=auth(key)).json()["status"] == "PENDING"

    with TestClient(create_app(settings)) as second:
        body = wait_for_task(second, key, task_id, timeout=60)
        assert body["status"] == "SUCCESS", body
        assert body["progress"] == 100
        assert second.get(body["output_url"]).status_code == 200
        again = post_export(second, key, run_id, body={"output_format": "mp3"})
        assert set(again.json()) == {"output_url"}


def test_task_interrupted_mid_run_is_run_again(settings, media):
    """A task whose worker died half-way (PENDING, started, some progress) is run again on restart."""
    with TestClient(create_app(settings, workers=False)) as first:
        key = new_key(first, "restart")
        run_id = make_run(first, key, {"source": media.video, "dub_es-es": media.dub_wav})
        task_id = post_export(first, key, run_id, body={"output_format": "flac"}).json()["task_id"]
        with first.app.state.context.sessions.begin() as session:
            session.execute(update(ExportTask).where(ExportTask.id == task_id).values(attempts=1, progress=40))

    with TestClient(create_app(settings)) as second:
        body = wait_for_task(second, key, task_id, timeout=60)
        assert body["status"] == "SUCCESS", body
        assert body["progress"] == 100
        rows = task_rows(second, run_id)
        assert len(rows) == 1 and rows[0].attempts == 2
        assert second.get(body["output_url"]).status_code == 200
