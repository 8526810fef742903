"""Issue 16, scale-out: two ``altdub serve --no-workers`` and an ``altdub worker`` on PostgreSQL, Redis and S3,
each running a webhook sender; a receiver on loopback answering 2xx at the first try gets every event
exactly once (counted by ``event_id``), and each task's events in the order they were written.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from altdub.media.synth import make_tone, make_video
from tests.e2e.conftest import Server, auth, import_run_id
from tests.receiver import Receiver, verify, wait_for
from tests.reliability.conftest import wait_task
from tests.scaleout.conftest import Databases, Processes, S3Server, ScaleOut, new_prefix, pg_connect

pytestmark = [pytest.mark.scaleout, pytest.mark.e2e]

REDIS_DB = 11  # not the other scale-out modules' (13, 9): their workers would take this module's messages
SOURCE_SECONDS = 12.0
FORMATS = ["mp4", "mov", "mkv", "mp3", "wav", "flac"]  # six exports, each with a callback
FAST = {
    "ALTDUB_WEBHOOK_ALLOW_PRIVATE": "true",
    "ALTDUB_WEBHOOK_FIRST_RETRY_SECONDS": "0.2",
    "ALTDUB_WEBHOOK_MAX_RETRY_SECONDS": "1",
    "ALTDUB_WEBHOOK_TIMEOUT_SECONDS": "5",
    "ALTDUB_WEBHOOK_PROGRESS_SECONDS": "0.5",
}


@pytest.fixture
def cluster(
    postgres: Databases, own_redis_url: str, s3: S3Server, tmp_path: Path
) -> Iterator[tuple[ScaleOut, list[Server], Server]]:
    """Two APIs without workers and one worker, each with its own data directory, all sending webhooks."""
    scale_out = ScaleOut(database_url=postgres.create(), s3=s3, prefix=new_prefix("hooks"), broker_url=own_redis_url)
    processes = Processes()
    try:
        first = processes.api(tmp_path / "api1", scale_out.env(tmp_path / "api1", **FAST))
        assert first.api_key, first.text
        second = processes.api(tmp_path / "api2", scale_out.env(tmp_path / "api2", **FAST))
        worker = processes.worker(tmp_path / "worker", scale_out.env(tmp_path / "worker", **FAST))
        yield scale_out, [first, second], worker
    finally:
        processes.stop_all()


def _events(database_url: str) -> list[tuple[str, str, str, str, int]]:
    """(event_id, task_id, type, status, attempts) of every event, in the order they were written."""
    with pg_connect(database_url) as conn:
        return list(conn.execute("SELECT event_id, task_id, type, status, attempts FROM webhook_events ORDER BY id"))


def test_each_event_is_delivered_exactly_once_and_in_order_by_three_senders(
    cluster: tuple[ScaleOut, list[Server], Server], receiver: Receiver, tmp_path: Path
) -> None:
    scale_out, apis, worker = cluster
    key = apis[0].api_key
    assert key
    # MPEG-2: MP4 and MOV cannot hold it, so those exports encode H.264 for seconds and tell progress.
    video = make_video(tmp_path / "source.mkv", SOURCE_SECONDS, size="640x480", video_codec="mpeg2video")
    dub = make_tone(tmp_path / "dub-es.wav", SOURCE_SECONDS, tone_hz=550)
    run_id = import_run_id(apis[0].base_url, key, {"source": video, "dub_es-es": dub})

    task_ids = []
    for api, output_format in zip(itertools.cycle(apis), FORMATS, strict=False):
        body: dict[str, Any] = {"output_format": output_format, "callback_url": receiver.url()}
        answer = httpx.post(f"{api.base_url}/dub-alt-format/{run_id}/es-es", headers=auth(key), json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        task_ids.append(answer.json()["task_id"])
    assert len(set(task_ids)) == len(FORMATS)
    for task_id in task_ids:
        final = wait_task(apis[1].base_url, key, task_id, timeout=180)
        assert final["status"] == "SUCCESS", f"{final}\n{worker.text[-3000:]}"

    def all_delivered() -> list[tuple[str, str, str, str, int]]:
        rows = _events(scale_out.database_url)
        finals = {task for _, task, kind, _, _ in rows if kind == "export.succeeded"}
        return rows if finals == set(task_ids) and all(r[3] == "delivered" for r in rows) else []

    started = time.monotonic()
    rows = wait_for(all_delivered, 60, "every event delivered")
    waited = time.monotonic() - started

    received = receiver.received()
    counts = Counter(r.event["event_id"] for r in received)
    assert counts == {event_id: 1 for event_id, *_ in rows}, "an event was sent twice, or one never"
    assert all(attempts == 1 for *_, attempts in rows), rows
    assert all(r.answered == 204 for r in received)
    secret = httpx.get(f"{apis[1].base_url}/webhooks", headers=auth(key), timeout=10).json()["signing_secret"]
    assert all(verify(secret, r) for r in received)

    written: dict[str, list[str]] = defaultdict(list)
    for event_id, task_id, *_ in rows:
        written[task_id].append(event_id)
    arrived: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in received:
        arrived[r.event["task_id"]].append(r.event)
    for task_id in task_ids:
        events = arrived[task_id]
        assert [e["event_id"] for e in events] == written[task_id], f"task {task_id}: out of order"
        assert [e["type"] for e in events][-1] == "export.succeeded"
        assert {e["type"] for e in events[:-1]} <= {"export.progress"}
        progress = [e["progress"] for e in events]
        assert progress == sorted(progress) and progress[-1] == 100, progress
    assert sum(1 for r in rows if r[2] == "export.progress") >= 2, "no progress told: the order was not tested"
    for api in apis:  # both APIs list the same attempts
        listed = httpx.get(f"{api.base_url}/webhooks/deliveries", headers=auth(key), timeout=10).json()
        assert sorted(d["event_id"] for d in listed) == sorted(counts)
        assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 204 for d in listed)
    print(
        f"scale-out webhooks: {len(rows)} events of {len(task_ids)} exports "
        f"({sum(1 for r in rows if r[2] == 'export.progress')} progress), each delivered once; "
        f"all delivered {waited:.1f} s after the last export ended"
    )
