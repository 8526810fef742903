"""Start timecode (DELIVERIES.md §3) through HTTP: kept from the source in every video export, read back with
PyAV and, independently, with MediaInfo."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.session import session_scope
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.service.keys import create_key
from tests.conftest import SOURCE_SECONDS, Media, auth, fetch_finished, make_run, required_tool, wait_for_task
from tests.e2e.conftest import ServerFactory, download, import_run_id
from tests.e2e.conftest import wait_for_task as served_wait

VIDEO_FORMATS = ("mxf", "mov", "mp4", "mkv")  # every video format of the catalogue


def make_timecoded_video(path: Path, rate: str, timecode: str, size: str = "320x240") -> Path:
    run_ffmpeg([
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={SOURCE_SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SOURCE_SECONDS}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2",
        "-timecode", timecode, file_arg(path),
    ])  # fmt: skip
    return path


@dataclass
class Studio:
    client: TestClient
    key: str
    runs: dict[str, int]
    directory: Path

    def export(self, run: str, output_format: str, **options: Any) -> Path:
        response = self.client.post(
            f"/dub-alt-format/{self.runs[run]}/es-es",
            headers=auth(self.key),
            json={"output_format": output_format, **options},
        )
        assert response.status_code == 200, response.text
        fetched = fetch_finished(self.client, self.key, response.json())
        path = self.directory / f"{run}-{output_format}-{len(list(self.directory.iterdir()))}.{output_format}"
        path.write_bytes(fetched.content)
        return path


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Studio]:
    d = tmp_path_factory.mktemp("timecode-media")
    sources = {
        "ten": make_timecoded_video(d / "ten.mov", "25", "10:00:00:00"),
        "ntsc": make_timecoded_video(d / "ntsc.mp4", "30000/1001", "01:00:00;00"),
        "plain": media.video,
    }
    settings = Settings(data_dir=d / "data", create_demo=False, workers=2, task_time_limit=120)
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.context.sessions) as session:  # type: ignore[attr-defined]
            key, _ = create_key(session, "timecode")
        runs = {
            name: make_run(client, key, {"source": path, "dub_es-es": media.dub_wav}) for name, path in sources.items()
        }
        yield Studio(client, key, runs, tmp_path_factory.mktemp("timecode-exports"))


def pyav_timecode(path: Path) -> str | None:
    """The start timecode as FFmpeg reads it: the container's tag (MXF, Matroska), else a stream's (tmcd)."""
    with av.open(str(path)) as container:
        found = [container.metadata.get("timecode"), container.metadata.get("TIMECODE")]
        found += [s.metadata.get("timecode") for s in container.streams]
    return next((tc for tc in found if tc), None)


def mediainfo_timecode(path: Path) -> str | None:
    """The start timecode as MediaInfo (not FFmpeg) reads it."""
    executable = required_tool("mediainfo", "mediainfo")
    report = json.loads(
        subprocess.run([executable, "--Output=JSON", str(path)], capture_output=True, check=True).stdout
    )
    tracks = report["media"]["track"]
    found = [t.get("TimeCode_FirstFrame") for t in tracks]
    return next((tc for tc in found if tc), None)


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
@pytest.mark.parametrize(("run", "timecode"), [("ten", "10:00:00:00"), ("ntsc", "01:00:00;00")])
def test_source_start_timecode_is_kept(studio: Studio, output_format: str, run: str, timecode: str) -> None:
    path = studio.export(run, output_format)
    assert pyav_timecode(path) == timecode
    if output_format != "mkv":  # MediaInfo reads no timecode from a Matroska tag
        assert mediainfo_timecode(path) == timecode


def test_source_without_timecode_starts_at_zero_in_mxf(studio: Studio) -> None:
    assert pyav_timecode(studio.export("plain", "mxf")) == "00:00:00:00"


@pytest.mark.parametrize("output_format", VIDEO_FORMATS)
@pytest.mark.parametrize(
    ("run", "timecode"), [("ten", "01:00:00:00"), ("ntsc", "00:59:59;29"), ("plain", "23:59:50:24")]
)
def test_start_timecode_overrides_the_source(studio: Studio, output_format: str, run: str, timecode: str) -> None:
    path = studio.export(run, output_format, start_timecode=timecode)
    assert pyav_timecode(path) == timecode
    if output_format != "mkv":
        assert mediainfo_timecode(path) == timecode


@pytest.mark.parametrize(
    ("run", "output_format", "timecode", "reason"),
    [
        ("ten", "mxf", "01:00:00:25", "frame 25 does not exist"),  # 25 fps: frames 0-24
        ("ntsc", "mp4", "01:00:00:30", "frame 30 does not exist"),
        ("ten", "mov", "01:00:00;00", "drop-frame"),  # drop-frame at 25 fps
        ("plain", "mkv", "01:00:00;00", "drop-frame"),
        ("ntsc", "mov", "01:01:00;00", "skipped"),  # 01:01:00;00 and ;01 do not exist in drop-frame
        ("ten", "mp4", "1:00:00:00", "HH:MM:SS:FF"),
        ("ten", "mxf", "01:00:60:00", "HH:MM:SS:FF"),
        ("ten", "mp4", "01:00:00", "HH:MM:SS:FF"),
        ("ten", "mp3", "01:00:00:00", "not mp3"),  # an audio format takes none
    ],
)
def test_a_bad_start_timecode_is_a_422_naming_it(
    studio: Studio, run: str, output_format: str, timecode: str, reason: str
) -> None:
    response = studio.client.post(
        f"/dub-alt-format/{studio.runs[run]}/es-es",
        headers=auth(studio.key),
        json={"output_format": output_format, "start_timecode": timecode},
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "start_timecode"], error
    assert reason in error["msg"], error


def test_start_timecode_is_part_of_the_export_identity(studio: Studio) -> None:
    """Another start timecode is another export; the source's own spelled out is not the same request as none."""
    first = studio.export("ten", "mov", start_timecode="02:00:00:00")
    again = studio.export("ten", "mov", start_timecode="02:00:00:00")
    other = studio.export("ten", "mov", start_timecode="03:00:00:00")
    assert first.read_bytes() == again.read_bytes()
    assert pyav_timecode(other) == "03:00:00:00"


# --- MXF raster ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sized(studio: Studio, tmp_path_factory: pytest.TempPathFactory, media: Media) -> dict[str, int]:
    """Runs of a 640x480 (SD) and an 8192x256 source."""
    d = tmp_path_factory.mktemp("raster-media")
    sources = {
        "sd": make_timecoded_video(d / "sd.mp4", "25", "00:00:00:00", size="640x480"),
        "wide": make_timecoded_video(d / "wide.mp4", "25", "00:00:00:00", size="8192x256"),
    }
    for name, path in sources.items():
        studio.runs[name] = make_run(studio.client, studio.key, {"source": path, "dub_es-es": media.dub_wav})
    return studio.runs


def picture(path: Path) -> tuple[int, int, list[float]]:
    """Width, height and the mean luma of the first frame's left, middle and right tenths."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        luma = frame.to_ndarray(format="gray")
    tenth = luma.shape[1] // 10
    columns = [luma[:, :tenth], luma[:, 4 * tenth : 6 * tenth], luma[:, -tenth:]]
    return frame.width, frame.height, [float(c.mean()) for c in columns]


def test_an_sd_source_is_pillarboxed_to_1080_in_mxf(studio: Studio, sized: dict[str, int]) -> None:
    width, height, (left, middle, right) = picture(studio.export("sd", "mxf"))
    assert (width, height) == (1920, 1080)
    assert left < 20 and right < 20, (left, right)  # black bars: 4:3 in 16:9 leaves 240 columns each side
    assert middle > 40, middle  # the test pattern


def test_raster_source_keeps_an_sd_picture_in_mxf(studio: Studio, sized: dict[str, int]) -> None:
    width, height, _ = picture(studio.export("sd", "mxf", raster="source"))
    assert (width, height) == (640, 480)


def test_an_8192_pixel_source_is_scaled_into_mxf(studio: Studio, sized: dict[str, int]) -> None:
    width, height, _ = picture(studio.export("wide", "mxf"))
    assert (width, height) == (1920, 1080)


def test_an_8192_pixel_source_at_its_own_raster_is_refused_with_the_reason(
    studio: Studio, sized: dict[str, int]
) -> None:
    response = studio.client.post(
        f"/dub-alt-format/{studio.runs['wide']}/es-es",
        headers=auth(studio.key),
        json={"output_format": "mxf", "raster": "source"},
    )
    assert response.status_code == 200, response.text
    body = wait_for_task(studio.client, studio.key, response.json()["task_id"])
    assert body["status"] == "ERROR", body
    assert "8192x256" in body["message"] and "raster 'broadcast'" in body["message"], body
    assert "received no packets" not in body["message"], body


@pytest.mark.parametrize(("output_format", "raster"), [("mp4", "source"), ("mkv", "broadcast"), ("mxf", "hd")])
def test_raster_is_mxf_only_and_checked(studio: Studio, output_format: str, raster: str) -> None:
    response = studio.client.post(
        f"/dub-alt-format/{studio.runs['ten']}/es-es",
        headers=auth(studio.key),
        json={"output_format": output_format, "raster": raster},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "raster"], response.text


# --- through a real ``altdub serve`` ------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_served_process_keeps_and_overrides_the_timecode(
    tmp_path_factory: pytest.TempPathFactory, media: Media
) -> None:
    """The same behaviour over real HTTP: the drop-frame source's timecode kept in MXF, overridden in MOV,
    a 640x480 MXF made 1920x1080, and a bad timecode a 422 naming it."""
    d = tmp_path_factory.mktemp("timecode-served")
    source = make_timecoded_video(d / "ntsc.mp4", "30000/1001", "01:00:00;00", size="640x480")
    factory = ServerFactory()
    try:
        server = factory(d / "server", demo=False)
        assert server.api_key, server.text
        key = str(server.api_key)
        run_id = import_run_id(server.base_url, key, {"source": source, "dub_es-es": media.dub_wav})
        url = f"{server.base_url}/dub-alt-format/{run_id}/es-es"
        cases = [
            ({"output_format": "mxf"}, "01:00:00;00"),
            ({"output_format": "mov", "start_timecode": "09:59:50;00"}, "09:59:50;00"),
        ]
        for body, expected in cases:
            answer = httpx.post(url, headers=auth(key), json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            status = served_wait(server.base_url, key, answer.json()["task_id"], timeout=120)
            assert status["status"] == "SUCCESS", status
            output = d / f"out.{body['output_format']}"
            download(str(status["output_url"]), output)
            assert pyav_timecode(output) == expected
            assert mediainfo_timecode(output) == expected
            if body["output_format"] == "mxf":
                assert picture(output)[:2] == (1920, 1080)
        refused = httpx.post(
            url, headers=auth(key), json={"output_format": "mp4", "start_timecode": "01:00:00:30"}, timeout=30
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", "start_timecode"], refused.text
    finally:
        factory.stop_all()
