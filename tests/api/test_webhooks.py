"""Webhooks (issue 16, spec §7) through the API, with a real receiver on loopback (tests/receiver.py).

The app's own sender thread delivers (as in ``altdub serve``); the receiver fails, hangs, redirects
and recovers on command. Settings make it quick: a 0.2 s first retry (at most 1 s between tries),
a 1 s timeout, a progress event at most every second, and private addresses allowed (the receiver is
on loopback) except in the SSRF tests, which run an app with the default.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import FileRole, RunFile
from altdub.media.probe import probe
from altdub.media.synth import make_tone, make_video
from tests.api.conftest import new_key
from tests.conftest import SOURCE_SECONDS, auth, make_run, wait_for_task
from tests.e2e.conftest import ALTDUB, clean_env
from tests.receiver import REDIRECT_PATH, Receiver, verify, wait_for

DEADLINE = 60.0  # seconds any wait for a delivery may take (the tries come every second at most)
# Longer than the half second between two progress writes (ProgressWriter): else every write would be an
# event, and a throttle that did nothing would pass.
PROGRESS_SECONDS = 1.0
FAST = {
    "webhook_allow_private": True,
    "webhook_first_retry_seconds": 0.2,
    "webhook_max_retry_seconds": 1.0,
    "webhook_timeout_seconds": 1.0,
    "webhook_progress_seconds": PROGRESS_SECONDS,
}
COMMON_FIELDS = {"event_id", "type", "created_at", "task_id", "run_id", "languages", "output_format", "status"}
PROGRESS_FIELDS = COMMON_FIELDS | {"progress"}
SUCCEEDED_FIELDS = PROGRESS_FIELDS | {"message", "output_url"}
FAILED_FIELDS = PROGRESS_FIELDS | {"message", "exception_reason"}
LONG_SECONDS = 30.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", create_demo=False, workers=2, task_time_limit=120, **FAST)


def strict_settings(data_dir: Path) -> Settings:
    """The default ALTDUB_WEBHOOK_ALLOW_PRIVATE=false (the rest quick, as in ``settings``)."""
    return Settings(data_dir=data_dir, create_demo=False, workers=2, **{**FAST, "webhook_allow_private": False})


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, media) -> Iterator[tuple[TestClient, str, int]]:
    """(client, key, run_id) of an app with the default ALTDUB_WEBHOOK_ALLOW_PRIVATE=false."""
    with TestClient(create_app(strict_settings(tmp_path_factory.mktemp("strict")))) as client:
        key = new_key(client, "careful")
        yield client, key, make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 30 s MPEG-2 video and its dub: the mp4 export encodes H.264 for seconds, reporting progress."""
    folder = tmp_path_factory.mktemp("long")
    video = make_video(folder / "long.mkv", LONG_SECONDS, size="640x480", video_codec="mpeg2video")
    return video, make_tone(folder / "long-es.wav", LONG_SECONDS, tone_hz=550)


# --- helpers ------------------------------------------------------------------------------------------------------


def post_export(
    client: TestClient, key: str, run_id: int, callback_url: str | None, *, camb: bool = False, **options: Any
) -> dict[str, Any]:
    """An export of es-es by the native endpoint (or the Camb one), with ``callback_url``; the answer's body."""
    body: dict[str, Any] = {"output_format": "mp3", **options}
    if callback_url is not None:
        body["callback_url"] = callback_url
    if camb:
        response = client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json=body)
    else:
        response = client.post(f"/runs/{run_id}/exports", headers=auth(key), json={**body, "languages": ["es-es"]})
    assert response.status_code == 200, response.text
    return response.json()


def deliveries(client: TestClient, key: str, task_id: str | None = None) -> list[dict[str, Any]]:
    """GET /webhooks/deliveries, oldest event first."""
    params = {} if task_id is None else {"task_id": task_id}
    response = client.get("/webhooks/deliveries", headers=auth(key), params=params)
    assert response.status_code == 200, response.text
    return response.json()[::-1]


def delivery(client: TestClient, key: str, event_id: str) -> dict[str, Any]:
    (found,) = [d for d in deliveries(client, key) if d["event_id"] == event_id]
    return found


def signing_secret(client: TestClient, key: str) -> str:
    response = client.get("/webhooks", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["signing_secret"]


def all_delivered(client: TestClient, key: str, task_id: str, final: str) -> list[dict[str, Any]]:
    """The task's events once its ``final`` event is written and every one is delivered (else [])."""
    found = deliveries(client, key, task_id)
    done = found and any(d["type"] == final for d in found) and all(d["status"] == "delivered" for d in found)
    return found if done else []


def parsed_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def runs_of_codes(attempts: list[dict[str, Any]]) -> list[int | None]:
    """The status codes of consecutive tries, repeats collapsed: [500, 500, None, 302, 204] -> [500, None, 302, 204]."""
    return [code for code, _ in itertools.groupby(a["status_code"] for a in attempts)]


# --- at least once: failures, timeouts, redirects, recovery -----------------------------------------------------


def test_an_event_is_tried_through_errors_timeouts_and_redirects_until_delivered_with_one_event_id(
    client: TestClient, api_key: str, media, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.answer(500)
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = post_export(client, api_key, run_id, receiver.url())["task_id"]
    final = wait_for_task(client, api_key, task_id)
    assert final["status"] == "SUCCESS", final

    wait_for(lambda: len(receiver.received()) >= 2, DEADLINE, "two tries answered 500")
    first_id = receiver.events()[0]["event_id"]

    def tries(predicate: Any) -> bool:
        return any(predicate(a) for a in delivery(client, api_key, first_id)["attempts"])

    receiver.hang()
    wait_for(lambda: tries(lambda a: a["error"] == "no answer within 1 s"), DEADLINE, "a try that timed out")
    receiver.redirect(302)
    wait_for(lambda: tries(lambda a: a["status_code"] == 302), DEADLINE, "a try answered 302")
    receiver.answer(204)
    events = wait_for(lambda: all_delivered(client, api_key, task_id, "export.succeeded"), DEADLINE, "delivery")

    # Until the receiver recovered, only the task's first event was tried, always with the same event_id.
    first = delivery(client, api_key, first_id)
    tried = [r for r in receiver.received() if r.event["event_id"] == first_id]
    assert [r.event["event_id"] for r in receiver.received()[: len(tried)]] == [first_id] * len(tried)
    assert len(tried) == len(first["attempts"]) >= 5
    assert {r.event["type"] for r in tried} == {first["type"]}
    assert runs_of_codes(first["attempts"]) == [500, None, 302, 204], first["attempts"]
    for attempt in first["attempts"]:
        code, error = attempt["status_code"], attempt["error"]
        expected = {500: "answered 500", 302: "answered 302", 204: None}.get(code, error)
        assert error == expected and attempt["latency_ms"] >= 0, attempt
    assert any(a["error"] == "no answer within 1 s" for a in first["attempts"] if a["status_code"] is None)
    assert [a["attempted_at"] for a in first["attempts"]] == sorted(a["attempted_at"] for a in first["attempts"])
    assert first["status"] == "delivered" and first["delivered_at"] and first["next_attempt_at"] is None
    assert receiver.received(REDIRECT_PATH) == [], "a redirect was followed"

    # Every event of the task reached the receiver with a 2xx, once, in the order they were written.
    delivered = receiver.delivered()
    assert [e["event_id"] for e in delivered] == [d["event_id"] for d in events]
    assert [e["type"] for e in delivered][-1] == "export.succeeded"
    assert {e["type"] for e in delivered[:-1]} <= {"export.progress"}
    secret = signing_secret(client, api_key)
    assert all(verify(secret, r) for r in receiver.received()), "a signature does not verify with GET /webhooks"
    assert not verify(secret + "x", receiver.received()[0])

    succeeded = delivered[-1]
    assert set(succeeded) == SUCCEEDED_FIELDS
    assert {k: succeeded[k] for k in ("task_id", "run_id", "languages", "output_format", "status", "progress")} == {
        "task_id": task_id,
        "run_id": run_id,
        "languages": ["es-es"],
        "output_format": "mp3",
        "status": "SUCCESS",
        "progress": 100,
    }
    assert succeeded["message"] == final.get("message")
    assert parsed_time(succeeded["created_at"]).tzinfo is not None
    download = client.get(succeeded["output_url"])
    assert download.status_code == 200, download.text
    (tmp_path / "out.mp3").write_bytes(download.content)
    info = probe(tmp_path / "out.mp3")
    assert len(info.audio) == 1 and info.audio[0].codec == "mp3"
    assert info.duration == pytest.approx(SOURCE_SECONDS, rel=0.05)


def test_progress_events_come_in_order_at_most_one_per_interval_then_success(
    client: TestClient, api_key: str, long_video: tuple[Path, Path], receiver: Receiver
) -> None:
    video, dub = long_video
    run_id = make_run(client, api_key, {"source": video, "dub_es-es": dub})
    task_id = post_export(client, api_key, run_id, receiver.url(), output_format="mp4")["task_id"]
    assert wait_for_task(client, api_key, task_id)["status"] == "SUCCESS"
    events = wait_for(lambda: all_delivered(client, api_key, task_id, "export.succeeded"), DEADLINE, "delivery")

    got = receiver.events()
    assert [e["event_id"] for e in got] == [d["event_id"] for d in events], "each event once, in order"
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 204 for d in events)
    *progress, succeeded = got
    assert succeeded["type"] == "export.succeeded" and succeeded["progress"] == 100
    assert len(progress) >= 2, f"a {LONG_SECONDS:g} s encode told no progress: {got}"
    assert {e["type"] for e in progress} == {"export.progress"}
    assert all(set(e) == PROGRESS_FIELDS and e["status"] == "PENDING" for e in progress), progress
    values = [e["progress"] for e in progress]
    assert values == sorted(set(values)) and values[0] > 0 and values[-1] < 100, values
    times = [parsed_time(e["created_at"]) for e in got]
    assert times == sorted(times)
    # created_at is stamped inside the progress write's transaction, after the throttle read its clock:
    # a write that waited for SQLite's lock stamps late, so two stamps may be closer than the interval by
    # that wait. Without the throttle they would be the writes' half second apart.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times[:-1])]
    assert all(gap >= PROGRESS_SECONDS - 0.3 for gap in gaps), f"progress events closer than allowed: {gaps}"
    assert {e["task_id"] for e in got} == {task_id} and {e["output_format"] for e in got} == {"mp4"}


# --- failures ------------------------------------------------------------------------------------------------------


def test_a_task_that_fails_tells_its_status_reason_and_message(
    client: TestClient, api_key: str, media, receiver: Receiver
) -> None:
    """The stored dub no longer has its imported size: the conversion ends ERROR, INVALID_SOURCE_DATA."""
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    context = client.app.state.context  # type: ignore[attr-defined]
    with context.sessions() as session:
        key = session.query(RunFile).filter_by(run_id=run_id, role=FileRole.DUB.value).one().storage_key
    with context.storage.local_copy(key) as path, path.open("ab") as stored:
        stored.write(b"\0" * 16)
    task_id = post_export(client, api_key, run_id, receiver.url(), camb=True)["task_id"]
    final = wait_for_task(client, api_key, task_id)
    assert final["status"] == "ERROR", final
    wait_for(lambda: all_delivered(client, api_key, task_id, "export.failed"), DEADLINE, "delivery")

    failed = receiver.delivered()[-1]
    assert set(failed) == FAILED_FIELDS
    assert failed["type"] == "export.failed" and failed["status"] == "ERROR"
    assert failed["exception_reason"] == "INVALID_SOURCE_DATA" == final["exception_reason"]
    assert failed["message"] == final["message"] and "changed since it was imported" in failed["message"]
    assert (failed["task_id"], failed["run_id"], failed["languages"]) == (task_id, run_id, ["es-es"])
    assert verify(signing_secret(client, api_key), receiver.received()[-1])


def test_an_export_over_the_quota_tells_payment_required(
    client: TestClient, api_key: str, settings: Settings, media, receiver: Receiver
) -> None:
    quota = subprocess.run(
        [str(ALTDUB), "workspaces", "quota", "first", "--minutes", "0"],
        env=clean_env(ALTDUB_DATA_DIR=str(settings.data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert quota.returncode == 0, quota.stderr
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = post_export(client, api_key, run_id, receiver.url("/quota"))["task_id"]
    wait_for(lambda: all_delivered(client, api_key, task_id, "export.failed"), DEADLINE, "delivery")

    (failed,) = receiver.delivered("/quota")
    assert set(failed) == FAILED_FIELDS
    assert (failed["status"], failed["exception_reason"]) == ("PAYMENT_REQUIRED", "PAYMENT_REQUIRED")
    assert "quota" in failed["message"]
    assert failed["progress"] == 0 and failed["task_id"] == task_id


# --- the deliveries list and redelivery ---------------------------------------------------------------------------


def test_deliveries_are_listed_and_redelivered_with_the_same_event_id_to_their_workspace_only(
    client: TestClient, api_key: str, other_key: str, media, receiver: Receiver
) -> None:
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_id = post_export(client, api_key, run_id, receiver.url(), output_format="wav")["task_id"]
    events = wait_for(lambda: all_delivered(client, api_key, task_id, "export.succeeded"), DEADLINE, "delivery")
    succeeded = events[-1]
    assert set(succeeded) == {
        "event_id", "type", "task_id", "url", "status", "attempts", "created_at", "next_attempt_at",
        "delivered_at", "payload",
    }  # fmt: skip
    assert succeeded["url"] == receiver.url() and succeeded["task_id"] == task_id
    assert succeeded["payload"]["event_id"] == succeeded["event_id"]
    (attempt,) = succeeded["attempts"]
    assert attempt["status_code"] == 204 and attempt["error"] is None and attempt["latency_ms"] >= 0
    assert [d["event_id"] for d in deliveries(client, api_key)] == [d["event_id"] for d in events]
    before = len(receiver.received())

    # Another workspace sees none of it and cannot redeliver it.
    assert deliveries(client, other_key) == []
    assert deliveries(client, other_key, task_id) == []
    stolen = client.post(f"/webhooks/deliveries/{succeeded['event_id']}/redeliver", headers=auth(other_key))
    assert stolen.status_code == 404, stolen.text
    assert client.post("/webhooks/deliveries/no-such-event/redeliver", headers=auth(api_key)).status_code == 404
    assert client.get("/webhooks/deliveries").status_code == 401
    assert client.post(f"/webhooks/deliveries/{succeeded['event_id']}/redeliver").status_code == 401
    assert delivery(client, api_key, succeeded["event_id"]) == succeeded
    assert signing_secret(client, other_key) != signing_secret(client, api_key)

    again = client.post(f"/webhooks/deliveries/{succeeded['event_id']}/redeliver", headers=auth(api_key))
    assert again.status_code == 202, again.text
    wait_for(lambda: len(delivery(client, api_key, succeeded["event_id"])["attempts"]) == 2, DEADLINE, "redelivery")
    resent = receiver.received()[before:]
    assert [r.event["event_id"] for r in resent] == [succeeded["event_id"]]
    assert resent[0].event["type"] == "export.succeeded"
    assert verify(signing_secret(client, api_key), resent[0])
    assert client.get(resent[0].event["output_url"]).status_code == 200  # signed afresh: still downloads
    assert delivery(client, api_key, succeeded["event_id"])["status"] == "delivered"


# --- who is told ---------------------------------------------------------------------------------------------------


def test_identical_requests_with_two_callbacks_share_one_task_and_both_are_told(
    settings: Settings, media, receiver: Receiver
) -> None:
    with TestClient(create_app(settings, workers=False)) as idle:
        key = new_key(idle, "shared")
        run_id = make_run(idle, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
        first = post_export(idle, key, run_id, receiver.url("/a"), camb=True)["task_id"]
        second = post_export(idle, key, run_id, receiver.url("/b"))["task_id"]
        assert post_export(idle, key, run_id, receiver.url("/a"))["task_id"] == first  # told once, not twice
        assert post_export(idle, key, run_id, None)["task_id"] == first
        assert second == first

    with TestClient(create_app(settings)) as client:
        assert wait_for_task(client, key, first)["status"] == "SUCCESS"
        events = wait_for(lambda: all_delivered(client, key, first, "export.succeeded"), DEADLINE, "delivery")
        finals = [d for d in events if d["type"] == "export.succeeded"]
        assert sorted(d["url"] for d in finals) == [receiver.url("/a"), receiver.url("/b")]
        told_a, told_b = receiver.delivered("/a"), receiver.delivered("/b")
        assert [e["type"] for e in told_a][-1] == [e["type"] for e in told_b][-1] == "export.succeeded"
        assert told_a[-1]["task_id"] == told_b[-1]["task_id"] == first
        assert told_a[-1]["event_id"] != told_b[-1]["event_id"]  # one event per receiver
        assert len({e["event_id"] for e in told_a + told_b}) == len(told_a + told_b)

        # Answered at once with its URL: a request's callback is not told of an export already made.
        done = post_export(client, key, run_id, receiver.url("/late"))
        assert set(done) == {"output_url"}
        assert all(d["url"] != receiver.url("/late") for d in deliveries(client, key))


def test_the_workspace_webhook_set_by_the_cli_is_told_and_signed_with_the_printed_secret(
    client: TestClient, api_key: str, settings: Settings, media, receiver: Receiver
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ALTDUB), "workspaces", "webhook", "first", *args],
            env=clean_env(ALTDUB_DATA_DIR=str(settings.data_dir), ALTDUB_WEBHOOK_ALLOW_PRIVATE="true"),
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = cli("--url", receiver.url("/workspace"))
    assert done.returncode == 0, done.stderr
    shown, secret = done.stdout.strip().splitlines()
    assert shown == f"webhook of 'first': {receiver.url('/workspace')}"
    assert client.get("/webhooks", headers=auth(api_key)).json() == {
        "url": receiver.url("/workspace"),
        "signing_secret": secret,
    }

    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    with_callback = post_export(client, api_key, run_id, receiver.url("/callback"))["task_id"]
    wait_for(lambda: all_delivered(client, api_key, with_callback, "export.succeeded"), DEADLINE, "delivery")
    without = post_export(client, api_key, run_id, None, output_format="flac")["task_id"]
    wait_for(lambda: all_delivered(client, api_key, without, "export.succeeded"), DEADLINE, "delivery")

    to_workspace = [e for e in receiver.delivered("/workspace") if e["type"] == "export.succeeded"]
    to_callback = [e for e in receiver.delivered("/callback") if e["type"] == "export.succeeded"]
    assert [e["task_id"] for e in to_workspace] == [with_callback, without]
    assert [e["task_id"] for e in to_callback] == [with_callback]
    assert all(verify(secret, r) for r in receiver.received())

    rotated = cli("--rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret != secret and signing_secret(client, api_key) == new_secret
    before = len(receiver.received())
    again = post_export(client, api_key, run_id, None, output_format="aac")["task_id"]
    wait_for(lambda: all_delivered(client, api_key, again, "export.succeeded"), DEADLINE, "delivery")
    signed_after = receiver.received()[before:]
    assert signed_after and all(verify(new_secret, r) and not verify(secret, r) for r in signed_after)

    cleared = cli("--clear")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.strip().splitlines() == ["webhook of 'first': none (callback URLs only)", new_secret]
    assert client.get("/webhooks", headers=auth(api_key)).json()["url"] is None
    last = post_export(client, api_key, run_id, None, output_format="wav")["task_id"]
    assert wait_for_task(client, api_key, last)["status"] == "SUCCESS"
    assert deliveries(client, api_key, last) == []  # nobody to tell: no event written


# --- SSRF ------------------------------------------------------------------------------------------------------------


REFUSED_URLS = [
    "http://127.0.0.1/hooks",
    "http://localhost:8000/hooks",
    "http://[::1]/hooks",
    "http://10.0.0.1/hooks",
    "http://172.16.0.1/hooks",
    "http://172.31.255.254/hooks",
    "http://192.168.1.1/hooks",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/hooks",
    "http://[fc00::1]/hooks",
    "http://224.0.0.1/hooks",
    "http://[ff02::1]/hooks",
    "http://0.0.0.0/hooks",
    "http://100.64.0.1/hooks",
    "http://[::ffff:10.0.0.1]/hooks",
    f"https://{'a' * 64}.example.com/hooks",  # a host that does not resolve (a label DNS cannot hold: no query sent)
    "ftp://example.com/hooks",
    "https://user:secret@example.com/hooks",
    "https://example.com/" + "a" * (2001 - len("https://example.com/")),  # 2001 characters
]


@pytest.mark.parametrize("camb", [False, True], ids=["native", "camb"])
@pytest.mark.parametrize("url", REFUSED_URLS, ids=lambda u: u[:40])
def test_a_callback_url_that_is_not_public_is_a_422_at_callback_url(
    strict: tuple[TestClient, str, int], url: str, camb: bool
) -> None:
    client, key, run_id = strict
    body: dict[str, Any] = {"output_format": "mp3", "callback_url": url}
    if camb:
        response = client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json=body)
    else:
        response = client.post(f"/runs/{run_id}/exports", headers=auth(key), json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "callback_url"], error
    assert client.get(f"/runs/{run_id}/exports", headers=auth(key)).json() == []  # no task was made


@pytest.mark.parametrize("camb", [False, True], ids=["native", "camb"])
def test_a_refused_callback_url_is_a_422_even_when_the_export_exists(
    strict: tuple[TestClient, str, int], media, camb: bool
) -> None:
    """The answer for an export already made comes by a fast path: it must check the callback all the same."""
    client, key, _ = strict
    run_id = make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    made = post_export(client, key, run_id, None, camb=camb, output_format="wav")
    if "task_id" in made:
        assert wait_for_task(client, key, made["task_id"])["status"] == "SUCCESS"
    for _ in range(2):  # the second time from the cache of identities
        assert set(post_export(client, key, run_id, None, camb=camb, output_format="wav")) == {"output_url"}
    for url in ("http://127.0.0.1/hooks", "http://169.254.169.254/", "ftp://example.com/hooks"):
        body: dict[str, Any] = {"output_format": "wav", "callback_url": url}
        if camb:
            response = client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json=body)
        else:
            body["languages"] = ["es-es"]  # the same order as the export's, but for the callback
            response = client.post(f"/runs/{run_id}/exports", headers=auth(key), json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "callback_url"]


def test_allow_private_accepts_a_loopback_callback(client: TestClient, api_key: str, media) -> None:
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    assert "task_id" in post_export(client, api_key, run_id, "http://127.0.0.1:9/hooks")


def test_a_host_rebound_to_a_private_address_after_the_request_is_not_sent_to(
    tmp_path: Path, media, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: public when the request is checked, loopback (the receiver) when the event is sent.

    ``socket.getaddrinfo`` answers for one name only (there is no DNS server to run); its first answer,
    at request time, is a public address that is never connected to; every later one is 127.0.0.1.
    """
    real = socket.getaddrinfo
    answers = iter([["93.184.215.14"]])
    asked: list[str] = []

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example.com":
            return real(host, port, *args, **kwargs)
        address = next(answers, ["127.0.0.1"])[0]
        asked.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    # An app of its own, closed before getaddrinfo is restored: no later try asks a real DNS server.
    with TestClient(create_app(strict_settings(tmp_path / "rebind"))) as client:
        key = new_key(client, "rebound")
        run_id = make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
        task_id = post_export(client, key, run_id, f"http://rebind.example.com:{receiver.port}/hooks")["task_id"]
        assert asked == ["93.184.215.14"]
        assert wait_for_task(client, key, task_id)["status"] == "SUCCESS"

        def refused_twice() -> list[dict[str, Any]]:
            found = deliveries(client, key, task_id)
            return found if found and len(found[0]["attempts"]) >= 2 else []

        (event, *_) = wait_for(refused_twice, DEADLINE, "two tries of the first event")
    assert event["status"] == "pending"
    for attempt in event["attempts"]:
        assert attempt["status_code"] is None, attempt
        assert attempt["error"].startswith("refused: its host rebind.example.com resolves to 127.0.0.1"), attempt
    assert set(asked) == {"93.184.215.14", "127.0.0.1"}
    assert receiver.received() == [], "an event was sent to the rebound address"
