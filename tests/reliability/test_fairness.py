"""Issue 11, class 6 (fair and bounded work), against a real ``altdub serve`` over HTTP.

- A workspace at its limit of pending tasks gets a 429 with Retry-After for a new task (never a row),
  while identical and finished requests answer as before and other workspaces are not affected; the
  limit holds under concurrent requests and frees once the tasks end.
- One worker, two workspaces: the task of a workspace that asks once runs after at most the task that
  was running, not after the other workspace's queue of thirty.
- Thirty concurrent first requests for a thumbnail run FFmpeg once.
- Two hundred long-polling requests hold no thread each and leave other requests fast; beyond
  ALTDUB_MAX_WAITING_REQUESTS a wait is answered at once.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest

from altdub.media.ffmpeg import ffmpeg_executable
from altdub.media.synth import make_tone, make_video
from tests.e2e.conftest import Server, ServerFactory, auth, create_key, import_run_id
from tests.reliability.conftest import count_rows, task_row, wait_task

pytestmark = pytest.mark.e2e

LIMIT = 3  # ALTDUB_MAX_PENDING_TASKS of the limit tests
NO_WORKERS = ["--no-workers"]  # tasks stay PENDING: the limit and the waits are met deterministically


@dataclass(frozen=True)
class Media:
    source: Path  # 2 s of tone: an audio-only run
    dub: Path
    video: Path  # 2 s of video with audio: a run with a thumbnail


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    folder = tmp_path_factory.mktemp("fairness-media")
    return Media(
        source=make_tone(folder / "source.wav", 2.0, tone_hz=330),
        dub=make_tone(folder / "dub.wav", 2.0, tone_hz=550),
        video=make_video(folder / "video.mp4", 2.0, size="320x240"),
    )


def post_export(server: Server, key: str, run_id: int, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.base_url}/dub-alt-format/{run_id}/es-es", headers=auth(key), json=body, timeout=30)


def mp3(kbps: int) -> dict[str, object]:
    """An mp3 export at ``kbps``: each bitrate is a different export (a different task)."""
    return {"output_format": "mp3", "audio_bitrate": f"{kbps}k"}


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    body = response.json()
    assert body["limit"] == LIMIT
    assert f"{LIMIT} export tasks pending" in body["detail"], body


# --- the pending-task limit ---------------------------------------------------------------------------


def test_the_pending_limit_answers_429_and_frees_once_tasks_end(
    servers: ServerFactory, media: Media, tmp_path: Path
) -> None:
    limits = {"ALTDUB_MAX_PENDING_TASKS": str(LIMIT), "ALTDUB_WORKERS": "1"}
    server = servers(tmp_path / "data", env=limits, args=NO_WORKERS)
    key = server.api_key
    assert key
    other = create_key(server.data_dir, "other")
    run_id = import_run_id(server.base_url, key, {"source": media.source, "dub_es-es": media.dub})
    other_run = import_run_id(server.base_url, other, {"source": media.source, "dub_es-es": media.dub})

    first = [post_export(server, key, run_id, mp3(kbps)) for kbps in (64, 96, 128)]
    assert [r.status_code for r in first] == [200] * LIMIT, [r.text for r in first]
    task_ids = [r.json()["task_id"] for r in first]

    # Any new task is refused, whatever its format or options; no row is written for it.
    for body in (mp3(160), {"output_format": "wav"}, {"output_format": "flac", "sample_rate": 22050}):
        assert_limited(post_export(server, key, run_id, body))
    assert count_rows(server.data_dir, "export_tasks") == LIMIT
    # An identical request still converges on its live task; another workspace has its own limit.
    again = post_export(server, key, run_id, mp3(64))
    assert again.status_code == 200 and again.json() == {"task_id": task_ids[0]}, again.text
    assert post_export(server, other, other_run, mp3(64)).status_code == 200

    # The same data with workers: the pending tasks run, end, and free the workspace's slots.
    server.stop()
    server = servers(tmp_path / "data", env=limits)
    for task_id in task_ids:
        assert wait_task(server.base_url, key, task_id)["status"] == "SUCCESS"
    exists = post_export(server, key, run_id, mp3(64))
    assert exists.status_code == 200 and set(exists.json()) == {"output_url"}, exists.text
    fresh = post_export(server, key, run_id, mp3(160))
    assert fresh.status_code == 200 and set(fresh.json()) == {"task_id"}, fresh.text


def test_concurrent_requests_never_pass_the_pending_limit(servers: ServerFactory, media: Media, tmp_path: Path) -> None:
    """Twenty different exports at once: the count and the insert are one step, so exactly LIMIT tasks."""
    server = servers(tmp_path / "data", env={"ALTDUB_MAX_PENDING_TASKS": str(LIMIT)}, args=NO_WORKERS)
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.source, "dub_es-es": media.dub})
    barrier = threading.Barrier(20)

    def post(kbps: int) -> httpx.Response:
        barrier.wait()
        return post_export(server, key, run_id, mp3(kbps))

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(64, 64 + 8 * 20, 8)))
    accepted = [r for r in answers if r.status_code == 200]
    assert len(accepted) == LIMIT, [(r.status_code, r.text) for r in answers]
    for refused in (r for r in answers if r.status_code != 200):
        assert_limited(refused)
    assert count_rows(server.data_dir, "export_tasks") == LIMIT


# --- fair scheduling ----------------------------------------------------------------------------------


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_one_workspaces_queue_does_not_delay_another(servers: ServerFactory, media: Media, tmp_path: Path) -> None:
    """One worker; A queues 30 exports, then B asks for one: B's runs after A's running one, not after 30."""
    queued = 30
    server = servers(tmp_path / "data", env={"ALTDUB_WORKERS": "1", "ALTDUB_MAX_PENDING_TASKS": "50"})
    key_a = server.api_key
    assert key_a
    key_b = create_key(server.data_dir, "b")
    run_a = import_run_id(server.base_url, key_a, {"source": media.source, "dub_es-es": media.dub})
    run_b = import_run_id(server.base_url, key_b, {"source": media.source, "dub_es-es": media.dub})

    def queue(kbps: int) -> str:
        response = post_export(server, key_a, run_a, mp3(kbps))
        assert response.status_code == 200, response.text
        return response.json()["task_id"]

    with ThreadPoolExecutor(max_workers=8) as pool:  # queued faster than one worker empties the queue
        a_tasks = list(pool.map(queue, range(64, 64 + 8 * queued, 8)))
    response = post_export(server, key_b, run_b, mp3(128))
    assert response.status_code == 200, response.text
    b_task = response.json()["task_id"]
    assert wait_task(server.base_url, key_b, b_task, timeout=60)["status"] == "SUCCESS"

    b = task_row(server.data_dir, b_task)
    assert b is not None
    a_rows = [task_row(server.data_dir, task_id) for task_id in a_tasks]
    a_done = [_time(r["finished_at"]) for r in a_rows if r and r["finished_at"]]
    # A's tasks that ended while B's waited or ran: the one running when B asked, maybe one more
    # that was claimed in the instant B's request was being committed.
    overtaking = [t for t in a_done if _time(b["created_at"]) < t <= _time(b["finished_at"])]
    still_queued = queued - len([t for t in a_done if t <= _time(b["created_at"])])
    print(
        f"\nB waited behind {len(overtaking)} of A's tasks; {still_queued} of A's {queued} were unfinished "
        f"when B asked; B's ended {(_time(b['finished_at']) - _time(b['created_at'])).total_seconds():.2f} s later"
    )
    assert still_queued >= queued // 3, "A's queue was nearly done when B asked: the test proves nothing"
    assert len(overtaking) <= 2, f"B's task waited behind {len(overtaking)} of A's tasks"
    for task_id in a_tasks:  # and A's queue still runs, oldest first
        assert wait_task(server.base_url, key_a, task_id, timeout=60)["status"] == "SUCCESS"
    rows = sorted((task_row(server.data_dir, task_id) for task_id in a_tasks), key=lambda r: _time(r["created_at"]))
    starts = [_time(row["started_at"]) for row in rows]
    assert starts == sorted(starts), "A's tasks did not run oldest first"


# --- thumbnails ---------------------------------------------------------------------------------------


def test_concurrent_first_thumbnail_requests_run_ffmpeg_once(
    servers: ServerFactory, media: Media, tmp_path: Path
) -> None:
    """FFmpeg runs are counted by a wrapper named by IMAGEIO_FFMPEG_EXE: it logs its arguments, then runs FFmpeg."""
    log = tmp_path / "ffmpeg-runs.log"
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {ffmpeg_executable()} "$@"\n')
    wrapper.chmod(0o755)
    server = servers(tmp_path / "data", env={"IMAGEIO_FFMPEG_EXE": str(wrapper)})
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.video, "dub_es-es": media.dub})
    requests = 30
    barrier = threading.Barrier(requests)

    def get(_: int) -> httpx.Response:
        barrier.wait()
        return httpx.get(f"{server.base_url}/runs/{run_id}/thumbnail", headers=auth(key), timeout=60)

    with ThreadPoolExecutor(max_workers=requests) as pool:
        answers = list(pool.map(get, range(requests)))
    assert [r.status_code for r in answers] == [200] * requests, [r.text for r in answers if r.status_code != 200]
    assert len({r.content for r in answers}) == 1 and answers[0].content[:3] == b"\xff\xd8\xff"
    runs = [line for line in log.read_text().splitlines() if "thumbnail" in line]
    assert len(runs) == 1, f"{len(runs)} FFmpeg runs for one thumbnail:\n" + "\n".join(runs)
    # Asked again later: read from storage, no FFmpeg at all.
    assert httpx.get(f"{server.base_url}/runs/{run_id}/thumbnail", headers=auth(key), timeout=60).status_code == 200
    assert len([line for line in log.read_text().splitlines() if "thumbnail" in line]) == 1


# --- long polling -------------------------------------------------------------------------------------


def threads_of(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def connections(server: Server) -> int:
    """TCP connections the server has accepted and not closed."""
    return sum(c.status == psutil.CONN_ESTABLISHED for c in psutil.Process(server.process.pid).net_connections("tcp"))


def cpu_seconds(server: Server) -> float:
    """User and system CPU time the server has used so far."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def pending_task(servers: ServerFactory, media: Media, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """(server, key, task_id): a task that stays PENDING in a server without workers."""
    env = getattr(request, "param", {})
    server = servers(tmp_path / "data", env=env, args=NO_WORKERS)
    key = server.api_key
    assert key
    run_id = import_run_id(server.base_url, key, {"source": media.source, "dub_es-es": media.dub})
    response = post_export(server, key, run_id, mp3(64))
    assert response.status_code == 200, response.text
    yield server, key, response.json()["task_id"]


async def _settled(server: Server, step: float = 0.25, within: float = 3.0) -> None:
    """Returns once the server spends under a tenth of a core over ``step``: the waiters' first reads are done.

    A server that keeps working for its waiters never settles, and the measurement after it fails then.
    """
    deadline = time.monotonic() + within
    before = cpu_seconds(server)
    while time.monotonic() < deadline:
        await asyncio.sleep(step)
        now = cpu_seconds(server)
        if now - before < 0.1 * step:
            return
        before = now


async def _wait_requests(client: httpx.AsyncClient, url: str, count: int, wait: float) -> list[tuple[int, float]]:
    async def one() -> tuple[int, float]:
        started = time.monotonic()
        response = await client.get(url, params={"wait": wait})
        assert response.json()["status"] == "PENDING", response.text
        return response.status_code, time.monotonic() - started

    return await asyncio.gather(*(one() for _ in range(count)))


def test_two_hundred_waiters_hold_no_threads_and_slow_nothing(pending_task) -> None:
    """While 200 requests wait (embedded mode), the server spends no CPU on them and holds no thread for them."""
    server, key, task_id = pending_task
    url = f"{server.base_url}/dub-alt-format/{task_id}"
    waiters, wait, quiet = 200, 5.0, 1.5

    def latencies(count: int) -> list[float]:
        found = []
        with httpx.Client(headers=auth(key), timeout=10) as client:
            for _ in range(count):
                started = time.monotonic()
                assert client.get(url).status_code == 200
                found.append(time.monotonic() - started)
        return found

    idle = latencies(20)
    with ThreadPoolExecutor(max_workers=60) as pool:  # the server's thread pool at its full size first
        list(pool.map(lambda _: latencies(1), range(120)))
    threads_before = threads_of(server)

    async def scenario() -> tuple[list[tuple[int, float]], float, list[float], int]:
        limits = httpx.Limits(max_connections=waiters + 10, max_keepalive_connections=waiters + 10)
        async with httpx.AsyncClient(headers=auth(key), timeout=30, limits=limits) as client:
            waiting = asyncio.ensure_future(_wait_requests(client, url, waiters, wait))
            while connections(server) < waiters:  # every waiter connected...
                await asyncio.sleep(0.05)
            await _settled(server)  # ...and past its first read of the task (40 threads read 200 in turn)
            cpu_before = cpu_seconds(server)
            await asyncio.sleep(quiet)
            spent = cpu_seconds(server) - cpu_before
            assert not waiting.done(), "the waiters were answered before the quiet window ended: it measured nothing"
            busy = await asyncio.to_thread(latencies, 40)
            threads_during = threads_of(server)
            return await waiting, spent, busy, threads_during

    answers, spent, busy, threads_during = asyncio.run(scenario())
    print(
        f"\nwith {waiters} waiters: server CPU {spent:.2f} s in {quiet:g} s; median latency "
        f"{statistics.median(busy) * 1000:.1f} ms (idle {statistics.median(idle) * 1000:.1f} ms, "
        f"max {max(busy) * 1000:.1f} ms); server threads {threads_before} -> {threads_during}"
    )
    assert all(status == 200 and took >= wait - 0.1 for status, took in answers)
    assert spent < 0.1 * quiet, f"the server spent {spent:.2f} s of CPU in {quiet:g} s on {waiters} waiting requests"
    # At most the thread pool's 40 (AnyIO's limit, reached by the waiters' first reads) and a few of its own:
    # a thread per waiter would be 200 more.
    assert threads_during <= 50, f"threads {threads_before} -> {threads_during}"
    assert statistics.median(busy) < 0.1, f"median {statistics.median(busy) * 1000:.0f} ms with {waiters} waiters"


@pytest.mark.parametrize("pending_task", [{"ALTDUB_MAX_WAITING_REQUESTS": "5"}], indirect=True)
def test_waiters_beyond_the_limit_are_answered_at_once(pending_task) -> None:
    server, key, task_id = pending_task
    url = f"{server.base_url}/dub-alt-format/{task_id}"
    wait = 3.0

    async def scenario() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(headers=auth(key), timeout=30) as client:
            return await _wait_requests(client, url, 12, wait)

    took = sorted(seconds for _, seconds in asyncio.run(scenario()))
    assert all(t < 1.0 for t in took[:7]), took  # over the limit: answered as wait=0
    assert all(t >= wait - 0.1 for t in took[7:]), took  # the five waiting ones waited
