"""The storage lifecycle (DELIVERIES.md §8) on PostgreSQL and an S3 bucket (moto's server), in process.

The TTL and budget checks of tests/service, read from the bucket; GET /storage/usage against the objects; and
two processes sweeping at once: each export removed once, and no more of them than the budget calls for.
(Not test_lifecycle_scaleout.py: that one is a run deleted while a worker converts it.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from altdub.service import lifecycle
from altdub.service.context import Context, build_context
from tests.conftest import auth, make_run
from tests.scaleout.conftest import Databases, S3Server, ScaleOut, new_key, new_prefix, pg_s3_client
from tests.service.lifecycle_checks import (
    GB,
    Listing,
    check_budget_order,
    check_ttl,
    context_of,
    export_key,
    make_export,
    poll,
    removed,
    with_clock,
)

pytestmark = pytest.mark.scaleout


@pytest.fixture
def deployment(postgres: Databases, s3: S3Server) -> ScaleOut:
    """A database and a bucket prefix of the test's own: the service's totals are what the bucket holds."""
    return ScaleOut(database_url=postgres.create(), s3=s3, prefix=new_prefix("lifecycle"))


@pytest.fixture
def app(deployment: ScaleOut, aws_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    with pg_s3_client(deployment.settings(tmp_path / "data")) as client:
        yield client, new_key(client, "lifecycle")


@pytest.fixture
def run_id(app: tuple[TestClient, str], media) -> int:
    client, key = app
    return make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav})


def bucket_listing(deployment: ScaleOut) -> Listing:
    """The objects under the deployment's prefix: storage key -> size."""
    prefix = deployment.prefix + "/"

    def listing() -> dict[str, int]:
        found: dict[str, int] = {}
        pages = deployment.s3.client().get_paginator("list_objects_v2").paginate(Bucket=deployment.s3.bucket)
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].startswith(prefix):
                    found[item["Key"].removeprefix(prefix)] = item["Size"]
        return found

    return listing


def test_ttl_deletes_the_objects_from_the_bucket(
    app: tuple[TestClient, str], run_id: int, deployment: ScaleOut
) -> None:
    client, key = app
    check_ttl(client, key, run_id, bucket_listing(deployment), downloads_seen=False)  # the bucket serves downloads


def test_budget_on_postgresql(
    app: tuple[TestClient, str], run_id: int, deployment: ScaleOut, caplog: pytest.LogCaptureFixture
) -> None:
    client, key = app
    check_budget_order(client, key, run_id, bucket_listing(deployment), caplog)


def test_usage_is_what_the_bucket_holds(app: tuple[TestClient, str], run_id: int, deployment: ScaleOut) -> None:
    client, key = app
    ctx = context_of(client)
    clock = with_clock(ctx)
    tasks = {fmt: make_export(client, key, run_id, fmt) for fmt in ("mp3", "flac")}
    ctx.settings.export_ttl_days = 10
    poll(client, key, tasks["mp3"])
    clock.at(days=11)
    poll(client, key, tasks["mp3"])
    lifecycle.sweep(ctx)
    assert removed(ctx, tasks) == {"flac"}
    objects = bucket_listing(deployment)()
    usage = client.get("/storage/usage", headers=auth(key)).json()
    inputs = {k: size for k, size in objects.items() if "/runs/" in k}
    exports = {k: size for k, size in objects.items() if "/exports/" in k}
    assert set(inputs) | set(exports) == set(objects)
    assert list(exports) == [export_key(ctx, tasks["mp3"])]
    assert usage == {
        "inputs_bytes": sum(inputs.values()),
        "exports_bytes": sum(exports.values()),
        "exports": 1,
        "removed_exports": 1,
        "export_ttl_days": 10,
        "storage_budget_gb": None,
    }


def sweep_at_once(*contexts: Context) -> list[list[lifecycle.Removed]]:
    """``lifecycle.sweep`` in each context, all started at the same moment (threads behind a barrier)."""
    barrier = threading.Barrier(len(contexts))
    results: dict[int, list[lifecycle.Removed]] = {}

    def sweep(index: int) -> None:
        barrier.wait()
        results[index] = lifecycle.sweep(contexts[index])

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(len(contexts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == len(contexts), "a sweep failed (see the log)"
    return [results[i] for i in range(len(contexts))]


def test_two_processes_sweeping_at_once_remove_each_export_once_and_no_more_than_needed(
    app: tuple[TestClient, str], run_id: int, deployment: ScaleOut
) -> None:
    """Six exports; the budget calls for the two least recently used to go. Two contexts (two serving
    processes) sweep at the same moment, several rounds: conditional updates let each export go once, and
    neither process removes more because the other already brought the store under the budget."""
    client, key = app
    ctx = context_of(client)
    clock = with_clock(ctx)
    listing = bucket_listing(deployment)
    names = ["mp3-128", "mp3-192", "mp3-256", "mp3-320", "flac", "wav"]
    tasks = {
        name: make_export(client, key, run_id, "mp3", audio_bitrate=name[4:] + "k")
        if name.startswith("mp3")
        else make_export(client, key, run_id, name)
        for name in names
    }
    keys = {name: export_key(ctx, task_id) for name, task_id in tasks.items()}
    sizes = {name: listing()[keys[name]] for name in names}
    for hour, name in enumerate(names, start=1):  # least recently used first
        clock.at(hours=hour)
        poll(client, key, tasks[name])
    lifecycle.record_uses(ctx)  # as this process's next pass would: both sweepers see the same uses
    other = build_context(deployment.settings(ctx.settings.data_dir), migrate=False)
    try:
        other.clock = clock
        kept = list(names)
        for round_ in range(3):  # each round: the two least recently used still kept must go, no more
            clock.now += timedelta(hours=10)
            need = sizes[kept[0]] + sizes[kept[1]] // 2
            budget = (sum(listing().values()) - need) / GB
            for context in (ctx, other):
                context.settings.storage_budget_gb = budget
            results = sweep_at_once(ctx, other)
            ids = [r.task_id for r in results[0] + results[1]]
            assert len(ids) == len(set(ids)), f"round {round_}: an export removed twice: {results}"
            gone, kept = kept[:2], kept[2:]
            assert sorted(ids) == sorted(tasks[name] for name in gone), (round_, results)
            assert removed(ctx, tasks) == set(names) - set(kept), round_
            assert not {keys[name] for name in gone} & set(listing())
    finally:
        other.engine.dispose()
