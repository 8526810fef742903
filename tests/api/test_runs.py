"""Spec §5: importing runs (every file probed, nothing stored on failure), listing, reading, deleting."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask, Run, RunFile
from altdub.media.synth import make_tone
from tests.api.conftest import files_root, new_key, staging_root, stored_files
from tests.conftest import SOURCE_SECONDS, auth, export, make_run, upload, wait_for_task

ES = {"id": 54, "language": "Spanish (Spain)", "short_name": "es-es"}
EN = {"id": 1, "language": "English (United States)", "short_name": "en-us"}


def post_run(
    client: TestClient,
    key: str,
    files: list[tuple[str, str, bytes]],
    data: dict[str, str] | None = None,
):
    """POST /runs with the parts exactly as given: (field, filename, content), repeats allowed."""
    return client.post(
        "/runs",
        headers=auth(key),
        data=data if data is not None else {"source_language": "en-us"},
        files=[(field, (filename, content)) for field, filename, content in files],
    )


def part(field: str, path: Path) -> tuple[str, str, bytes]:
    return field, path.name, path.read_bytes()


def count_rows(client: TestClient, model: type) -> int:
    with client.app.state.context.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def assert_nothing_stored(client: TestClient, key: str, settings: Settings) -> None:
    assert count_rows(client, Run) == 0
    assert count_rows(client, RunFile) == 0
    listing = client.get("/runs", headers=auth(key)).json()
    assert listing["total"] == 0 and listing["items"] == []
    assert stored_files(files_root(settings)) == []
    assert stored_files(staging_root(settings)) == []


def assert_422(response, field: str, *fragments: str) -> dict:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and len(detail) == 1, detail
    error = detail[0]
    assert error["loc"] == ["body", field], error
    assert isinstance(error["type"], str) and error["type"]
    for fragment in fragments:
        assert fragment in error["msg"], error
    return error


# --- import: success ---------------------------------------------------------------------------------


def test_import_video_run(client, api_key, media, settings):
    response = upload(
        client,
        api_key,
        {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac},
        name="Episode 1",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body["run_id"], int)
    assert body["name"] == "Episode 1"
    assert body["has_video"] is True
    assert body["duration"] == pytest.approx(SOURCE_SECONDS, abs=0.05)
    assert body["source_language"] == EN
    fr = next(lang for lang in client.get("/target-languages").json() if lang["short_name"] == "fr-fr")
    assert sorted(body["languages"], key=lambda lang: lang["id"]) == sorted([ES, fr], key=lambda lang: lang["id"])
    for lang in body["languages"]:
        assert set(lang) == {"id", "language", "short_name"}
    roles = sorted(f["role"] for f in body["files"])
    assert roles == ["dub", "dub", "source"]

    # stored: one file per input, nothing left in staging
    assert len(stored_files(files_root(settings))) == 3
    assert stored_files(staging_root(settings)) == []

    got = client.get(f"/runs/{body['run_id']}", headers=auth(api_key))
    assert got.status_code == 200
    assert got.json() == body


def test_import_audio_only_run(client, api_key, media):
    response = upload(client, api_key, {"source": media.audio_source, "dub_54": media.dub_wav})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["has_video"] is False
    assert body["languages"] == [ES]
    assert body["duration"] == pytest.approx(SOURCE_SECONDS, abs=0.1)


def test_import_dubs_alone(client, api_key, media):
    """An audio-only run may be made from dubs alone (no source)."""
    response = upload(client, api_key, {"dub_es-es": media.dub_wav})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["has_video"] is False
    assert body["languages"] == [ES]


def test_import_dub_within_two_percent(client, api_key, media):
    response = upload(client, api_key, {"source": media.video, "dub_es-es": media.dub_short_ok})
    assert response.status_code == 201, response.text


# --- import: every bad input is a 422 naming the field, and nothing is stored --------------------------


def test_garbage_source(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.garbage), part("dub_es-es", media.dub_wav)])
    assert_422(response, "source", "not a media file")
    assert_nothing_stored(client, api_key, settings)


def test_text_file_as_dub(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.video), part("dub_es-es", media.text)])
    assert_422(response, "dub_es-es", "not a media file")
    assert_nothing_stored(client, api_key, settings)


def test_source_without_audio(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.silent_video), part("dub_es-es", media.dub_wav)])
    assert_422(response, "source", "no audio stream")
    assert_nothing_stored(client, api_key, settings)


def test_dub_too_short(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.video), part("dub_es-es", media.dub_too_short)])
    assert_422(response, "dub_es-es", "2 %")
    assert_nothing_stored(client, api_key, settings)


def test_dub_too_short_after_a_good_dub(client, api_key, media, settings):
    """A bad file after good ones: the good ones are not stored either."""
    response = post_run(
        client,
        api_key,
        [
            part("source", media.video),
            part("dub_fr-fr", media.dub_flac),
            part("dub_es-es", media.dub_too_short),
        ],
    )
    assert_422(response, "dub_es-es", "2 %")
    assert_nothing_stored(client, api_key, settings)


def test_unknown_dub_language(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.video), part("dub_xx-yy", media.dub_wav)])
    assert_422(response, "dub_xx-yy", "xx-yy")
    assert_nothing_stored(client, api_key, settings)


@pytest.mark.parametrize("field", ["dub_137", "dub_", "dub"])
def test_bad_dub_field_names(client, api_key, media, settings, field):
    response = post_run(client, api_key, [part("source", media.video), part(field, media.dub_wav)])
    assert_422(response, field)
    assert_nothing_stored(client, api_key, settings)


def test_missing_source_language(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.video), part("dub_es-es", media.dub_wav)], data={})
    error = assert_422(response, "source_language")
    assert error["type"] == "missing"
    assert_nothing_stored(client, api_key, settings)


@pytest.mark.parametrize("value", ["xx-yy", "137", "english"])
def test_invalid_source_language(client, api_key, media, settings, value):
    response = post_run(
        client,
        api_key,
        [part("source", media.video), part("dub_es-es", media.dub_wav)],
        data={"source_language": value},
    )
    assert_422(response, "source_language", value)
    assert_nothing_stored(client, api_key, settings)


def test_no_dub(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.video)])
    error = assert_422(response, "dub_<language>")
    assert error["type"] == "missing"
    assert_nothing_stored(client, api_key, settings)


def test_unknown_text_field(client, api_key, media, settings):
    response = post_run(
        client,
        api_key,
        [part("source", media.video), part("dub_es-es", media.dub_wav)],
        data={"source_language": "en-us", "extra": "x"},
    )
    assert_422(response, "extra", "unknown field")
    assert_nothing_stored(client, api_key, settings)


def test_unknown_file_field(client, api_key, media, settings):
    response = post_run(
        client,
        api_key,
        [part("source", media.video), part("dub_es-es", media.dub_wav), part("extra", media.dub_wav)],
    )
    assert_422(response, "extra", "unknown file field")
    assert_nothing_stored(client, api_key, settings)


def test_same_language_twice(client, api_key, media, settings):
    response = post_run(
        client,
        api_key,
        [part("source", media.video), part("dub_54", media.dub_wav), part("dub_es-es", media.dub_flac)],
    )
    assert_422(response, "dub_es-es", "dub_54")
    assert_nothing_stored(client, api_key, settings)


def test_same_field_twice(client, api_key, media, settings):
    response = post_run(
        client,
        api_key,
        [part("source", media.video), part("dub_es-es", media.dub_wav), part("dub_es-es", media.dub_flac)],
    )
    assert_422(response, "dub_es-es")
    assert_nothing_stored(client, api_key, settings)


def test_two_sources(client, api_key, media, settings):
    response = post_run(
        client,
        api_key,
        [part("source", media.video), part("source", media.video), part("dub_es-es", media.dub_wav)],
    )
    assert_422(response, "source")
    assert_nothing_stored(client, api_key, settings)


def test_zero_length_file(client, api_key, media, settings):
    response = post_run(client, api_key, [part("source", media.video), ("dub_es-es", "empty.wav", b"")])
    assert_422(response, "dub_es-es", "empty")
    assert_nothing_stored(client, api_key, settings)


def test_zero_length_source(client, api_key, media, settings):
    response = post_run(client, api_key, [("source", "empty.mp4", b""), part("dub_es-es", media.dub_wav)])
    assert_422(response, "source", "empty")
    assert_nothing_stored(client, api_key, settings)


# --- size limit ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A 4 s source and dub small enough for a 50 kB limit (mono 8 kHz FLAC)."""
    d = tmp_path_factory.mktemp("tiny")
    return (
        make_tone(d / "tiny-source.flac", SOURCE_SECONDS, tone_hz=300, sample_rate=8000, channels=1, codec="flac"),
        make_tone(d / "tiny-dub.flac", SOURCE_SECONDS, tone_hz=500, sample_rate=8000, channels=1, codec="flac"),
    )


@pytest.fixture
def small_limit(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "small", create_demo=False, workers=1, task_time_limit=60, max_upload_bytes=50_000
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client, new_key(test_client, "small"), settings


@pytest.mark.parametrize("big_field", ["source", "dub_es-es"])
def test_over_size_limit_is_413(small_limit, media, tiny, big_field):
    client, key, settings = small_limit
    tiny_source, tiny_dub = tiny
    assert tiny_source.stat().st_size < 50_000 and tiny_dub.stat().st_size < 50_000
    assert media.dub_wav.stat().st_size > 50_000
    files = {"source": tiny_source, "dub_es-es": tiny_dub}
    files[big_field] = media.dub_wav
    response = post_run(client, key, [part(field, path) for field, path in files.items()])
    assert response.status_code == 413, response.text
    body = response.json()
    assert set(body) == {"detail"}
    assert big_field in body["detail"]
    assert_nothing_stored(client, key, settings)


def test_under_size_limit_is_accepted(small_limit, tiny):
    client, key, settings = small_limit
    tiny_source, tiny_dub = tiny
    response = post_run(client, key, [part("source", tiny_source), part("dub_es-es", tiny_dub)])
    assert response.status_code == 201, response.text
    assert len(stored_files(files_root(settings))) == 2


# --- list, read, delete ----------------------------------------------------------------------------------


def test_list_runs_paginated(client, api_key, media):
    ids = [make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav}) for _ in range(3)]

    default = client.get("/runs", headers=auth(api_key)).json()
    assert set(default) == {"items", "page", "page_size", "total"}
    assert default["page"] == 1 and default["page_size"] == 50 and default["total"] == 3
    assert sorted(item["run_id"] for item in default["items"]) == sorted(ids)

    pages = []
    for page in (1, 2, 3):
        response = client.get("/runs", headers=auth(api_key), params={"page": page, "page_size": 2})
        assert response.status_code == 200
        body = response.json()
        assert body["page"] == page and body["page_size"] == 2 and body["total"] == 3
        pages.append([item["run_id"] for item in body["items"]])
    assert [len(p) for p in pages] == [2, 1, 0]
    seen = pages[0] + pages[1]
    assert sorted(seen) == sorted(ids), "pages overlap or miss a run"
    assert seen == sorted(ids, reverse=True), "runs are listed newest first"


@pytest.mark.parametrize(("param", "value"), [("page", 0), ("page", -1), ("page_size", 0), ("page_size", 201)])
def test_list_runs_bad_paging(client, api_key, param, value):
    response = client.get("/runs", headers=auth(api_key), params={param: value})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == [["query", param]]


def test_get_unknown_run(client, api_key):
    response = client.get("/runs/999999", headers=auth(api_key))
    assert response.status_code == 404
    assert response.json() == {"detail": "run not found"}


def test_delete_run_removes_files_and_exports(client, api_key, media, settings):
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    status = export(client, api_key, run_id, "es-es", "wav")
    assert status["status"] == "SUCCESS", status
    task_id = client.post(
        f"/dub-alt-format/{run_id}/es-es", headers=auth(api_key), json={"output_format": "flac"}
    ).json()["task_id"]
    assert wait_for_task(client, api_key, task_id)["status"] == "SUCCESS"
    url = status["output_url"]
    assert client.get(url).status_code == 200

    root = files_root(settings)
    before = stored_files(root)
    assert len(before) == 4  # source, dub, two exports
    assert any("exports" in p.relative_to(root).parts for p in before)

    response = client.delete(f"/runs/{run_id}", headers=auth(api_key))
    assert response.status_code == 204
    assert response.content == b""

    assert client.get(f"/runs/{run_id}", headers=auth(api_key)).status_code == 404
    again = client.delete(f"/runs/{run_id}", headers=auth(api_key))
    assert again.status_code == 404
    assert again.json() == {"detail": "run not found"}
    assert client.get("/runs", headers=auth(api_key)).json()["total"] == 0

    assert stored_files(root) == []
    assert count_rows(client, ExportTask) == 0
    assert count_rows(client, RunFile) == 0
    assert client.get(f"/dub-alt-format/{task_id}", headers=auth(api_key)).status_code == 404
    assert client.get(url).status_code == 404  # the signature is still valid; the file is gone


def test_delete_keeps_other_runs(client, api_key, media, settings):
    keep = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    drop = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    kept_files = stored_files(files_root(settings))
    assert len(kept_files) == 4
    assert client.delete(f"/runs/{drop}", headers=auth(api_key)).status_code == 204
    assert len(stored_files(files_root(settings))) == 2
    assert client.get(f"/runs/{keep}", headers=auth(api_key)).status_code == 200
    assert export(client, api_key, keep, "es-es", "mp3")["status"] == "SUCCESS"


# --- workspace isolation ---------------------------------------------------------------------------------


def test_other_workspace_cannot_see_run(client, api_key, other_key, media, settings):
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    unknown = client.get("/runs/999999", headers=auth(other_key))

    got = client.get(f"/runs/{run_id}", headers=auth(other_key))
    assert got.status_code == 404
    assert got.json() == unknown.json() == {"detail": "run not found"}

    deleted = client.delete(f"/runs/{run_id}", headers=auth(other_key))
    assert deleted.status_code == 404
    assert deleted.json() == {"detail": "run not found"}

    listing = client.get("/runs", headers=auth(other_key)).json()
    assert listing["total"] == 0 and listing["items"] == []

    # still there for its owner, files and all
    assert client.get(f"/runs/{run_id}", headers=auth(api_key)).status_code == 200
    assert len(stored_files(files_root(settings))) == 2
    assert client.get("/runs", headers=auth(api_key)).json()["total"] == 1


def test_import_needs_multipart(client, api_key, settings):
    response = client.post("/runs", headers=auth(api_key), json={"source_language": "en-us"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == [["header", "content-type"]]
    assert_nothing_stored(client, api_key, settings)
