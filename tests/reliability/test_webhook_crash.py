"""Issue 16: an undelivered webhook event survives a SIGKILL of ``altdub serve`` and is delivered after a restart.

A real server tells a real receiver on loopback of an export; the receiver answers 500, so the
event stays in the outbox; the server is SIGKILLed; the receiver recovers; a new server on the same
data directory delivers the event, with the same ``event_id``, and the export's URL in it is signed
by the new server (it downloads from there).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from altdub.media.probe import probe
from tests.e2e.conftest import ServerFactory, auth, import_run_id
from tests.receiver import Receiver, verify, wait_for
from tests.reliability.conftest import wait_task

pytestmark = pytest.mark.e2e

FAST = {
    "ALTDUB_WEBHOOK_ALLOW_PRIVATE": "true",
    "ALTDUB_WEBHOOK_FIRST_RETRY_SECONDS": "0.2",
    "ALTDUB_WEBHOOK_MAX_RETRY_SECONDS": "1",
    "ALTDUB_WEBHOOK_TIMEOUT_SECONDS": "1",
    "ALTDUB_WEBHOOK_PROGRESS_SECONDS": "0.5",
}
# A kill in the middle of a try leaves its lease (timeout + 30 s) to run out before another sender takes it.
AFTER_RESTART = 90.0


def _deliveries(base_url: str, key: str, task_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/webhooks/deliveries", params={"task_id": task_id}, headers=auth(key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()[::-1]


def _all_delivered(base_url: str, key: str, task_id: str) -> list[dict[str, Any]]:
    """The task's events, oldest first, once the final one is written and all are delivered (else [])."""
    found = _deliveries(base_url, key, task_id)
    final = any(d["type"] == "export.succeeded" for d in found)
    return found if final and all(d["status"] == "delivered" for d in found) else []


def test_an_undelivered_event_is_delivered_by_the_next_server_after_a_sigkill(
    servers: ServerFactory, receiver: Receiver, media, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    receiver.answer(500)
    first = servers(data_dir, env=FAST)
    key = first.api_key
    assert key
    run_id = import_run_id(first.base_url, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    body = {"output_format": "mp3", "languages": ["es-es"], "callback_url": receiver.url()}
    answer = httpx.post(f"{first.base_url}/runs/{run_id}/exports", headers=auth(key), json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task_id"]
    assert wait_task(first.base_url, key, task_id)["status"] == "SUCCESS"
    wait_for(lambda: len(receiver.received()) >= 3, 60, "three tries answered 500")
    secret = httpx.get(f"{first.base_url}/webhooks", headers=auth(key), timeout=10).json()["signing_secret"]

    first.crash()
    undelivered = [r.event for r in receiver.received()]
    event_ids = {e["event_id"] for e in undelivered}
    assert len(event_ids) == 1, f"a later event was sent before the first was delivered: {undelivered}"
    (event_id,) = event_ids
    tries_before = len(undelivered)

    receiver.answer(204)
    second = servers(data_dir, env=FAST)
    assert second.api_key is None  # the same data directory: no first start
    restarted = time.monotonic()
    events = wait_for(
        lambda: _all_delivered(second.base_url, key, task_id), AFTER_RESTART, "every event delivered after the restart"
    )
    delivered_in = time.monotonic() - restarted

    assert events[0]["event_id"] == event_id, "the event delivered after the restart is not the one tried before"
    codes = [a["status_code"] for a in events[0]["attempts"]]
    # A kill between the receiver's answer and the server's record of it loses that one try's record.
    recorded_before = codes.index(204) if 204 in codes else -1
    assert recorded_before in (tries_before, tries_before - 1), codes
    assert codes[:recorded_before] == [500] * recorded_before and codes[recorded_before:] == [204], codes
    delivered = receiver.delivered()
    assert [e["event_id"] for e in delivered] == [d["event_id"] for d in events], "each event once, in order"
    assert all(verify(secret, r) for r in receiver.received())
    assert [r.event["event_id"] for r in receiver.received()][: tries_before + 1] == [event_id] * (tries_before + 1)

    succeeded = delivered[-1]
    assert succeeded["type"] == "export.succeeded" and succeeded["task_id"] == task_id
    assert succeeded["output_url"].startswith(second.base_url), "the URL was not signed when sent"
    download = httpx.get(succeeded["output_url"], timeout=60)
    assert download.status_code == 200, download.text
    (tmp_path / "out.mp3").write_bytes(download.content)
    assert [s.codec for s in probe(tmp_path / "out.mp3").audio] == ["mp3"]
    print(
        f"webhook crash: {tries_before} tries answered 500 before the SIGKILL; "
        f"{len(events)} event(s) delivered {delivered_in:.1f} s after the restart"
    )
