"""The dashboard's own surface: the page and its files, a run's export history, a run's thumbnail."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qs, urlparse

import pytest

from altdub.media.probe import probe
from tests.api.conftest import files_root, new_key, raw_get
from tests.conftest import auth, export, make_run, wait_for_task

EXPORT_KEYS = {
    "qc",
    "task_id",
    "language",
    "languages",
    "output_format",
    "options",
    "status",
    "progress",
    "size",
    "loudness",
    "message",
    "exception_reason",
    "created_at",
    "finished_at",
    "output_url",
}
JPEG_MAGIC = b"\xff\xd8\xff"


@pytest.fixture
def video_run(client, api_key, media) -> int:
    return make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac})


@pytest.fixture
def audio_run(client, api_key, media) -> int:
    return make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})


# --- the page ------------------------------------------------------------------------------------------


def test_dashboard_page_needs_no_key(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<main" in response.text and 'src="web/app.js"' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/web/app.js", "javascript"), ("/web/style.css", "text/css"), ("/web/favicon.svg", "image/svg+xml")],
)
def test_static_files(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200
    assert content_type in response.headers["content-type"]
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"]


def test_static_files_stay_inside_the_web_folder(client):
    for path in ("/web/../api/app.py", "/web/../../pyproject.toml", "/web/%2e%2e/api/app.py"):
        status, _, body = raw_get(client, path)
        assert status == 404, (path, body[:200])
    assert client.get("/web/%2e%2e/api/app.py").status_code == 404
    assert client.get("/web/nothing-here.js").status_code == 404


def test_the_api_routes_still_win(client, api_key):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/runs", headers=auth(api_key)).status_code == 200
    assert client.get("/docs").status_code == 200


def test_new_reads_are_in_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/runs/{run_id}/exports"]
    assert "get" in paths["/runs/{run_id}/thumbnail"]
    assert "/" not in paths


# --- auth and workspaces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["exports", "thumbnail"])
def test_reads_need_a_key(client, video_run, suffix):
    assert client.get(f"/runs/{video_run}/{suffix}").json() == {"detail": "Missing x-api-key header"}
    response = client.get(f"/runs/{video_run}/{suffix}", headers=auth("altdub_not-a-key"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked API key"}


@pytest.mark.parametrize("suffix", ["exports", "thumbnail"])
def test_another_workspace_sees_nothing(client, video_run, other_key, suffix):
    theirs = client.get(f"/runs/{video_run}/{suffix}", headers=auth(other_key))
    missing = client.get(f"/runs/999999/{suffix}", headers=auth(other_key))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


def test_run_id_must_be_an_integer(client, api_key):
    assert client.get("/runs/abc/exports", headers=auth(api_key)).status_code == 422


# --- thumbnail ------------------------------------------------------------------------------------------


def test_thumbnail_is_a_small_jpeg_made_once(client, api_key, video_run, settings, tmp_path):
    first = client.get(f"/runs/{video_run}/thumbnail", headers=auth(api_key))
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    assert first.content.startswith(JPEG_MAGIC)
    assert "private" in first.headers["cache-control"]
    picture = tmp_path / "thumb.jpg"
    picture.write_bytes(first.content)
    info = probe(picture)
    assert info.video and info.video[0].width == 320
    assert info.video[0].height == 240  # the source's 4:3, kept

    stored = list(files_root(settings).rglob("thumbnail.jpg"))
    assert len(stored) == 1
    made_at = stored[0].stat().st_mtime_ns
    second = client.get(f"/runs/{video_run}/thumbnail", headers=auth(api_key))
    assert second.content == first.content
    assert stored[0].stat().st_mtime_ns == made_at  # served from storage, not made again


def test_audio_only_run_has_no_thumbnail(client, api_key, audio_run):
    response = client.get(f"/runs/{audio_run}/thumbnail", headers=auth(api_key))
    assert response.status_code == 404
    assert "no video" in response.json()["detail"]


def test_thumbnail_goes_with_its_run(client, api_key, video_run, settings):
    assert client.get(f"/runs/{video_run}/thumbnail", headers=auth(api_key)).status_code == 200
    assert client.delete(f"/runs/{video_run}", headers=auth(api_key)).status_code == 204
    assert list(files_root(settings).rglob("thumbnail.jpg")) == []
    assert client.get(f"/runs/{video_run}/thumbnail", headers=auth(api_key)).status_code == 404


# --- export history -------------------------------------------------------------------------------------


def test_no_exports_yet(client, api_key, video_run):
    response = client.get(f"/runs/{video_run}/exports", headers=auth(api_key))
    assert response.status_code == 200
    assert response.json() == []


def test_exports_newest_first_with_figures_and_signed_urls(client, api_key, video_run):
    loud = client.post(
        f"/dub-alt-format/{video_run}/es-es",
        headers=auth(api_key),
        json={"output_format": "mp3", "loudness": "ebu_r128"},
    )
    assert loud.status_code == 200, loud.text
    assert wait_for_task(client, api_key, loud.json()["task_id"])["status"] == "SUCCESS"
    assert export(client, api_key, video_run, "es-es", "mp3")["status"] == "SUCCESS"
    assert export(client, api_key, video_run, "fr-fr", "mp4")["status"] == "SUCCESS"

    entries = client.get(f"/runs/{video_run}/exports", headers=auth(api_key)).json()
    assert len(entries) == 3
    for entry in entries:
        assert set(entry) == EXPORT_KEYS
        assert entry["status"] == "SUCCESS", entry
        assert entry["progress"] == 100
        assert entry["size"] > 0
        assert entry["exception_reason"] is None
        assert datetime.fromisoformat(entry["created_at"]).tzinfo is not None
        assert datetime.fromisoformat(entry["finished_at"]).tzinfo is not None
        report = client.get(f"/runs/{video_run}/exports/{entry['task_id']}/qc", headers=auth(api_key)).json()
        failed = list(dict.fromkeys(c["name"] for c in report["checks"] if not c["passed"]))
        assert entry["qc"] == {"passed": report["passed"], "failed": failed}  # the report's verdict
    created = [datetime.fromisoformat(e["created_at"]) for e in entries]
    assert created == sorted(created, reverse=True)
    assert [(e["output_format"], e["language"]) for e in entries] == [
        ("mp4", "fr-fr"),
        ("mp3", "es-es"),
        ("mp3", "es-es"),
    ]

    normalised = next(e for e in entries if e["options"]["loudness"] == "ebu_r128")
    assert set(normalised["loudness"]) == {"integrated", "true_peak", "lra"}
    assert abs(normalised["loudness"]["integrated"] - -23.0) <= 1.0
    assert normalised["message"].startswith("loudness ebu_r128")
    plain = entries[1]
    assert plain["loudness"] is None and plain["message"] is None
    assert plain["options"]["audio_bitrate"] == 192000

    for entry in entries:
        url = urlparse(entry["output_url"])
        query = parse_qs(url.query)
        assert url.path.startswith("/files/")
        assert query["filename"] == [f"run-{video_run}_{entry['language']}.{entry['output_format']}"]
        assert query["signature"] and query["expires"]
        download = client.get(entry["output_url"])
        assert download.status_code == 200
        assert len(download.content) == entry["size"]
        tampered = entry["output_url"].replace("signature=", "signature=0")
        assert client.get(tampered).status_code == 403


def test_limit(client, api_key, video_run):
    export(client, api_key, video_run, "es-es", "wav")
    export(client, api_key, video_run, "es-es", "flac")
    entries = client.get(f"/runs/{video_run}/exports?limit=1", headers=auth(api_key)).json()
    assert [e["output_format"] for e in entries] == ["flac"]
    assert client.get(f"/runs/{video_run}/exports?limit=0", headers=auth(api_key)).status_code == 422


def test_pending_export_has_no_url(idle_client, media):
    key = new_key(idle_client, "idle")
    run_id = make_run(idle_client, key, {"source": media.video, "dub_es-es": media.dub_wav})
    answer = idle_client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json={"output_format": "mkv"})
    entries = idle_client.get(f"/runs/{run_id}/exports", headers=auth(key)).json()
    assert len(entries) == 1
    entry = entries[0]
    assert entry["task_id"] == answer.json()["task_id"]
    assert entry["status"] == "PENDING"
    assert entry["progress"] == 0
    assert entry["output_url"] is None and entry["size"] is None and entry["finished_at"] is None
    assert entry["options"]["subtitles"] == "none"


def test_exports_are_listed_per_run(client, api_key, video_run, audio_run):
    export(client, api_key, audio_run, "es-es", "mp3")
    assert client.get(f"/runs/{video_run}/exports", headers=auth(api_key)).json() == []
    assert len(client.get(f"/runs/{audio_run}/exports", headers=auth(api_key)).json()) == 1


def test_history_goes_with_its_run(client, api_key, video_run):
    export(client, api_key, video_run, "es-es", "mp3")
    assert client.delete(f"/runs/{video_run}", headers=auth(api_key)).status_code == 204
    assert client.get(f"/runs/{video_run}/exports", headers=auth(api_key)).status_code == 404
