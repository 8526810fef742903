"""Issue 11, class 7, scale-out: deleting a run stops its conversion in an ``altdub worker`` process.

The API that takes the DELETE (``altdub serve --no-workers``) and the worker converting the
run's export are separate processes on PostgreSQL, Redis and S3: the worker learns of the delete
only through its heartbeat, which finds the task row gone and kills its FFmpeg.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest

from altdub.media.synth import make_tone, make_video
from altdub.service.tasks import HEARTBEAT_SECONDS
from tests.e2e.conftest import Server, auth, import_run_id, wait_until_gone
from tests.reliability.conftest import ffmpeg_processes, files_under, request_export, wait_task
from tests.scaleout.conftest import Databases, Processes, S3Server, ScaleOut, new_prefix, pg_connect

pytestmark = [pytest.mark.scaleout, pytest.mark.e2e]

LONG_SECONDS = 16.0
REDIS_DB = 9  # not the other scale-out tests' 13: a worker of theirs would take this test's messages

# The worker's first FFmpeg (the conversion the test deletes) runs until killed, however fast the machine;
# every later one is the real FFmpeg.
HANG_ONCE = """#!/bin/sh
if mkdir "$HANG_ONCE_MARK" 2>/dev/null; then
  sleep 3600 &
  wait
fi
exec "$REAL_FFMPEG" "$@"
"""


@pytest.fixture(scope="module")
def long_media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """16 s of 640x480 MPEG-2 and its dub."""
    folder = tmp_path_factory.mktemp("long")
    video = make_video(folder / "long.mkv", LONG_SECONDS, size="640x480", video_codec="mpeg2video")
    return video, make_tone(folder / "long-es.wav", LONG_SECONDS, tone_hz=550)


@pytest.fixture
def deployment(
    postgres: Databases, own_redis_url: str, s3: S3Server, tmp_path: Path
) -> Iterator[tuple[ScaleOut, Server, Server]]:
    """One API without workers and one ``altdub worker``, each with its own data directory."""
    scale_out = ScaleOut(
        database_url=postgres.create(), s3=s3, prefix=new_prefix("lifecycle"), broker_url=own_redis_url
    )
    processes = Processes()
    try:
        api_dir, worker_dir = tmp_path / "api", tmp_path / "worker"
        api = processes.api(api_dir, scale_out.env(api_dir))
        assert api.api_key, api.text
        hang_once = tmp_path / "ffmpeg-hang-once"
        hang_once.write_text(HANG_ONCE)
        hang_once.chmod(0o755)
        ffmpeg = {
            "IMAGEIO_FFMPEG_EXE": str(hang_once),
            "REAL_FFMPEG": imageio_ffmpeg.get_ffmpeg_exe(),
            "HANG_ONCE_MARK": str(tmp_path / "hung-once"),
        }
        worker = processes.worker(worker_dir, {**scale_out.env(worker_dir), **ffmpeg})
        yield scale_out, api, worker
    finally:
        processes.stop_all()


def test_delete_stops_the_conversion_in_another_process(
    deployment: tuple[ScaleOut, Server, Server], long_media: tuple[Path, Path]
) -> None:
    scale_out, api, worker = deployment
    key = api.api_key
    assert key
    video, dub = long_media
    run_id = import_run_id(api.base_url, key, {"source": video, "dub_es-es": dub})
    task_id = request_export(api.base_url, key, run_id, {"output_format": "mp4"})
    deadline = time.monotonic() + 30
    while not (pids := [p.pid for p in ffmpeg_processes(str(worker.data_dir))]):
        assert time.monotonic() < deadline, f"the worker's FFmpeg never started:\n{worker.text}"
        time.sleep(0.05)

    started = time.monotonic()
    response = httpx.delete(f"{api.base_url}/runs/{run_id}", headers=auth(key), timeout=10)
    assert response.status_code == 204, response.text
    left = wait_until_gone(pids, timeout=HEARTBEAT_SECONDS + 2)
    stopped_in = time.monotonic() - started
    print(f"scale-out delete: the worker's FFmpeg gone {stopped_in:.2f} s after the DELETE")
    assert left == [], f"the worker's FFmpeg {left} still runs {HEARTBEAT_SECONDS + 2:g} s after the DELETE"
    assert httpx.get(f"{api.base_url}/dub-alt-format/{task_id}", headers=auth(key), timeout=10).status_code == 404
    with pg_connect(scale_out.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM export_tasks").fetchone()[0] == 0
    deadline = time.monotonic() + 5
    while "was deleted with its run" not in worker.text:
        assert time.monotonic() < deadline, worker.text[-3000:]
        time.sleep(0.05)
    assert "failed" not in worker.text and "Traceback" not in worker.text, worker.text[-3000:]
    assert [k for k in scale_out.s3.keys(scale_out.prefix) if "/exports/" in k] == []
    assert files_under(worker.data_dir / "tmp") == [], "the worker left its scratch"
    assert stat.S_IMODE(worker.data_dir.stat().st_mode) == 0o700

    # the worker goes on with the next task
    run_id = import_run_id(api.base_url, key, {"dub_es-es": dub})
    assert (
        wait_task(api.base_url, key, request_export(api.base_url, key, run_id, {"output_format": "mp3"}))["status"]
        == "SUCCESS"
    )
