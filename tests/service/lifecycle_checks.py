"""The storage lifecycle's checks, shared by the local-files and SQLite tests (tests/service) and the S3 and
PostgreSQL ones (tests/scaleout): time is the context's clock, moved by the test, never slept.

Each check drives a TestClient app (real conversions, real storage) and reads what is stored from outside
the service: the files on disk or the objects in the bucket, through a ``Listing`` (storage key -> size).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from altdub.db.models import AudioIntermediate, ExportTask, RunFile
from altdub.service import lifecycle
from altdub.service.context import Context
from tests.conftest import auth, wait_for_task

GB = 1000**3
REMOVED = "removed by the storage lifecycle"
Listing = Callable[[], dict[str, int]]  # every stored object: storage key -> bytes


class Clock:
    """The lifecycle's time (``Context.clock``): starts at the real now and moves only when the test says."""

    def __init__(self) -> None:
        self.start = self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def at(self, **since_start: float) -> datetime:
        """Move to ``start + timedelta(**since_start)``."""
        self.now = self.start + timedelta(**since_start)
        return self.now


def context_of(client: TestClient) -> Context:
    return client.app.state.context  # type: ignore[attr-defined]


def with_clock(ctx: Context) -> Clock:
    clock = Clock()
    ctx.clock = clock
    return clock


def local_listing(root: Path) -> Listing:
    """The files under a local storage root (published ones: partial files are hidden)."""

    def listing() -> dict[str, int]:
        return {
            p.relative_to(root).as_posix(): p.stat().st_size
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        }

    return listing


def task_row(ctx: Context, task_id: str) -> ExportTask:
    with ctx.sessions() as session:
        task = session.get(ExportTask, task_id)
        assert task is not None, task_id
        session.expunge(task)
        return task


def input_keys(ctx: Context) -> dict[str, int]:
    """Every run's stored inputs, as the database records them: key -> size."""
    with ctx.sessions() as session:
        return {f.storage_key: f.size for f in session.query(RunFile)}


def intermediate_keys(ctx: Context) -> dict[str, int]:
    """The audio intermediates kept (service/intermediates.py): storage key -> bytes."""
    with ctx.sessions() as session:
        rows = session.execute(select(AudioIntermediate.storage_key, AudioIntermediate.size)).all()
    return {row.storage_key: row.size for row in rows}


def export_key(ctx: Context, task_id: str) -> str:
    key = task_row(ctx, task_id).storage_key
    assert key is not None, f"task {task_id} has no file"
    return key


def poll(client: TestClient, key: str, task_id: str) -> dict[str, Any]:
    """GET /dub-alt-format/{task_id}: the task's state (handing out its URL is a use)."""
    response = client.get(f"/dub-alt-format/{task_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def make_export(
    client: TestClient, key: str, run_id: int, output_format: str, language: str = "es-es", **options: object
) -> str:
    """A new export, made to SUCCESS: its task id."""
    response = client.post(
        f"/dub-alt-format/{run_id}/{language}", headers=auth(key), json={"output_format": output_format, **options}
    )
    assert response.status_code == 200, response.text
    assert "task_id" in response.json(), f"{output_format} already existed: {response.text}"
    task_id = response.json()["task_id"]
    assert wait_for_task(client, key, task_id)["status"] == "SUCCESS"
    return task_id


def removed(ctx: Context, task_ids: dict[str, str]) -> set[str]:
    """The names (of ``task_ids``, name -> task id) whose export the lifecycle removed."""
    return {name for name, task_id in task_ids.items() if task_row(ctx, task_id).evicted_at is not None}


def assert_removed_answer(body: dict[str, Any]) -> None:
    """A removed export's task: still SUCCESS, no URL, a message saying so and what to do."""
    assert body["status"] == "SUCCESS", body
    assert body.get("output_url") is None, body
    assert REMOVED in (body["message"] or ""), body
    assert "request it again" in body["message"], body


@dataclass(frozen=True)
class Made:
    """A run with four exports of its es-es dub, all made while the clock stood at its start."""

    run_id: int
    tasks: dict[str, str]  # format -> task id
    keys: dict[str, str]  # format -> storage key
    sizes: dict[str, int]  # format -> bytes stored


FORMATS = ("mp3", "wav", "flac", "m4a")


def make_four(client: TestClient, key: str, run_id: int, listing: Listing) -> Made:
    ctx = context_of(client)
    tasks = {fmt: make_export(client, key, run_id, fmt) for fmt in FORMATS}
    keys = {fmt: export_key(ctx, task_id) for fmt, task_id in tasks.items()}
    stored = listing()
    sizes = {fmt: stored[k] for fmt, k in keys.items()}
    assert all(size > 0 for size in sizes.values()), sizes
    return Made(run_id, tasks, keys, sizes)


def check_ttl(client: TestClient, key: str, run_id: int, listing: Listing, *, downloads_seen: bool) -> None:
    """ALTDUB_EXPORT_TTL_DAYS=30: an export unused for longer is removed (file and all), one used since is kept.

    A poll is a use; so is a download when the service serves it (``downloads_seen``: local storage; an S3
    bucket serves its own URLs, so there a second poll stands in). Inputs stay, whatever their age.
    """
    ctx = context_of(client)
    clock = with_clock(ctx)
    ctx.settings.export_ttl_days = 30
    made = make_four(client, key, run_id, listing)
    inputs = input_keys(ctx)
    assert inputs and all(listing()[k] == size for k, size in inputs.items())

    clock.at(days=20)
    poll(client, key, made.tasks["mp3"])  # used at day 20 by a poll...
    if downloads_seen:
        url = poll(client, key, made.tasks["wav"])["output_url"]
        clock.at(days=20, hours=1)  # ...and the wav by a download an hour later (its use is the download's)
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) == made.sizes["wav"]
    else:
        poll(client, key, made.tasks["wav"])
    assert lifecycle.sweep(ctx) == []  # nothing unused for 30 days yet

    clock.at(days=35)  # flac and m4a: 35 days unused; mp3 and wav: 15
    swept = lifecycle.sweep(ctx)
    assert removed(ctx, made.tasks) == {"flac", "m4a"}
    assert {r.task_id for r in swept} <= {made.tasks["flac"], made.tasks["m4a"]}
    assert all(r.reason == "not used for 30 days" for r in swept)
    stored = listing()
    assert made.keys["flac"] not in stored and made.keys["m4a"] not in stored
    assert stored[made.keys["mp3"]] == made.sizes["mp3"] and stored[made.keys["wav"]] == made.sizes["wav"]
    assert_removed_answer(poll(client, key, made.tasks["flac"]))
    assert poll(client, key, made.tasks["mp3"])["output_url"]  # kept: still answered with its URL...

    if downloads_seen:  # the wav's last use is its download, an hour after its poll
        clock.at(days=50, minutes=30)
        lifecycle.sweep(ctx)
        assert removed(ctx, made.tasks) == {"flac", "m4a"}
    clock.at(days=51)  # the wav: 31 days unused; the mp3 was used again at day 35 (the poll above)
    lifecycle.sweep(ctx)
    assert removed(ctx, made.tasks) == {"flac", "m4a", "wav"}
    clock.at(days=66)
    lifecycle.sweep(ctx)
    assert removed(ctx, made.tasks) == set(FORMATS)
    stored = listing()
    assert not set(made.keys.values()) & set(stored), "a removed export's file is still stored"
    assert {k: stored[k] for k in inputs} == inputs  # every input kept, untouched, after 66 days


def check_budget_order(
    client: TestClient, key: str, run_id: int, listing: Listing, caplog: pytest.LogCaptureFixture
) -> None:
    """A tiny ALTDUB_STORAGE_BUDGET_GB: the least recently used go first, only until the store fits; never one
    used within ALTDUB_URL_TTL + 5 min; when nothing more can go, a warning says so."""
    ctx = context_of(client)
    clock = with_clock(ctx)
    made = make_four(client, key, run_id, listing)
    used = ["flac", "mp3", "m4a", "wav"]  # the order of their last uses: least recent first, unlike the making
    for hour, fmt in enumerate(used, start=1):
        clock.at(hours=hour)
        poll(client, key, made.tasks[fmt])
    clock.at(hours=10)  # every use older than a URL's lifetime (1 h) and 5 min
    encoded = intermediate_keys(ctx)  # the m4a's encoded audio (intermediates.py): removed first, being no deliverable
    total = sum(listing().values()) - sum(encoded.values())  # the inputs and the four exports
    sizes = made.sizes

    def budget(stored_bytes: int) -> None:
        ctx.settings.storage_budget_gb = stored_bytes / GB

    budget(total - sizes["flac"] - sizes["mp3"] // 2)  # the flac is not enough; the flac and the mp3 are
    swept = lifecycle.sweep(ctx)
    assert encoded and not set(encoded) & set(listing()) and not intermediate_keys(ctx)
    assert removed(ctx, made.tasks) == {"flac", "mp3"}, "not the two least recently used, or not only them"
    if swept:  # (the app's own sweeper, once a minute, may have done it first: the outcome is the same)
        assert [r.task_id for r in swept] == [made.tasks["flac"], made.tasks["mp3"]]
        reason = f"the storage budget of {ctx.settings.storage_budget_gb:g} GB was reached"
        assert all(r.reason == reason for r in swept)
    assert sum(listing().values()) == total - sizes["flac"] - sizes["mp3"]

    budget(total - sizes["flac"] - sizes["mp3"] - 1)  # one byte over: the next least recently used goes
    lifecycle.sweep(ctx)
    assert removed(ctx, made.tasks) == {"flac", "mp3", "m4a"}

    clock.at(hours=20)
    poll(client, key, made.tasks["wav"])  # used now: kept for a URL's lifetime and 5 min, whatever the budget
    budget(1)  # one byte: only the inputs would already be far over
    with caplog.at_level(logging.WARNING, logger="altdub.service.lifecycle"):
        assert lifecycle.sweep(ctx) == []
    assert removed(ctx, made.tasks) == {"flac", "mp3", "m4a"}
    assert any("nothing more can be removed" in r.getMessage() for r in caplog.records), caplog.text
    assert made.keys["wav"] in listing()

    protected = timedelta(seconds=ctx.settings.url_ttl) + lifecycle.URL_MARGIN
    clock.now = clock.start + timedelta(hours=20) + protected - timedelta(seconds=1)
    assert lifecycle.sweep(ctx) == [] and made.keys["wav"] in listing()
    clock.now += timedelta(seconds=2)  # past the protection
    lifecycle.sweep(ctx)
    assert removed(ctx, made.tasks) == set(FORMATS)
    stored = listing()
    assert not set(made.keys.values()) & set(stored)
    inputs = input_keys(ctx)
    assert {k: stored[k] for k in inputs} == inputs  # over budget, yet no input removed
