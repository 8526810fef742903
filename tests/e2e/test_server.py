"""End to end against real ``altdub serve`` processes on loopback: raw HTTP, the camb-sdk client, crashes."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from camb.client import CambAI
from camb.errors import UnprocessableEntityError

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.probe import probe
from altdub.media.synth import make_tone
from tests.e2e.conftest import (
    Server,
    ServerFactory,
    auth,
    download,
    import_run,
    import_run_id,
    request_export,
    wait_for_task,
    wait_until_gone,
)

pytestmark = pytest.mark.e2e

SOURCE_SECONDS = 4.0  # tests/conftest.py's media
DURATION_TOLERANCE = 0.05  # spec §4


@pytest.fixture(scope="module")
def es_run(altdub_server: Server, media) -> int:
    """A run imported over HTTP into the module's server: English video, Spanish dub."""
    response = import_run(
        altdub_server.base_url,
        altdub_server.api_key,
        {"source": media.video, "dub_es-es": media.dub_wav},
        source_language="en-us",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert [lang["short_name"] for lang in body["languages"]] == ["es-es"]
    return body["run_id"]


# --- starting the service -------------------------------------------------------------------------


def test_first_start_prints_key_and_makes_demo_run(demo_server: Server) -> None:
    base_url, api_key, data_dir, _ = demo_server
    assert api_key and api_key.startswith("altdub_")
    lines = demo_server.output
    banner = lines.index("First start: created workspace 'default'. Its API key (shown once):")
    assert lines[banner + 1] == f"  {api_key}", "the key is on the next line, indented"
    assert (data_dir / "altdub.db").is_file()

    runs = httpx.get(f"{base_url}/runs", headers=auth(api_key), timeout=10)
    assert runs.status_code == 200, runs.text
    items = runs.json()["items"]
    assert len(items) == 1
    demo = items[0]
    assert sorted(lang["short_name"] for lang in demo["languages"]) == ["es-es", "fr-fr"]
    assert demo["source_language"]["short_name"] == "en-us"
    assert demo["has_video"] is True
    assert f"Demo run {demo['run_id']} " in demo_server.text

    assert httpx.get(f"{base_url}/runs", timeout=10).status_code == 401
    assert httpx.get(f"{base_url}/runs", headers=auth("altdub_nope"), timeout=10).status_code == 401


def test_second_start_keeps_the_key(start_altdub: ServerFactory, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_altdub(data_dir)
    assert first.api_key
    first.stop()
    assert first.process.returncode is not None

    second = start_altdub(data_dir)
    assert second.api_key is None, f"a second start printed a new key:\n{second.text}"
    assert "First start" not in second.text
    assert "altdub_" not in second.text, "no key may be printed on a second start"
    response = httpx.get(f"{second.base_url}/runs", headers=auth(first.api_key), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0  # ALTDUB_CREATE_DEMO=false: no demo run


def test_health_endpoints_need_no_key(altdub_server: Server) -> None:
    assert httpx.get(f"{altdub_server.base_url}/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{altdub_server.base_url}/readyz", timeout=10).status_code == 200
    languages = httpx.get(f"{altdub_server.base_url}/target-languages", timeout=10).json()
    assert len(languages) == 148


# --- the whole flow over HTTP ---------------------------------------------------------------------


def test_import_export_mp4_download_and_range(altdub_server: Server, es_run: int, tmp_path: Path) -> None:
    base_url, key = altdub_server.base_url, altdub_server.api_key
    answer = request_export(base_url, key, es_run, "mp4", timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if "output_url" in body:
        output_url = body["output_url"]
    else:
        assert set(body) == {"task_id"} and isinstance(body["task_id"], str)
        status = wait_for_task(base_url, key, body["task_id"])
        assert status["status"] == "SUCCESS", status
        assert status["progress"] == 100 and status["run_id"] == es_run
        output_url = status["output_url"]
        # After SUCCESS, the same request answers with the URL.
        again = request_export(base_url, key, es_run, "mp4", timeout=10)
        assert again.status_code == 200 and set(again.json()) == {"output_url"}, again.text
    assert output_url.startswith(f"{base_url}/files/")

    out = tmp_path / "out.mp4"
    response = download(output_url, out)
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == out.stat().st_size > 1000
    assert response.headers.get("etag")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment")
    assert f'filename="run-{es_run}_es-es.mp4"' in disposition

    info = probe(out)
    assert [s.codec for s in info.video] == ["h264"]
    assert [s.codec for s in info.audio] == ["aac"]
    assert info.audio[0].language == "spa"
    assert info.audio[0].default
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE

    partial = httpx.get(output_url, headers={"Range": "bytes=0-99"}, timeout=10)
    assert partial.status_code == 206, partial.status_code
    assert partial.content == out.read_bytes()[:100]
    assert partial.headers["content-range"] == f"bytes 0-99/{out.stat().st_size}"

    tampered = output_url.replace("signature=", "signature=0")
    assert httpx.get(tampered, timeout=10).status_code == 403


def test_export_errors_over_http(altdub_server: Server, es_run: int) -> None:
    base_url, key = altdub_server.base_url, altdub_server.api_key

    def post(run_id: int, language: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(f"{base_url}/dub-alt-format/{run_id}/{language}", headers=auth(key), json=body, timeout=10)

    assert post(es_run, "fr-fr", {"output_format": "mp3"}).status_code == 404  # not in the run
    assert post(es_run + 1000, "es-es", {"output_format": "mp3"}).status_code == 404
    bad_format = post(es_run, "es-es", {"output_format": "ogg"})
    assert bad_format.status_code == 422
    assert isinstance(bad_format.json()["detail"], list)
    assert post(es_run, "xx-yy", {"output_format": "mp3"}).status_code == 422
    assert httpx.get(f"{base_url}/dub-alt-format/no-such-task", headers=auth(key), timeout=10).status_code == 404


def test_concurrent_identical_requests_share_one_task(altdub_server: Server, es_run: int) -> None:
    base_url, key = altdub_server.base_url, altdub_server.api_key

    def post(_: int) -> dict[str, str]:
        response = request_export(base_url, key, es_run, "wav", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(8)))
    task_ids = {a["task_id"] for a in answers if "task_id" in a}
    assert len(task_ids) == 1, f"one conversion expected, got tasks {task_ids}"
    status = wait_for_task(base_url, key, task_ids.pop())
    assert status["status"] == "SUCCESS", status


# --- the official client, unchanged ---------------------------------------------------------------


def _sdk_export(client: CambAI, run_id: int, language: str, output_format: str, timeout: float = 60) -> str:
    """Request an export with camb-sdk and poll it with camb-sdk; returns the output URL."""
    answer = client.dub.get_dubbed_output_in_alt_format(run_id=run_id, language=language, output_format=output_format)
    data = answer if isinstance(answer, dict) else answer.model_dump(exclude_none=True)
    if data.get("output_url"):
        return data["output_url"]
    task_id = data["task_id"]
    assert isinstance(task_id, str) and task_id
    deadline = time.monotonic() + timeout
    while True:
        result = client.dub.get_dubbed_output_in_alt_format_status(task_id=task_id)
        if result.status != "PENDING":
            break
        assert time.monotonic() < deadline, f"task {task_id} still PENDING"
        time.sleep(0.2)
    assert result.status == "SUCCESS", result
    assert result.run_id == run_id
    output_url = getattr(result, "output_url", None) or (result.model_extra or {}).get("output_url")
    assert output_url, f"no output_url in {result!r}"
    return output_url


@pytest.fixture(scope="module")
def sdk(altdub_server: Server) -> CambAI:
    return CambAI(base_url=altdub_server.base_url, api_key=altdub_server.api_key)


def test_camb_sdk_export_mp3(sdk: CambAI, es_run: int, tmp_path: Path) -> None:
    url = _sdk_export(sdk, es_run, "es-es", "mp3")
    out = tmp_path / "dub.mp3"
    download(url, out)
    info = probe(out)
    assert info.format_name == "mp3"
    assert len(info.audio) == 1 and info.audio[0].codec.startswith("mp3")  # decoder: mp3 or mp3float
    assert "spa" in (info.audio[0].language, info.tags.get("language"))  # ID3v2 TLAN is file-level
    assert not info.video
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE


def test_camb_sdk_export_mp4_with_language_id(sdk: CambAI, es_run: int, tmp_path: Path) -> None:
    es_id = next(
        lang["id"] for lang in httpx.get(f"{sdk._client_wrapper.get_base_url()}/target-languages").json()
        if lang["short_name"] == "es-es"
    )  # fmt: skip
    url = _sdk_export(sdk, es_run, es_id, "mp4")
    out = tmp_path / "dub.mp4"
    download(url, out)
    info = probe(out)
    assert [s.codec for s in info.video] == ["h264"]
    assert [s.codec for s in info.audio] == ["aac"]
    assert info.audio[0].language == "spa"
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE


def test_camb_sdk_gets_422_for_bad_format(sdk: CambAI, es_run: int) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        sdk.dub.get_dubbed_output_in_alt_format(run_id=es_run, language="es-es", output_format="ogg")
    assert caught.value.status_code == 422
    with pytest.raises(UnprocessableEntityError):
        sdk.dub.get_dubbed_output_in_alt_format(run_id=es_run, language="xx-yy", output_format="mp3")


# --- crash safety ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 30 s 640x480 H.264 video and a 30 s dub: their MXF export takes a while."""
    folder = tmp_path_factory.mktemp("long")
    video = folder / "long.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=640x480:rate=25:duration=30",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=30",
                "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
                "-c:a", "aac", "-shortest", file_arg(video)])  # fmt: skip
    return video, make_tone(folder / "long-es.wav", 30.0, tone_hz=550)


def _task_row(data_dir: Path, task_id: str) -> tuple[str, int]:
    with sqlite3.connect(data_dir / "altdub.db") as db:
        row = db.execute("SELECT status, attempts FROM export_tasks WHERE id = ?", (task_id,)).fetchone()
    assert row is not None, f"task {task_id} is not in the database"
    return row


def test_task_survives_a_killed_server(
    start_altdub: ServerFactory, tmp_path: Path, long_media: tuple[Path, Path]
) -> None:
    data_dir = tmp_path / "data"
    first = start_altdub(data_dir)
    key = first.api_key
    assert key
    video, dub = long_media
    run_id = import_run_id(first.base_url, key, {"source": video, "dub_es-es": dub})

    answer = request_export(first.base_url, key, run_id, "mxf", timeout=10)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task_id"]
    deadline = time.monotonic() + 20
    while not first.child_pids() and time.monotonic() < deadline:  # kill mid-conversion
        time.sleep(0.02)
    ffmpeg_pids = first.crash()
    assert ffmpeg_pids, "FFmpeg had not started: the kill was not mid-conversion"
    assert wait_until_gone(ffmpeg_pids) == [], "FFmpeg outlived the killed server"
    status, _ = _task_row(data_dir, task_id)
    assert status == "PENDING", "the conversion finished before the kill: the test proves nothing"

    second = start_altdub(data_dir)
    assert second.api_key is None
    final = wait_for_task(second.base_url, key, task_id, timeout=90)
    assert final["status"] == "SUCCESS", final
    assert final["run_id"] == run_id
    assert _task_row(data_dir, task_id)[0] == "SUCCESS"

    out = tmp_path / "out.mxf"
    response = download(final["output_url"], out)
    assert f'filename="run-{run_id}_es-es.mxf"' in response.headers["content-disposition"]
    info = probe(out)
    assert info.format_name == "mxf"
    assert [s.codec for s in info.video] == ["mpeg2video"]
    assert info.audio and all(s.codec == "pcm_s24le" and s.sample_rate == 48000 for s in info.audio)
    assert abs(info.duration - 30.0) <= DURATION_TOLERANCE

    # The same request now answers the URL; no second conversion is started.
    again = request_export(second.base_url, key, run_id, "mxf", timeout=10)
    assert again.status_code == 200 and set(again.json()) == {"output_url"}, again.text
