"""Issue 11, class 7 (clean stop and lifecycle), against real ``altdub serve`` processes over HTTP.

- SIGTERM stops the server within ``ALTDUB_SHUTDOWN_GRACE`` (plus a little) even with a client
  stalled half-way through an upload; a running conversion is stopped and resumes at the next
  start; nothing staged is left.
- Deleting a run stops its running export's FFmpeg at once: no FFmpeg, no task, no file.
- Run ids are never reused, by any workspace, across restarts and across the migration.
- Signed URLs never come from the request's Host header.
- Signatures never appear in the access log.
- Nothing the server creates is readable by other users.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from alembic import command

from altdub.db.migrate import alembic_config
from altdub.media.synth import make_tone, make_video
from tests.e2e.conftest import (
    ALTDUB,
    Server,
    ServerFactory,
    auth,
    clean_env,
    create_key,
    import_run_id,
    wait_until_gone,
)
from tests.reliability.conftest import ffmpeg_processes, files_under, request_export, task_row, wait_task
from tests.reliability.test_crash import (
    HUNG_FFMPEG,
    LONG_SECONDS,
    MiB,
    StreamedUpload,
    silence,
    staged_bytes,
    wait_for,
    wav_header,
)

pytestmark = pytest.mark.e2e

GRACE = 2.0  # ALTDUB_SHUTDOWN_GRACE of the servers below: short, so that the tests are
SLACK = 3.0  # what stopping may take past the grace: cancelling requests, stopping FFmpeg, closing


@pytest.fixture(scope="module")
def long_media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """16 s of 640x480 MPEG-2 and its dub: an mp4 export encodes H.264 for seconds (as in test_crash)."""
    folder = tmp_path_factory.mktemp("long")
    video = make_video(folder / "long.mkv", LONG_SECONDS, size="640x480", video_codec="mpeg2video")
    return video, make_tone(folder / "long-es.wav", LONG_SECONDS, tone_hz=550)


def exports_stored(data_dir: Path) -> list[Path]:
    return [p for p in files_under(data_dir / "files") if "exports" in p.parts]


def sigterm_and_time(server: Server, timeout: float) -> float:
    """SIGTERM the server; seconds until it exited (fails the test past ``timeout``)."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"altdub serve still running {timeout:g} s after SIGTERM (grace {GRACE:g} s)")
    return time.monotonic() - started


# --- SIGTERM ------------------------------------------------------------------------------------------------


def stalled_upload(server: Server, media: Any, where: str) -> StreamedUpload:
    """An import that stops sending, mid-file or between two parts, and keeps its connection open."""
    key = server.api_key
    assert key
    if where == "mid-file":
        size = 200 * MiB
        parts: list[tuple[str, str | None, Any]] = [
            ("source_language", None, b"en-us"),
            ("dub_es-es", "dub.wav", iter([wav_header(size), *silence(size)])),
        ]
        return StreamedUpload(server.base_url, key, parts, pause_after=8 * MiB)
    parts = [("source_language", None, b"en-us"), ("dub_es-es", "dub.wav", media.dub_wav.read_bytes())]
    return StreamedUpload(server.base_url, key, parts, pause_after=media.dub_wav.stat().st_size)


@pytest.mark.parametrize("where", ["mid-file", "between-parts"])
@pytest.mark.parametrize("converting", [False, True], ids=["idle", "converting"])
def test_sigterm_with_a_stalled_upload_stops_within_the_grace(
    servers: ServerFactory,
    tmp_path: Path,
    media: Any,
    long_media: tuple[Path, Path],
    hung_ffmpeg: dict[str, str],
    where: str,
    converting: bool,
) -> None:
    data_dir = tmp_path / "data"
    # A conversion that never ends on its own: still running when the grace is over, however fast the machine.
    hang = hung_ffmpeg if converting else {}
    server = servers(data_dir, env={"ALTDUB_SHUTDOWN_GRACE": str(GRACE), **hang})
    key = server.api_key
    assert key
    task_id = None
    if converting:
        video, dub = long_media
        run_id = import_run_id(server.base_url, key, {"source": video, "dub_es-es": dub})
        task_id = request_export(server.base_url, key, run_id, {"output_format": "mp4"})
        wait_for(lambda: ffmpeg_processes(str(data_dir)), 20, "the conversion's FFmpeg")
    upload = stalled_upload(server, media, where)
    thread = upload.start()
    scratch = data_dir / "tmp" / str(server.process.pid)
    try:
        assert upload.paused.wait(30), "the upload never reached its pause"
        wait_for(lambda: staged_bytes(scratch) > 0, 20, "the server staging the upload")
        ffmpeg_pids = [p.pid for p in ffmpeg_processes(str(data_dir))]
        assert bool(ffmpeg_pids) == converting
        elapsed = sigterm_and_time(server, GRACE + SLACK + 10)
    finally:
        upload.resume.set()
        thread.join(timeout=30)
    print(f"SIGTERM, upload stalled {where}, converting={converting}: exited in {elapsed:.2f} s (grace {GRACE:g} s)")
    assert elapsed <= GRACE + SLACK, f"exited {elapsed:.1f} s after SIGTERM, grace {GRACE:g} s"
    assert server.process.returncode in (0, -signal.SIGTERM), server.text[-2000:]  # uvicorn re-raises the signal
    assert "Application shutdown complete." in server.text, server.text[-2000:]
    assert upload.response is None or upload.response.status_code >= 400, upload.response
    assert wait_until_gone(ffmpeg_pids) == [] and ffmpeg_processes(str(data_dir)) == []
    assert not scratch.exists() or files_under(scratch) == [], f"staged files left: {files_under(scratch)}"
    with closing(sqlite3.connect(data_dir / "altdub.db")) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == (1 if converting else 0)
    if task_id is not None:  # the conversion was stopped, not failed: it resumes at the next start
        row = task_row(data_dir, task_id)
        assert row is not None and row["status"] == "PENDING", row
        assert exports_stored(data_dir) == []
        again = servers(data_dir, env={"ALTDUB_SHUTDOWN_GRACE": str(GRACE)})
        final = wait_task(again.base_url, key, task_id, timeout=90)
        assert final["status"] == "SUCCESS", final
        assert final["output_url"].startswith(again.base_url + "/files/")


def test_sigterm_during_a_conversion_alone_stops_at_once(
    servers: ServerFactory, tmp_path: Path, long_media: tuple[Path, Path]
) -> None:
    """No open request: nothing to wait for; the conversion is stopped, not waited for."""
    data_dir = tmp_path / "data"
    server = servers(data_dir, env={"ALTDUB_SHUTDOWN_GRACE": "30"})
    key = server.api_key
    assert key
    video, dub = long_media
    run_id = import_run_id(server.base_url, key, {"source": video, "dub_es-es": dub})
    task_id = request_export(server.base_url, key, run_id, {"output_format": "mp4"})
    pids = [p.pid for p in wait_for(lambda: ffmpeg_processes(str(data_dir)), 20, "the conversion's FFmpeg")]
    elapsed = sigterm_and_time(server, 15)
    print(f"SIGTERM during a conversion: exited in {elapsed:.2f} s")
    assert elapsed <= SLACK, f"{elapsed:.1f} s to stop with a 30 s grace: the conversion was waited for"
    assert wait_until_gone(pids) == []
    assert task_row(data_dir, task_id)["status"] == "PENDING"
    assert files_under(data_dir / "tmp") == [] and exports_stored(data_dir) == []


# --- deleting a run while its export runs ------------------------------------------------------------------


@pytest.fixture
def hung_ffmpeg(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment that makes every FFmpeg of the server hang (test_crash's script); kills leftovers."""
    script = tmp_path / "ffmpeg-hung"
    script.write_text(HUNG_FFMPEG)
    script.chmod(0o755)
    pid_file = tmp_path / "hung.pids"
    pid_file.touch()
    yield {"IMAGEIO_FFMPEG_EXE": str(script), "HUNG_PIDS": str(pid_file)}
    for pid in wait_until_gone([int(line) for line in pid_file.read_text().split()], timeout=0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def hung_pids(env: dict[str, str]) -> list[int]:
    return [int(line) for line in Path(env["HUNG_PIDS"]).read_text().split()]


def assert_deleted_and_stopped(server: Server, key: str, run_id: int, task_id: str, pids: list[int]) -> float:
    """DELETE the run; returns the seconds until none of ``pids`` was alive (at most 3)."""
    started = time.monotonic()
    response = httpx.delete(f"{server.base_url}/runs/{run_id}", headers=auth(key), timeout=10)
    assert response.status_code == 204, response.text
    left = wait_until_gone(pids, timeout=3)
    stopped_in = time.monotonic() - started
    assert left == [], f"FFmpeg {left} of the deleted run still runs 3 s after the DELETE"
    assert ffmpeg_processes(str(server.data_dir)) == []
    status = httpx.get(f"{server.base_url}/dub-alt-format/{task_id}", headers=auth(key), timeout=10)
    assert status.status_code == 404, status.text
    assert task_row(server.data_dir, task_id) is None
    time.sleep(0.5)  # let the worker thread finish unwinding: it must publish nothing and leave no scratch
    assert exports_stored(server.data_dir) == [] and files_under(server.data_dir / "files") == []
    assert [p for p in files_under(server.data_dir / "tmp") if f"export-{task_id}" in str(p)] == []
    assert "failed" not in server.text and "Traceback" not in server.text, server.text[-3000:]
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    return stopped_in


def test_delete_during_a_real_encode_stops_its_ffmpeg(
    servers: ServerFactory, tmp_path: Path, long_media: tuple[Path, Path]
) -> None:
    data_dir = tmp_path / "data"
    server = servers(data_dir)
    key = server.api_key
    assert key
    video, dub = long_media
    run_id = import_run_id(server.base_url, key, {"source": video, "dub_es-es": dub})
    task_id = request_export(server.base_url, key, run_id, {"output_format": "mp4"})
    scratch = data_dir / "tmp" / str(server.process.pid)
    wait_for(
        lambda: [p for p in scratch.glob(f"export-{task_id}-*/output.mp4") if p.stat().st_size > 0],
        20,
        "FFmpeg writing the output",
    )
    pids = [p.pid for p in ffmpeg_processes(str(data_dir))]
    assert pids, "FFmpeg was not running"
    stopped_in = assert_deleted_and_stopped(server, key, run_id, task_id, pids)
    print(f"delete during an x264 encode: FFmpeg gone {stopped_in:.2f} s after the DELETE")
    # the service goes on: a new run exports normally
    run_id = import_run_id(server.base_url, key, {"source": video, "dub_es-es": dub})
    assert (
        wait_task(server.base_url, key, request_export(server.base_url, key, run_id, {"output_format": "mp3"}))[
            "status"
        ]
        == "SUCCESS"
    )


@pytest.mark.parametrize("options", [{}, {"loudness": "ebu_r128"}], ids=["encode", "loudness-measurement"])
def test_delete_during_a_hung_ffmpeg_stops_it(
    servers: ServerFactory, tmp_path: Path, media: Any, hung_ffmpeg: dict[str, str], options: dict[str, Any]
) -> None:
    """Every FFmpeg hangs: without the delete's cancel, the task would run to its 1-hour limit."""
    data_dir = tmp_path / "data"
    server = servers(data_dir, env=hung_ffmpeg)
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = request_export(server.base_url, key, run_id, {"output_format": "flac", **options})
    wait_for(lambda: len(hung_pids(hung_ffmpeg)) >= 2, 10, "the hung FFmpeg to start")
    stopped_in = assert_deleted_and_stopped(server, key, run_id, task_id, hung_pids(hung_ffmpeg))
    print(f"delete during a hung FFmpeg {options}: gone {stopped_in:.2f} s after the DELETE")


def long_polls(base_url: str, key: str, task_id: str, count: int) -> tuple[list[threading.Thread], list[Any]]:
    """``count`` threads, each long-polling the task for up to 30 s; their answers (or errors) land in the list."""
    answers: list[Any] = []

    def poll() -> None:
        try:
            answers.append(
                httpx.get(f"{base_url}/dub-alt-format/{task_id}?wait=30", headers=auth(key), timeout=60).status_code
            )
        except httpx.HTTPError as exc:
            answers.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every request is in and waiting
    return threads, answers


def test_delete_answers_the_long_polls_of_its_tasks_at_once(
    servers: ServerFactory, tmp_path: Path, media: Any, hung_ffmpeg: dict[str, str]
) -> None:
    server = servers(tmp_path / "data", env=hung_ffmpeg)
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = request_export(server.base_url, key, run_id, {"output_format": "flac"})
    threads, answers = long_polls(server.base_url, key, task_id, 5)
    started = time.monotonic()
    assert httpx.delete(f"{server.base_url}/runs/{run_id}", headers=auth(key), timeout=10).status_code == 204
    for thread in threads:
        thread.join(timeout=30)
    answered_in = time.monotonic() - started
    print(f"5 long polls of a deleted run's task answered {answered_in:.2f} s after the DELETE")
    assert answers == [404] * 5
    assert answered_in < 3, f"the long polls waited {answered_in:.1f} s: they were not woken by the DELETE"


def test_sigterm_answers_open_long_polls_at_once(
    servers: ServerFactory, tmp_path: Path, media: Any, hung_ffmpeg: dict[str, str]
) -> None:
    """A request that only waits for a task does not hold the shutdown for its grace period."""
    server = servers(tmp_path / "data", env={"ALTDUB_SHUTDOWN_GRACE": "20", **hung_ffmpeg})
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = request_export(server.base_url, key, run_id, {"output_format": "flac"})
    threads, answers = long_polls(server.base_url, key, task_id, 20)
    elapsed = sigterm_and_time(server, 30)
    for thread in threads:
        thread.join(timeout=10)
    print(f"SIGTERM with 20 long polls open: exited in {elapsed:.2f} s (grace 20 s)")
    assert elapsed <= SLACK, f"{elapsed:.1f} s to stop: the long polls held the grace"
    assert answers == [200] * 20  # each answered with the task's state, PENDING: it resumes at the next start
    assert task_row(server.data_dir, task_id)["status"] == "PENDING"


# --- run ids ------------------------------------------------------------------------------------------------


def delete(server: Server, key: str, run_id: int) -> None:
    response = httpx.delete(f"{server.base_url}/runs/{run_id}", headers=auth(key), timeout=10)
    assert response.status_code == 204, response.text


def test_run_ids_are_never_reused(servers: ServerFactory, tmp_path: Path, media: Any) -> None:
    data_dir = tmp_path / "data"
    server = servers(data_dir)
    first = server.api_key
    assert first
    second = create_key(data_dir, "second")
    files = {"dub_es-es": media.dub_wav}
    given = [import_run_id(server.base_url, first, files), import_run_id(server.base_url, first, files)]
    delete(server, first, given[-1])  # the highest
    given.append(import_run_id(server.base_url, second, files))  # another workspace right after
    delete(server, second, given[-1])
    given.append(import_run_id(server.base_url, first, files))
    delete(server, first, given[-1])
    server.stop()
    server = servers(data_dir)  # the high-water mark survives a restart
    given.append(import_run_id(server.base_url, second, files))
    assert given == sorted(set(given)), f"a run id was handed out twice: {given}"
    # a deleted id names nothing, for either workspace
    for key in (first, second):
        for run_id in given[1:-1]:
            assert httpx.get(f"{server.base_url}/runs/{run_id}", headers=auth(key), timeout=10).status_code == 404


def test_upgrade_keeps_rows_and_ids_and_stops_reuse(servers: ServerFactory, tmp_path: Path, media: Any) -> None:
    """A database made by the previous schema (0004): the upgrade at start keeps every row, id and
    reference, and the id of the highest run, deleted afterwards, is not handed out again."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = data_dir / "altdub.db"
    command.upgrade(alembic_config(f"sqlite:///{database}"), "0004")
    with closing(sqlite3.connect(database)) as db:
        db.execute("INSERT INTO workspaces (id, name, created_at, used_minutes) VALUES (1, 'old', '2026-11-01', 0)")
        for run_id in (3, 7):
            db.execute(
                "INSERT INTO runs (id, workspace_id, name, source_language_id, has_video, duration, storage_prefix, "
                "created_at) VALUES (?, 1, 'old run', 1, 0, 4, ?, '2026-11-01')",
                (run_id, f"w1/runs/old{run_id}/"),
            )
            db.execute(
                "INSERT INTO run_files (run_id, role, language_id, storage_key, original_name, size, probe) "
                "VALUES (?, 'dub', 54, 'missing.wav', 'dub.wav', 1, '{}')",
                (run_id,),
            )
        db.commit()
    server = servers(data_dir)
    key = create_key(data_dir, "old")
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT id FROM runs ORDER BY id").fetchall() == [(3,), (7,)]
        assert db.execute("SELECT run_id FROM run_files ORDER BY run_id").fetchall() == [(3,), (7,)]
        assert "AUTOINCREMENT" in db.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    delete(server, key, 7)
    assert import_run_id(server.base_url, key, {"dub_es-es": media.dub_wav}) == 8


# --- signed URLs and the Host header -----------------------------------------------------------------------

HOSTILE_HEADERS = [
    {"host": "evil.example"},
    {"host": "evil.example:8443"},
    {"x-forwarded-host": "evil.example", "x-forwarded-proto": "https", "forwarded": "host=evil.example"},
]


def urls_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in urls_in(v)]
    if isinstance(value, list):
        return [u for v in value for u in urls_in(v)]
    return [value] if isinstance(value, str) and "/files/" in value else []


def every_url(server: Server, key: str, run_id: int, task_id: str, headers: dict[str, str]) -> list[str]:
    """Every signed URL the API hands out for the run, asked with ``headers``."""
    with httpx.Client(base_url=server.base_url, headers={**auth(key), **headers}, timeout=10) as client:
        answers = [
            client.get(f"/dub-alt-format/{task_id}"),
            client.post(f"/dub-alt-format/{run_id}/es-es", json={"output_format": "mp3"}),
            client.get(f"/dub-result/{run_id}"),
            client.get(f"/runs/{run_id}/exports"),
            client.get(f"/transcript/{run_id}/es-es", params={"format_type": "srt", "data_type": "file"}),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    return [u for answer in answers for u in urls_in(answer.json())]


@pytest.mark.parametrize("public_url", [None, "https://dub.example.com/altdub"], ids=["served", "configured"])
def test_signed_urls_ignore_the_host_header(
    servers: ServerFactory, tmp_path: Path, media: Any, public_url: str | None
) -> None:
    transcript = tmp_path / "es.srt"
    transcript.write_text("1\n00:00:00,000 --> 00:00:02,000\nHola\n")
    env = {"ALTDUB_PUBLIC_URL": public_url} if public_url else {}
    server = servers(tmp_path / "data", env=env)
    key = server.api_key
    assert key
    run_id = import_run_id(
        server.base_url, key, {"source": media.video, "dub_es-es": media.dub_wav, "transcript_es-es": transcript}
    )
    task_id = request_export(server.base_url, key, run_id, {"output_format": "mp3"})
    assert wait_task(server.base_url, key, task_id)["status"] == "SUCCESS"
    expected = public_url or server.base_url
    for headers in HOSTILE_HEADERS:
        urls = every_url(server, key, run_id, task_id, headers)
        assert len(urls) >= 5, urls
        wrong = [u for u in urls if not u.startswith(expected + "/files/")]
        assert wrong == [], f"with {headers}: {wrong}"
    if public_url is None:  # the links work as handed out
        assert httpx.get(urls[0], timeout=10).status_code == 200


def test_a_public_url_that_is_not_http_is_refused_at_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ALTDUB), "serve", "--port", "1"],
        env=clean_env(ALTDUB_DATA_DIR=str(tmp_path / "data"), ALTDUB_PUBLIC_URL="javascript:alert(1)"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "public_url" in done.stderr, done.stderr


# --- the access log ----------------------------------------------------------------------------------------


def test_signatures_and_keys_never_reach_the_access_log(servers: ServerFactory, tmp_path: Path, media: Any) -> None:
    server = servers(tmp_path / "data")
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.video, "dub_es-es": media.dub_wav})
    task_id = request_export(server.base_url, key, run_id, {"output_format": "mp3"})
    url = wait_task(server.base_url, key, task_id)["output_url"]
    audio_url = httpx.get(f"{server.base_url}/dub-result/{run_id}", headers=auth(key), timeout=10).json()["es-es"][
        "audio_url"
    ]
    secrets = []
    for signed in (url, audio_url):
        assert httpx.get(signed, timeout=10).status_code == 200
        secrets.append(parse_qs(urlsplit(signed).query)["signature"][0])
    forged = url.replace(secrets[0], "f" * len(secrets[0]))
    assert httpx.get(forged, timeout=10).status_code == 403
    # secrets a client might put in a query string, on any path
    httpx.get(f"{server.base_url}/runs", params={"api_key": key, "x-api-key": key, "token": "tok-secret-1"}, timeout=10)
    path = urlsplit(url).path

    def logged() -> list[str]:
        return [line for line in server.output if path in line]

    wait_for(
        lambda: len(logged()) >= 2 and any('"GET /runs?' in line for line in server.output), 5, "the access log lines"
    )
    access_log = "\n".join(line for line in server.output if '"GET ' in line or '"POST ' in line)
    print("access log lines:\n" + "\n".join(logged()))
    for secret in [*secrets, "f" * len(secrets[0]), key, "tok-secret-1"]:
        assert secret not in access_log, f"{secret[:12]}… is in the access log"
    assert "signature=REDACTED" in access_log and "api_key=REDACTED" in access_log
    assert sum(line.endswith("200 OK") for line in logged()) == 1, logged()  # the lines are there, redacted


# --- file modes ---------------------------------------------------------------------------------------------


def open_to_others(root: Path) -> list[str]:
    """Everything below ``root`` (and itself) that its group or other users may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return found


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing-0755"])
def test_data_is_readable_by_its_owner_only(servers: ServerFactory, tmp_path: Path, media: Any, existing: bool) -> None:
    data_dir = tmp_path / "data"
    if existing:  # as an older version (or a careless operator) left it
        data_dir.mkdir(mode=0o755)
        data_dir.chmod(0o755)
    server = servers(data_dir)
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.video, "dub_es-es": media.dub_wav})
    task_id = request_export(server.base_url, key, run_id, {"output_format": "mp4"})
    scratch = data_dir / "tmp" / str(server.process.pid)
    seen_in_flight: list[str] = []

    def sample() -> None:  # the conversion's scratch while it exists
        while not done.is_set():
            with contextlib.suppress(OSError):
                seen_in_flight.extend(open_to_others(scratch))
            time.sleep(0.01)

    done = threading.Event()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert wait_task(server.base_url, key, task_id)["status"] == "SUCCESS"
    finally:
        done.set()
        sampler.join()
    names = {p.name for p in data_dir.rglob("*")}
    assert {"altdub.db", "altdub.db-wal", "altdub.db-shm", "secret.key"} <= names, names
    assert exports_stored(data_dir), "no export stored"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert open_to_others(data_dir) == [], open_to_others(data_dir)
    assert seen_in_flight == [], seen_in_flight
