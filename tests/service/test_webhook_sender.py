"""The outbox and its sender (service.outbox, service.webhooks) driven by hand, against a real receiver.

Runs and tasks are made through the API of an app without workers (tasks stay PENDING, no event is
written); the app is then closed and a bare context, with no sender thread of its own, ends tasks
with ``tasks.finish`` (as a conversion does) and calls ``deliver_due`` as the sender's loop would.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask, TaskCallback, WebhookEvent, Workspace
from altdub.service import outbox, tasks, webhooks
from altdub.service.context import Context, build_context
from tests.api.conftest import new_key
from tests.conftest import auth, make_run
from tests.receiver import Receiver, verify, wait_for

FORMATS = ["mp3", "wav", "flac", "aac", "m4a", "mp4", "mkv", "mov"]
FIRST_RETRY = 60.0  # a failed try is not due again during a test unless a test makes it so


@dataclass
class Outbox:
    ctx: Context
    secret: str
    workspace_id: int
    task_ids: list[str]  # PENDING tasks, each with the receiver's URL as its callback_url

    def fail(self, task_id: str) -> None:
        """End the task as a failed conversion does: its export.failed event is written with the change."""
        assert tasks.finish(self.ctx, task_id, status="ERROR", exception_reason="PROCESSING_ERROR", message="broke")

    def events(self) -> list[WebhookEvent]:
        with self.ctx.sessions() as session:
            return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))

    def make_due(self) -> None:
        """Every pending event due now (as if its backoff had passed)."""
        with self.ctx.sessions.begin() as session:
            session.execute(update(WebhookEvent).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))

    def deliveries(self) -> list[webhooks.Delivery]:
        with self.ctx.sessions() as session:
            return webhooks.list_deliveries(session, self.workspace_id)[::-1]


@pytest.fixture
def pending(tmp_path: Path, media, receiver: Receiver) -> Iterator[Outbox]:
    settings = Settings(
        data_dir=tmp_path / "data",
        create_demo=False,
        webhook_allow_private=True,
        webhook_first_retry_seconds=FIRST_RETRY,
        webhook_max_retry_seconds=3600,
        webhook_timeout_seconds=2.0,
    )
    with TestClient(create_app(settings, workers=False)) as client:
        key = new_key(client, "by-hand")
        run_id = make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav})
        task_ids = []
        for output_format in FORMATS:
            body = {"output_format": output_format, "callback_url": receiver.url()}
            response = client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json=body)
            assert response.status_code == 200, response.text
            task_ids.append(response.json()["task_id"])
        secret = client.get("/webhooks", headers=auth(key)).json()["signing_secret"]
    ctx = build_context(settings)
    with ctx.sessions() as session:
        workspace_id = session.get(ExportTask, task_ids[0]).workspace_id  # type: ignore[union-attr]
    try:
        yield Outbox(ctx, secret, workspace_id, task_ids)
    finally:
        ctx.engine.dispose()


def test_a_callback_and_the_final_event_it_is_owed_are_written_in_one_transaction(pending: Outbox) -> None:
    """A callback given for a task that has ended gets its final event with the callback, or neither."""
    task_id = pending.task_ids[0]
    pending.fail(task_id)
    late = "http://127.0.0.1:9/late"

    def told_late() -> tuple[int, int]:
        with pending.ctx.sessions() as other:
            callbacks = other.scalar(select(func.count()).select_from(TaskCallback).where(TaskCallback.url == late))
            events = other.scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.url == late))
            return callbacks or 0, events or 0

    session = pending.ctx.sessions()
    try:
        outbox.subscribe(session, task_id, late)
        assert told_late() == (0, 0), "written before the transaction committed"
        session.rollback()
        assert told_late() == (0, 0), "a rolled-back subscription left rows behind"
        outbox.subscribe(session, task_id, late)
        session.commit()
        assert told_late() == (1, 1)
        outbox.subscribe(session, task_id, late)  # the same URL again: told already
        session.commit()
        assert told_late() == (1, 1)
    finally:
        session.close()
    (event,) = [e for e in pending.events() if e.url == late]
    assert event.type == "export.failed" and event.payload["status"] == "ERROR"


def test_a_failed_try_waits_for_its_backoff_and_a_later_event_of_the_task_waits_for_it(
    pending: Outbox, receiver: Receiver
) -> None:
    task_id = pending.task_ids[0]
    tasks.ProgressWriter(pending.ctx, task_id)(0.42)  # an export.progress event, then the end
    pending.fail(task_id)
    progress, failed = pending.events()
    assert (progress.type, progress.payload["progress"], failed.type) == ("export.progress", 42, "export.failed")

    receiver.answer(500)
    before = datetime.now(UTC)
    assert webhooks.deliver_due(pending.ctx) == 1  # the progress event only: the failure waits behind it
    retried = pending.events()[0]
    wait = (webhooks._utc(retried.next_attempt_at) - before).total_seconds()
    assert FIRST_RETRY / 2 <= wait <= FIRST_RETRY + 5, wait
    assert retried.status == "pending" and retried.lease_until is None and retried.attempts == 1
    assert webhooks.deliver_due(pending.ctx) == 0, "tried again before its backoff"

    pending.make_due()
    assert webhooks.deliver_due(pending.ctx) == 1  # still only the first event
    receiver.answer(204)
    pending.make_due()
    assert webhooks.deliver_due(pending.ctx) == 1
    assert webhooks.deliver_due(pending.ctx) == 1  # now the failure
    assert [r.event["event_id"] for r in receiver.received()] == [progress.event_id] * 3 + [failed.event_id]
    assert [r.answered for r in receiver.received()] == [500, 500, 204, 204]
    assert all(verify(pending.secret, r) for r in receiver.received())
    assert [d.status for d in pending.deliveries()] == ["delivered", "delivered"]


def test_an_event_undelivered_for_24_hours_is_given_up_and_can_be_redelivered(
    pending: Outbox, receiver: Receiver
) -> None:
    pending.fail(pending.task_ids[0])
    (event,) = pending.events()
    assert webhooks._utc(event.retry_until) - webhooks._utc(event.created_at) == timedelta(hours=24)
    with pending.ctx.sessions.begin() as session:  # its 24 hours are over
        session.execute(update(WebhookEvent).values(retry_until=datetime.now(UTC) - timedelta(seconds=1)))
    receiver.answer(500)
    assert webhooks.deliver_due(pending.ctx) == 1
    (gone,) = pending.deliveries()
    assert gone.status == "failed" and gone.next_attempt_at is None
    assert [a.status_code for a in gone.attempts] == [500]
    pending.make_due()
    assert webhooks.deliver_due(pending.ctx) == 0, "a given-up event was tried again"

    with pending.ctx.sessions.begin() as session:
        webhooks.redeliver(session, pending.workspace_id, gone.event_id)
    receiver.answer(204)
    assert webhooks.deliver_due(pending.ctx) == 1
    (back,) = pending.deliveries()
    assert back.event_id == gone.event_id and back.status == "delivered"
    assert [a.status_code for a in back.attempts] == [500, 204]
    assert [r.event["event_id"] for r in receiver.received()] == [gone.event_id] * 2


def test_a_lease_starts_with_its_try_not_while_it_waits_for_a_free_sender(
    pending: Outbox, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two events behind one thread and a receiver that never answers: the second waits a whole timeout.

    Its lease must still hold when its try begins, or a second sender (another process) takes it and
    the receiver gets the same event twice at once. Without a margin the lease is exactly one timeout.
    """
    monkeypatch.setattr(webhooks, "LEASE_MARGIN_SECONDS", 0.0)
    pending.fail(pending.task_ids[0])
    pending.fail(pending.task_ids[1])
    first, second = pending.events()
    receiver.hang()
    with ThreadPoolExecutor(1) as one_thread:
        sender = threading.Thread(target=webhooks.deliver_due, args=(pending.ctx, one_thread))
        sender.start()
        try:
            wait_for(lambda: len(receiver.arrived()) == 2, 30, "the second event's try")
            assert [r.event["event_id"] for r in receiver.arrived()] == [first.event_id, second.event_id]
            assert webhooks.deliver_due(pending.ctx) == 0, "another sender took an event whose try is under way"
        finally:
            receiver.answer(204)
            sender.join(30)
    assert Counter(r.event["event_id"] for r in receiver.arrived()) == {first.event_id: 1, second.event_id: 1}


def test_senders_in_many_threads_send_each_event_once(pending: Outbox, receiver: Receiver) -> None:
    for task_id in pending.task_ids:
        pending.fail(task_id)
    events = pending.events()
    assert len(events) == len(FORMATS)
    barrier = threading.Barrier(4)

    def sender() -> int:
        barrier.wait()
        sent = 0
        while any(e.status == "pending" for e in pending.events()):
            sent += webhooks.deliver_due(pending.ctx, limit=3)
        return sent

    with ThreadPoolExecutor(4) as pool:
        sent = sum(pool.map(lambda _: sender(), range(4)))
    assert sent == len(events)
    assert Counter(r.event["event_id"] for r in receiver.received()) == {e.event_id: 1 for e in events}
    assert all(len(d.attempts) == 1 for d in pending.deliveries())


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 10, 20])
def test_the_retry_delay_doubles_with_jitter_up_to_the_cap(attempts: int) -> None:
    settings = Settings(webhook_first_retry_seconds=10, webhook_max_retry_seconds=3600)
    ceiling = min(3600, 10 * 2 ** (attempts - 1))
    delays = [webhooks.retry_delay(settings, attempts) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays), (ceiling, min(delays), max(delays))
    assert len(set(delays)) > 1, "no jitter"


def test_the_secret_is_made_once_when_two_processes_make_it_at_once(
    pending: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender and GET /webhooks (maybe in two processes) may both find no secret and make one: one must win.

    The first maker is held (in a thread) after it found none, until the second has made and committed
    its own; the first must then answer the second's secret, not overwrite it.
    """
    with pending.ctx.sessions.begin() as session:
        session.execute(update(Workspace).where(Workspace.id == pending.workspace_id).values(webhook_secret=None))
    made_one = webhooks._new_secret
    entered, go_on = threading.Event(), threading.Event()
    makers = iter(["held", "free"])

    def new_secret() -> str:
        if next(makers, "free") == "held":
            entered.set()
            assert go_on.wait(30)
        return made_one()

    monkeypatch.setattr(webhooks, "_new_secret", new_secret)
    answers: dict[str, str] = {}

    def make(name: str) -> None:
        with pending.ctx.sessions.begin() as session:
            answers[name] = webhooks.workspace_secret(session, pending.workspace_id)

    held = threading.Thread(target=make, args=("held",))
    held.start()
    try:
        assert entered.wait(30)
        make("free")
    finally:
        go_on.set()
        held.join(30)
    with pending.ctx.sessions() as session:
        stored = webhooks.workspace_secret(session, pending.workspace_id)
    assert answers == {"held": stored, "free": stored}
