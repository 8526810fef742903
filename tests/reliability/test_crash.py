"""Issue 5, crash safety and time limits, against real ``altdub serve`` processes killed with SIGKILL.

- A conversion killed half-way resumes after a restart and ends SUCCESS with a valid file; while
  it ran, no answer (task status, the same POST, the run's export list) ever held a download URL.
- An import killed mid-body, or while its files are being stored, leaves no run and no file.
- The scratch folder of the dead process is removed at the next start.
- A conversion that hangs is killed at the configured limit, ends TIMEOUT, leaves no FFmpeg behind.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.probe import probe
from altdub.media.synth import make_tone
from tests.e2e.conftest import ServerFactory, auth, import_run, import_run_id, wait_until_gone
from tests.reliability.conftest import (
    DURATION_TOLERANCE,
    count_rows,
    ffmpeg_processes,
    files_under,
    request_export,
    task_row,
    wait_task,
)

pytestmark = pytest.mark.e2e

LONG_SECONDS = 16.0
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def long_media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 16 s 640x480 MPEG-2 video (Matroska) and its dub: MP4 cannot hold MPEG-2, so the mp4 export
    encodes H.264 (x264, CRF 18), which takes seconds and reports progress as it goes."""
    folder = tmp_path_factory.mktemp("long")
    video = folder / "long.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=640x480:rate=25:duration={LONG_SECONDS}",
                "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={LONG_SECONDS}",
                "-ac", "2", "-c:v", "mpeg2video", "-q:v", "4", "-g", "25",
                "-c:a", "aac", "-shortest", file_arg(video)])  # fmt: skip
    return video, make_tone(folder / "long-es.wav", LONG_SECONDS, tone_hz=550)


def download_to(client: httpx.Client, url: str, target: Path) -> Path:
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.read()[:300]
        with target.open("wb") as fh:
            for chunk in response.iter_bytes():
                fh.write(chunk)
    return target


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# --- a kill in the middle of a conversion -----------------------------------------------------------------


@dataclass
class Seen:
    """One round of the watcher: what each answer said, and which server (0: before the kill, 1: after)."""

    server: int
    status: str
    progress: int
    status_url: bool
    post_keys: list[str]
    listed: list[tuple[str, bool]]  # (status, has output_url) of the run's export list, when the API has one


@dataclass
class Watcher:
    """From a second thread, polls every answer that could hand out the export's download URL.

    The first URL it sees is downloaded at once, while the server may still be writing the file.
    """

    key: str
    run_id: int
    task_id: str
    body: dict[str, Any]
    downloads: Path
    base_url: str | None = None  # None while no server runs
    server: int = 0
    seen: list[Seen] = field(default_factory=list)
    transport_errors: int = 0
    first_download: Path | None = None  # where the watcher saved the first URL's file
    first_url: str | None = None
    failure: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            self._watch()
        except BaseException as exc:  # reported by the test, not lost with the thread
            self.failure = exc
            self.done.set()

    def _watch(self) -> None:
        with httpx.Client(timeout=5, headers=auth(self.key)) as client:
            while not self.stop.is_set():
                base, server = self.base_url, self.server
                if base is None:
                    time.sleep(0.01)
                    continue
                try:
                    self._round(client, base, server)
                except httpx.TransportError:
                    self.transport_errors += 1  # the server is being killed or restarted
                    time.sleep(0.01)
                    continue
                if self.seen and self.seen[-1].status == "SUCCESS":
                    self.done.set()
                    return
                time.sleep(0.02)

    def _round(self, client: httpx.Client, base: str, server: int) -> None:
        status = client.get(f"{base}/dub-alt-format/{self.task_id}")
        assert status.status_code == 200, status.text
        post = client.post(f"{base}/dub-alt-format/{self.run_id}/es-es", json=self.body)
        assert post.status_code == 200, post.text
        listing = client.get(f"{base}/runs/{self.run_id}/exports")  # the dashboard's list, where it exists
        listed = []
        if listing.status_code == 200:
            listed = [(e["status"], bool(e.get("output_url"))) for e in listing.json() if e["task_id"] == self.task_id]
        self.seen.append(
            Seen(
                server,
                status.json()["status"],
                status.json()["progress"],
                "output_url" in status.json(),
                sorted(post.json()),
                listed,
            )
        )
        url = status.json().get("output_url") or post.json().get("output_url")
        if url and self.first_download is None:
            self.first_url = url
            self.first_download = download_to(client, url, self.downloads / "first.mp4")


def test_conversion_killed_mid_way_resumes_and_never_exposes_a_partial_file(
    servers: ServerFactory, tmp_path: Path, long_media: tuple[Path, Path]
) -> None:
    data_dir = tmp_path / "data"
    first = servers(data_dir)
    key = first.api_key
    assert key
    video, dub = long_media
    run_id = import_run_id(first.base_url, key, {"source": video, "dub_es-es": dub})
    body = {"output_format": "mp4"}
    task_id = request_export(first.base_url, key, run_id, body)

    watcher = Watcher(key, run_id, task_id, body, tmp_path, base_url=first.base_url)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        # Kill once FFmpeg runs and has written part of its output into the process's scratch folder.
        scratch = data_dir / "tmp" / str(first.process.pid)

        def partial_output() -> list[Path]:
            return [p for p in scratch.glob(f"export-{task_id}-*/output.mp4") if p.stat().st_size > 0]

        wait_for(
            lambda: (
                watcher.failure
                or (
                    len(watcher.seen) >= 3
                    and watcher.seen[-1].progress >= 10
                    and first.child_pids()
                    and partial_output()
                )
            ),
            30,
            "FFmpeg 10 % into the output, watched",
        )
        assert watcher.failure is None, repr(watcher.failure)
        rounds_before_kill = len(watcher.seen)
        watcher.base_url = None
        ffmpeg_pids = first.crash()
        assert ffmpeg_pids, "FFmpeg was not running: the kill was not mid-conversion"
        assert wait_until_gone(ffmpeg_pids) == [], "FFmpeg outlived the killed server"
        assert ffmpeg_processes(str(data_dir)) == []

        row = task_row(data_dir, task_id)
        assert row is not None and row["status"] == "PENDING", f"the conversion ended before the kill: {row}"
        assert row["storage_key"] is None
        assert [p for p in files_under(data_dir / "files") if "exports" in p.parts] == [], "a partial was published"
        assert scratch.is_dir() and files_under(scratch), "the dead process left no scratch: nothing was tested"
        assert rounds_before_kill > 0, "the watcher never polled the first server"

        second = servers(data_dir)
        assert second.api_key is None
        assert not scratch.exists(), f"the scratch folder of the dead process {first.process.pid} is still there"
        restarted = time.monotonic()
        watcher.server, watcher.base_url = 1, second.base_url
        assert watcher.done.wait(120), f"no SUCCESS after the restart; last seen: {watcher.seen[-3:]}"
        assert watcher.failure is None, repr(watcher.failure)
        resumed_in = time.monotonic() - restarted
    finally:
        watcher.stop.set()
        thread.join(timeout=10)

    # No URL while the task was not SUCCESS; once one was handed out, every later answer says SUCCESS.
    seen = watcher.seen
    assert any(s.server == 0 for s in seen) and any(s.server == 1 for s in seen)
    for s in seen:
        assert s.status_url == (s.status == "SUCCESS"), s
        for listed_status, has_url in s.listed:
            assert has_url == (listed_status == "SUCCESS"), s
    first_url_round = next(i for i, s in enumerate(seen) if s.status_url or "output_url" in s.post_keys)
    assert seen[first_url_round].server == 1, "a URL was handed out before the kill"
    assert all(s.post_keys == ["task_id"] for s in seen[:first_url_round]), seen[:first_url_round]
    assert all(s.status == "SUCCESS" for s in seen[first_url_round + 1 :])
    assert all(s.status == "PENDING" for s in seen if s.server == 0)

    final = wait_task(second.base_url, key, task_id)
    assert final["status"] == "SUCCESS" and final["progress"] == 100, final
    assert task_row(data_dir, task_id)["attempts"] == 2

    # The file behind the very first URL, fetched the moment it appeared, is whole, valid, and the final one.
    assert watcher.first_download is not None
    final_file = download_to(httpx.Client(timeout=60), final["output_url"], tmp_path / "final.mp4")
    assert final_file.read_bytes() == watcher.first_download.read_bytes()
    info = probe(watcher.first_download)
    assert info.format_name.startswith("mov,mp4")
    assert [s.codec for s in info.video] == ["h264"] and [s.codec for s in info.audio] == ["aac"]
    assert info.audio[0].language == "spa" and info.audio[0].default
    assert abs(info.duration - LONG_SECONDS) <= DURATION_TOLERANCE
    assert all(abs(s.duration - LONG_SECONDS) <= 0.1 for s in info.streams if s.duration), info.streams
    exports = [p for p in files_under(data_dir / "files") if "exports" in p.parts]
    assert [p.name for p in exports] == [f"{task_id}.mp4"], exports  # no partial left beside it
    print(
        f"crash/conversion: killed at {seen[rounds_before_kill - 1].progress} %; {rounds_before_kill} watched rounds "
        f"before the kill, {len(seen) - rounds_before_kill} after, {watcher.transport_errors} refused connections; "
        f"0 URLs before SUCCESS; SUCCESS {resumed_in:.1f} s after the restart (attempt 2); "
        f"output {final_file.stat().st_size} B"
    )


# --- a kill during an upload ------------------------------------------------------------------------------


def wav_header(data_bytes: int, rate: int = 48000, channels: int = 2) -> bytes:
    """A canonical 16-bit PCM WAV header for ``data_bytes`` of samples."""
    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", data_bytes))
    )


@dataclass
class StreamedUpload:
    """A multipart body produced chunk by chunk (never whole in memory), sent by httpx from a thread.

    ``pause_after`` bytes into the last file, the generator stops until ``resume`` is set, so that
    the test can kill the server while the body is half sent.
    """

    base_url: str
    key: str
    parts: list[tuple[str, str | None, Any]]  # (field, filename or None for text, bytes or a chunk iterator)
    pause_after: int | None = None
    boundary: str = field(default_factory=lambda: uuid.uuid4().hex)
    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    finished_sending: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    response: httpx.Response | None = None
    error: BaseException | None = None

    def body(self) -> Iterator[bytes]:
        for name, filename, content in self.parts:
            disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
            yield f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            chunks = [content] if isinstance(content, bytes) else content
            for chunk in chunks:
                yield chunk
                self.sent += len(chunk)
                if self.pause_after is not None and self.sent >= self.pause_after and not self.paused.is_set():
                    self.paused.set()
                    self.resume.wait(30)
            yield b"\r\n"
        yield f"--{self.boundary}--\r\n".encode()
        self.finished_sending.set()

    def send(self) -> None:
        try:
            self.response = httpx.post(
                f"{self.base_url}/runs",
                headers={**auth(self.key), "content-type": f"multipart/form-data; boundary={self.boundary}"},
                content=self.body(),
                timeout=60,
            )
        except BaseException as exc:  # the server died under us: what the test expects
            self.error = exc

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.send, daemon=True)
        thread.start()
        return thread


def silence(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


def staged_bytes(scratch: Path) -> int:
    return sum(p.stat().st_size for p in scratch.glob("upload-*/part-*") if p.is_file())


def assert_no_run_left(data_dir: Path, base_url: str, key: str) -> None:
    listing = httpx.get(f"{base_url}/runs", headers=auth(key), timeout=10)
    assert listing.status_code == 200
    assert listing.json()["total"] == 0 and listing.json()["items"] == [], listing.text
    assert count_rows(data_dir, "runs") == 0 and count_rows(data_dir, "run_files") == 0
    stored = files_under(data_dir / "files")
    assert stored == [], f"files of the killed import are left in storage: {[str(p) for p in stored]}"


def test_upload_killed_mid_body_leaves_nothing(servers: ServerFactory, tmp_path: Path, media) -> None:
    data_dir = tmp_path / "data"
    first = servers(data_dir)
    key = first.api_key
    assert key
    dub_bytes = 400 * MiB  # 35 minutes of stereo 48 kHz PCM: far more than will be sent
    upload = StreamedUpload(
        first.base_url,
        key,
        [
            ("source_language", None, b"en-us"),
            ("name", None, b"half-uploaded"),
            ("source", "source.mp4", media.video.read_bytes()),
            ("dub_es-es", "huge-dub.wav", iter([wav_header(dub_bytes), *silence(dub_bytes)])),
        ],
        pause_after=64 * MiB,
    )
    thread = upload.start()
    scratch = data_dir / "tmp" / str(first.process.pid)
    try:
        assert upload.paused.wait(60), "the body never reached 64 MiB"
        wait_for(lambda: staged_bytes(scratch) >= 32 * MiB, 30, "the server staging the body")
        assert upload.response is None
        first.crash()
    finally:
        upload.resume.set()
        thread.join(timeout=30)
    staged_at_kill = staged_bytes(scratch)
    assert upload.response is None, f"the import answered before the kill: {upload.response}"
    assert isinstance(upload.error, httpx.TransportError), repr(upload.error)
    assert not upload.finished_sending.is_set()
    assert staged_bytes(scratch) > 0, "nothing was staged: the kill was not mid-body"
    assert count_rows(data_dir, "runs") == 0

    second = servers(data_dir)
    assert not scratch.exists(), "the staged parts of the dead process are still on disk"
    assert_no_run_left(data_dir, second.base_url, key)
    print(
        f"crash/upload mid-body: {upload.sent // MiB} MiB sent, {staged_at_kill // MiB} MiB staged at the kill; "
        f"client saw {upload.error.__class__.__name__}; after restart: 0 runs, 0 stored files, scratch removed"
    )
    # the service still imports normally
    assert import_run(second.base_url, key, {"source": media.video, "dub_es-es": media.dub_wav}).status_code == 201


def test_upload_killed_while_its_files_are_stored_leaves_nothing(servers: ServerFactory, tmp_path: Path) -> None:
    """The body is whole and probed; the kill lands while the inputs are moved into storage, before the
    run's row is committed. Nothing may remain: no run, and no file of it under the storage root.

    With ``ALTDUB_FSYNC=true`` (durable publication, what a production deployment sets) each input is
    flushed before it is published, which makes the window between the first stored file and the
    commit wide enough to hit every time; without it the window is the same, only narrower.
    """
    data_dir = tmp_path / "data"
    first = servers(data_dir, env={"ALTDUB_FSYNC": "true"})
    key = first.api_key
    assert key
    size = 160 * MiB  # ~14.5 minutes of stereo 48 kHz PCM each: storing them takes a while (fsync)
    upload = StreamedUpload(
        first.base_url,
        key,
        [
            ("source_language", None, b"en-us"),
            ("name", None, b"killed-while-storing"),
            ("source", "source.wav", iter([wav_header(size), *silence(size)])),
            ("dub_es-es", "dub.wav", iter([wav_header(size), *silence(size)])),
        ],
    )
    stored_root = data_dir / "files"
    thread = upload.start()
    try:
        assert upload.finished_sending.wait(60), "the body was not sent"
        landed = wait_for(
            lambda: [p for p in files_under(stored_root) if "runs" in p.parts] or upload.response is not None,
            60,
            "the import storing its files",
            interval=0.0005,
        )
        first.crash()
    finally:
        thread.join(timeout=30)
    assert landed is not True and upload.response is None, "the import finished before the kill"
    stored_at_kill = [str(p.relative_to(stored_root)) for p in files_under(stored_root)]
    assert stored_at_kill, "nothing had reached storage: the kill was not during storing"
    print(f"crash/upload storing: stored at the kill: {stored_at_kill}; run rows: {count_rows(data_dir, 'runs')}")

    second = servers(data_dir)
    assert not (data_dir / "tmp" / str(first.process.pid)).exists()
    listing = httpx.get(f"{second.base_url}/runs", headers=auth(key), timeout=10).json()
    if listing["total"] == 0:  # the import never happened: nothing of it may remain
        assert_no_run_left(data_dir, second.base_url, key)
    else:  # the import was complete when the kill came: every stored file is the run's, whole
        (run,) = listing["items"]
        stored = files_under(stored_root)
        assert sorted(p.stat().st_size for p in stored) == sorted(f["size"] for f in run["files"]), stored


# --- a conversion that hangs -----------------------------------------------------------------------------

TIME_LIMIT = 2.0
HUNG_FFMPEG = """#!/bin/sh
# Stands in for an FFmpeg that hangs: it and a child of its own wait for ever, until killed.
echo $$ >> "$HUNG_PIDS"
sleep 3600 &
echo $! >> "$HUNG_PIDS"
wait
"""


def alive(pids: list[int]) -> list[int]:
    return wait_until_gone(pids, timeout=0)


@pytest.mark.parametrize("options", [{}, {"loudness": "ebu_r128"}], ids=["plain", "loudness"])
def test_hung_conversion_is_killed_at_the_time_limit(
    servers: ServerFactory, tmp_path: Path, media, options: dict[str, Any]
) -> None:
    """Every FFmpeg of the server hangs (``IMAGEIO_FFMPEG_EXE`` points at a script that never ends).

    The task must end TIMEOUT at the limit, with the hung process and its child killed. With
    ``loudness`` the first FFmpeg is the measurement pass, which is part of the conversion too.
    """
    hung = tmp_path / "ffmpeg-hung"
    hung.write_text(HUNG_FFMPEG)
    hung.chmod(0o755)
    pid_file = tmp_path / "hung.pids"
    pid_file.touch()
    data_dir = tmp_path / "data"
    env = {"ALTDUB_TASK_TIME_LIMIT": str(TIME_LIMIT), "IMAGEIO_FFMPEG_EXE": str(hung), "HUNG_PIDS": str(pid_file)}
    server = servers(data_dir, env=env)
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})

    def hung_pids() -> list[int]:
        return [int(line) for line in pid_file.read_text().split()]

    try:
        started = time.monotonic()
        task_id = request_export(server.base_url, key, run_id, {"output_format": "flac", **options})
        wait_for(lambda: len(hung_pids()) >= 2, 10, "the hung FFmpeg to start")
        try:
            body = wait_task(server.base_url, key, task_id, timeout=TIME_LIMIT + 10)
        except AssertionError as exc:
            pytest.fail(
                f"no TIMEOUT {time.monotonic() - started:.0f} s into a {TIME_LIMIT:g} s limit; the hung FFmpeg "
                f"(pids {alive(hung_pids())}) still runs: {exc}"
            )
        elapsed = time.monotonic() - started
        assert body["status"] == "TIMEOUT", body
        assert body["message"], body
        assert "output_url" not in body
        assert TIME_LIMIT <= elapsed <= TIME_LIMIT + 3, f"TIMEOUT after {elapsed:.1f} s for a {TIME_LIMIT:g} s limit"
        print(f"hang {options}: TIMEOUT {elapsed:.1f} s after the request, limit {TIME_LIMIT:g} s")
        assert wait_until_gone(hung_pids()) == [], "the hung FFmpeg (or its child) outlived the time limit"
        assert ffmpeg_processes(str(data_dir)) == []
        assert server.child_pids() == []
        assert [p for p in files_under(data_dir / "files") if "exports" in p.parts] == []
        assert files_under(data_dir / "tmp") == [], "the task's scratch was left behind"
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    finally:
        for pid in alive(hung_pids()):  # a failed test must not leave its sleepers behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
