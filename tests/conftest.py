"""Shared fixtures: FFmpeg-generated media, an app on a fresh data directory, API keys."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.session import session_scope
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.synth import make_tone, make_video
from altdub.service.keys import create_key
from tests.receiver import Receiver

SOURCE_SECONDS = 4.0


@dataclass(frozen=True)
class Media:
    video: Path  # 4 s H.264 + AAC stereo, 320x240, 25 fps
    dub_wav: Path  # 4 s s16 stereo WAV, 48 kHz
    dub_flac: Path  # 4 s FLAC stereo
    dub_s24: Path  # 4 s 24-bit WAV
    dub_short_ok: Path  # 3.95 s: within 2 %, needs padding
    dub_too_short: Path  # 3.0 s: 25 % short
    audio_source: Path  # 4 s mp3, for audio-only runs
    mpeg2_video: Path  # 4 s MPEG-2 4:2:0 1280x720 in MXF (a broadcast raster: copied into MXF and MOV)
    vp9_video: Path  # 4 s VP9 in Matroska (MP4 and MOV re-encode it)
    silent_video: Path  # video without audio
    garbage: Path  # random bytes named .mp4
    text: Path  # a text file


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("media")
    silent = d / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", file_arg(silent)])  # fmt: skip
    garbage = d / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 64)
    text = d / "notes.txt"
    text.write_text("not media\n" * 100)
    return Media(
        video=make_video(d / "source.mp4", SOURCE_SECONDS),
        dub_wav=make_tone(d / "dub-es.wav", SOURCE_SECONDS, tone_hz=550),
        dub_flac=make_tone(d / "dub-fr.flac", SOURCE_SECONDS, tone_hz=660, codec="flac"),
        dub_s24=make_tone(d / "dub-de.wav", SOURCE_SECONDS, tone_hz=770, codec="pcm_s24le"),
        dub_short_ok=make_tone(d / "dub-short.wav", 3.95, tone_hz=880),
        dub_too_short=make_tone(d / "dub-3s.wav", 3.0),
        audio_source=make_tone(d / "podcast.mp3", SOURCE_SECONDS, tone_hz=330, codec="libmp3lame"),
        mpeg2_video=make_video(
            d / "source-mpeg2.mxf", SOURCE_SECONDS, size="1280x720", video_codec="mpeg2video", audio_codec="pcm_s16le"
        ),
        vp9_video=make_video(d / "source-vp9.mkv", SOURCE_SECONDS, video_codec="libvpx-vp9", audio_codec="libopus"),
        silent_video=silent,
        garbage=garbage,
        text=text,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", create_demo=False, workers=2, task_time_limit=120)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _key(client: TestClient, workspace: str) -> str:
    context = client.app.state.context  # type: ignore[attr-defined]
    with session_scope(context.sessions) as session:
        raw, _ = create_key(session, workspace)
    return raw


@pytest.fixture
def api_key(client: TestClient) -> str:
    return _key(client, "first")


@pytest.fixture
def other_key(client: TestClient) -> str:
    return _key(client, "second")


def auth(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def upload(client: TestClient, key: str, files: dict[str, Path], source_language: str = "en-us", **fields: str) -> Any:
    """POST /runs with the given files; returns the response."""
    handles = {name: (path.name, path.open("rb")) for name, path in files.items()}
    try:
        return client.post(
            "/runs", headers=auth(key), data={"source_language": source_language, **fields}, files=handles
        )
    finally:
        for _, fh in handles.values():
            fh.close()


def make_run(client: TestClient, key: str, files: dict[str, Path], **fields: str) -> int:
    response = upload(client, key, files, **fields)
    assert response.status_code == 201, response.text
    return response.json()["run_id"]


def wait_for_task(client: TestClient, key: str, task_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll until the task leaves PENDING; asserts progress never goes down."""
    deadline = time.monotonic() + timeout
    last_progress = 0
    while time.monotonic() < deadline:
        body = client.get(f"/dub-alt-format/{task_id}", headers=auth(key)).json()
        assert body["progress"] >= last_progress, "progress went down"
        last_progress = body["progress"]
        if body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still PENDING after {timeout} s")


def export(client: TestClient, key: str, run_id: int, language: str, output_format: str) -> dict[str, Any]:
    """Request an export and wait for it; returns the final task status."""
    response = client.post(
        f"/dub-alt-format/{run_id}/{language}", headers=auth(key), json={"output_format": output_format}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    if "output_url" in body:
        return {"status": "SUCCESS", "output_url": body["output_url"], "progress": 100}
    return wait_for_task(client, key, body["task_id"])


def fetch_finished(client: TestClient, key: str, answer: dict[str, Any]) -> Any:
    """The download of an export a POST answered (its URL, or a task waited for), checked SUCCESS and 200."""
    status = wait_for_task(client, key, answer["task_id"]) if "task_id" in answer else answer
    assert status.get("status", "SUCCESS") == "SUCCESS", status
    response = client.get(status["output_url"])
    assert response.status_code == 200, response.text
    return response


def download(client: TestClient, url: str, destination: Path) -> Path:
    response = client.get(url)
    assert response.status_code == 200, response.text
    destination.write_bytes(response.content)
    return destination


def required_tool(name: str, package: str) -> str:
    """The path of ``name``, a reader of outputs independent of FFmpeg (mediainfo, mkvmerge).

    Without it the test is skipped saying why (``-ra`` lists the reason), except under ``CI=true``,
    where it fails: ``.ci/run`` installs the package, so there it must be present.
    """
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (apt-get install -y {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: this test must run; .ci/run installs it)", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port (tests/receiver.py), answering 204 until told otherwise."""
    started = Receiver().start()
    yield started
    started.stop()
