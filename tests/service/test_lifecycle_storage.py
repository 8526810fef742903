"""The storage lifecycle (DELIVERIES.md §8) on SQLite and local files: TTL, budget, what is never removed,
the removed export's task and its remaking, a download in progress, several processes sweeping.

Time is ``Context.clock``, moved by the test; conversions are real FFmpeg runs; what is stored is read on disk.
(Not tests/reliability/test_lifecycle.py: that one is the server process's lifecycle.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import TaskStatus
from altdub.media.probe import probe
from altdub.media.synth import make_tone
from altdub.service import lifecycle
from altdub.service.context import build_context
from tests.api.conftest import files_root, new_key
from tests.conftest import SOURCE_SECONDS, Media, auth, make_run, wait_for_task
from tests.e2e.conftest import ServerFactory, import_run_id
from tests.e2e.conftest import wait_for_task as wait_over_http
from tests.service.lifecycle_checks import (
    assert_removed_answer,
    check_budget_order,
    check_ttl,
    context_of,
    export_key,
    input_keys,
    local_listing,
    make_export,
    poll,
    removed,
    task_row,
    with_clock,
)

DURATION_TOLERANCE = 0.05  # spec §4


@pytest.fixture
def run_id(client: TestClient, api_key: str, media: Media) -> int:
    return make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})


def test_ttl_removes_exports_unused_for_that_long_and_keeps_the_used_and_the_inputs(
    client: TestClient, api_key: str, run_id: int, settings: Settings
) -> None:
    check_ttl(client, api_key, run_id, local_listing(files_root(settings)), downloads_seen=True)


def test_budget_removes_the_least_recently_used_first_until_it_fits(
    client: TestClient, api_key: str, run_id: int, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    check_budget_order(client, api_key, run_id, local_listing(files_root(settings)), caplog)


def test_an_export_being_made_is_never_removed(settings: Settings, media: Media) -> None:
    """A PENDING task (no worker takes it here) older than the TTL, over a tiny budget: left alone, as are inputs."""
    settings.export_ttl_days = 1
    settings.storage_budget_gb = 1e-9
    with TestClient(create_app(settings, workers=False)) as idle:
        ctx = context_of(idle)
        clock = with_clock(ctx)
        key = new_key(idle, "first")
        run = make_run(idle, key, {"source": media.video, "dub_es-es": media.dub_wav})
        response = idle.post(f"/dub-alt-format/{run}/es-es", headers=auth(key), json={"output_format": "mp3"})
        task_id = response.json()["task_id"]
        inputs = input_keys(ctx)
        clock.at(days=30)
        assert lifecycle.sweep(ctx) == []
        task = task_row(ctx, task_id)
        assert task.status == TaskStatus.PENDING and task.evicted_at is None and task.message is None
        assert poll(idle, key, task_id)["status"] == "PENDING"
        listing = local_listing(files_root(settings))()
        assert {k: listing[k] for k in inputs} == inputs


def test_a_removed_export_answers_success_without_url_and_is_made_anew_when_asked_again(
    client: TestClient, api_key: str, media: Media, settings: Settings, tmp_path: Path
) -> None:
    """Both endpoints: the removed task's answer and listing; the next identical request is a new task whose
    file is made again (probed); the cached fast path never answers the removed file's URL."""
    ctx = context_of(client)
    clock = with_clock(ctx)
    ctx.settings.export_ttl_days = 30
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac})
    camb = (f"/dub-alt-format/{run_id}/es-es", {"output_format": "mp3"})
    native = (f"/runs/{run_id}/exports", {"output_format": "mkv", "languages": ["es-es", "fr-fr"]})

    def ask(request: tuple[str, dict[str, object]]) -> dict[str, str]:
        response = client.post(request[0], headers=auth(api_key), json=request[1])
        assert response.status_code == 200, response.text
        return response.json()

    first = {}
    for name, request in (("mp3", camb), ("mkv", native)):
        first[name] = ask(request)["task_id"]
        assert wait_for_task(client, api_key, first[name])["status"] == "SUCCESS"
        assert "output_url" in ask(request)  # asked again: the cached fast path answers the file at once
    old_keys = {name: export_key(ctx, task_id) for name, task_id in first.items()}

    clock.at(days=31)
    lifecycle.sweep(ctx)
    assert removed(ctx, first) == {"mp3", "mkv"}
    stored = local_listing(files_root(settings))()
    assert not set(old_keys.values()) & set(stored)

    for task_id in first.values():
        assert_removed_answer(poll(client, api_key, task_id))
    listed = {e["task_id"]: e for e in client.get(f"/runs/{run_id}/exports", headers=auth(api_key)).json()}
    for task_id in first.values():
        assert_removed_answer(listed[task_id])
        assert listed[task_id]["size"] is not None  # what it weighed, still told

    again = {}
    for name, request in (("mp3", camb), ("mkv", native)):
        answer = ask(request)
        assert set(answer) == {"task_id"}, f"the removed {name} was answered: {answer}"  # not the fast path's URL
        again[name] = answer["task_id"]
        assert again[name] != first[name]
        done = wait_for_task(client, api_key, again[name])
        assert done["status"] == "SUCCESS" and done["message"] is None, done
        assert urlsplit(done["output_url"]).path.endswith(f"/{again[name]}.{name}")
    assert ask(camb)["output_url"].split("?")[0].endswith(f"/{again['mp3']}.mp3")  # the fast path: the new file
    same = ask((native[0], {"output_format": "mp3", "languages": ["es-es"]}))  # the Camb export by the other path
    assert urlsplit(same["output_url"]).path.endswith(f"/{again['mp3']}.mp3")

    mp3 = tmp_path / "again.mp3"
    mp3.write_bytes(client.get(ask(camb)["output_url"]).content)
    info = probe(mp3)
    assert info.format_name == "mp3" and [s.codec for s in info.audio] == ["mp3"]
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE
    mkv = tmp_path / "again.mkv"
    mkv.write_bytes(client.get(ask(native)["output_url"]).content)
    info = probe(mkv)
    assert [s.codec for s in info.video] == ["h264"]
    assert [(a.language, a.default) for a in info.audio] == [("spa", True), ("fre", False)]
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE

    usage = client.get("/storage/usage", headers=auth(api_key)).json()
    assert (usage["exports"], usage["removed_exports"]) == (2, 2)


# --- a download under way --------------------------------------------------------------------------------

LONG_SECONDS = 60.0


@pytest.fixture(scope="module")
def long_dub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of 5.1 24-bit PCM: a 52 MB WAV export, far more than loopback's socket buffers hold."""
    return make_tone(tmp_path_factory.mktemp("long") / "long.wav", LONG_SECONDS, channels=6, codec="pcm_s24le")


@pytest.fixture
def start_altdub() -> Iterator[ServerFactory]:
    factory = ServerFactory()
    yield factory
    factory.stop_all()


def _open_fds_to(pid: int, path: Path) -> list[str]:
    """Where the process's open file descriptors point, for those naming ``path`` (deleted or not)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


@pytest.mark.e2e
def test_a_download_under_way_finishes_when_its_export_is_removed(
    start_altdub: ServerFactory, long_dub: Path, tmp_path: Path
) -> None:
    """A real ``altdub serve`` streams a 52 MB export; another process's sweep removes it mid-way (its clock past
    the protection); the download still ends with every byte, and the file is gone."""
    data_dir = tmp_path / "data"
    server = start_altdub(data_dir, env={"ALTDUB_EXPORT_TTL_DAYS": "1"})
    assert server.api_key
    run_id = import_run_id(server.base_url, server.api_key, {"dub_es-es": long_dub})
    answer = httpx.post(
        f"{server.base_url}/dub-alt-format/{run_id}/es-es",
        headers=auth(server.api_key),
        json={"output_format": "wav"},
        timeout=30,
    ).json()
    done = wait_over_http(server.base_url, server.api_key, answer["task_id"], timeout=120)
    assert done["status"] == "SUCCESS", done

    sweeper = build_context(Settings(data_dir=data_dir, export_ttl_days=1), migrate=False)  # another process
    try:
        clock = with_clock(sweeper)
        stored = data_dir / "files" / export_key(sweeper, answer["task_id"])
        original = tmp_path / "original.wav"
        shutil.copyfile(stored, original)
        with httpx.stream("GET", done["output_url"], timeout=30) as response:
            assert response.status_code == 200
            chunks = response.iter_raw(64 * 1024)
            received = hashlib.sha256()
            first = next(chunks)
            received.update(first)
            count = len(first)
            clock.at(days=2)  # past the TTL and past the URL's protection
            swept = lifecycle.sweep(sweeper)
            assert [r.task_id for r in swept] == [answer["task_id"]]
            assert not stored.exists(), "the sweep did not remove the file"
            open_fds = _open_fds_to(server.process.pid, stored)
            assert open_fds and all(t.endswith(" (deleted)") for t in open_fds), open_fds  # still being read
            for chunk in chunks:
                received.update(chunk)
                count += len(chunk)
        assert count == original.stat().st_size
        assert received.hexdigest() == hashlib.sha256(original.read_bytes()).hexdigest()
    finally:
        sweeper.engine.dispose()
    assert httpx.get(done["output_url"], timeout=30).status_code == 404  # a new download finds nothing
    status = httpx.get(f"{server.base_url}/dub-alt-format/{answer['task_id']}", headers=auth(server.api_key)).json()
    assert_removed_answer(status)


# --- several processes -------------------------------------------------------------------------------------


def test_a_url_handed_out_by_one_process_is_not_removed_by_another(
    client: TestClient, api_key: str, run_id: int, settings: Settings
) -> None:
    """Each serving process sweeps; the uses another one saw are in its memory until its next pass. An export
    whose URL was just handed out elsewhere is kept for that URL's lifetime, even over a budget of one byte."""
    ctx = context_of(client)
    clock = with_clock(ctx)
    task_id = make_export(client, api_key, run_id, "mp3")
    other = build_context(settings.model_copy(update={"storage_budget_gb": 1e-9}), migrate=False)  # a second process
    try:
        other_clock = with_clock(other)
        clock.at(days=40)
        url = poll(client, api_key, task_id)["output_url"]  # handed out now, by this process
        other_clock.at(days=40, minutes=1)  # a minute later the other process sweeps
        assert lifecycle.sweep(other) == []
        assert client.get(url).status_code == 200
        other_clock.at(days=40, hours=1, minutes=6)  # once the URL has expired (1 h) and 5 min more: removed
        assert [r.task_id for r in lifecycle.sweep(other)] == [task_id]
        assert_removed_answer(poll(client, api_key, task_id))
    finally:
        other.engine.dispose()


def test_a_streaming_package_is_removed_whole_and_its_prefix_url_stops(
    client: TestClient, api_key: str, run_id: int, settings: Settings
) -> None:
    """A package is a folder: removing it removes every segment and playlist, not only the file its URL names."""
    ctx = context_of(client)
    clock = with_clock(ctx)
    listing = local_listing(files_root(settings))
    answer = client.post(f"/runs/{run_id}/exports", headers=auth(api_key), json={"output_format": "hls"})
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task_id"]
    url = wait_for_task(client, api_key, task_id)["output_url"]
    folder = task_row(ctx, task_id).storage_key.rpartition("/")[0] + "/"
    package = [key for key in listing() if key.startswith(folder)]
    assert len(package) > 4 and any(k.endswith(".m4s") for k in package), package
    assert client.get(url).status_code == 200

    ctx.settings.export_ttl_days = 1
    clock.at(days=2)
    assert [r.task_id for r in lifecycle.sweep(ctx)] == [task_id]
    assert [key for key in listing() if key.startswith(folder)] == []  # every file of the folder
    assert client.get(url).status_code == 404  # the signature still opens the prefix: nothing is there
    status = client.get(f"/dub-alt-format/{task_id}", headers=auth(api_key)).json()
    assert status["status"] == TaskStatus.SUCCESS and "output_url" not in status and "removed" in status["message"]
