"""The webhook outbox (spec §7): events written in the transaction of the task change they tell of.

An event row per receiver: the task's ``callback_url``s and the workspace's webhook. Writing it with
the change means a committed change always has its events, and a rolled-back one has none; the
sender (``service.webhooks``) delivers them afterwards, at least once.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from altdub import languages
from altdub.config import Settings
from altdub.db.models import ExportTask, TaskCallback, TaskStatus, WebhookEvent, Workspace
from altdub.outbound.addresses import AddressRefused, resolve
from altdub.service.errors import InvalidInput

RETRY_FOR = timedelta(hours=24)  # an event undelivered this long after it was written is given up


class EventType(enum.StrEnum):
    PROGRESS = "export.progress"
    SUCCEEDED = "export.succeeded"
    FAILED = "export.failed"


def check_callback_url(settings: Settings, url: str, field: str = "callback_url") -> None:
    """Refuse (InvalidInput on ``field``) a URL altdub may not send to: malformed, unresolvable or not public.

    Checked again when each event is sent, against what the host resolves to then.
    """
    try:
        resolve(url, allow_private=settings.webhook_allow_private)
    except AddressRefused as exc:
        raise InvalidInput(field, f"{url[:200]!r} is refused: {exc}") from exc


def final_event(status: str) -> EventType | None:
    """The event a task's final state sends (None: the task is not final)."""
    if status == TaskStatus.PENDING.value:
        return None
    return EventType.SUCCEEDED if status == TaskStatus.SUCCESS.value else EventType.FAILED


def receivers(session: Session, task_id: str, workspace_id: int) -> list[str]:
    """Every URL told of the task: the callbacks its requests gave, then the workspace's webhook."""
    urls = list(
        session.scalars(select(TaskCallback.url).where(TaskCallback.task_id == task_id).order_by(TaskCallback.id))
    )
    webhook = session.scalar(select(Workspace.webhook_url).where(Workspace.id == workspace_id))
    return list(dict.fromkeys([*urls, *([webhook] if webhook else [])]))


def enqueue(session: Session, task_id: str, event_type: EventType, only_url: str | None = None) -> int:
    """Write ``event_type`` for the task, one row per receiver, in the caller's transaction; how many were written.

    The payload is the task as it stands in this transaction; a success's ``output_url`` is added
    when the event is sent, signed afresh then.
    """
    task = session.execute(
        select(ExportTask).where(ExportTask.id == task_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if task is None:
        return 0
    urls = [only_url] if only_url else receivers(session, task.id, task.workspace_id)
    now = datetime.now(UTC)
    for url in urls:
        event_id = str(uuid.uuid4())
        session.add(
            WebhookEvent(
                event_id=event_id,
                workspace_id=task.workspace_id,
                task_id=task.id,
                type=event_type.value,
                url=url,
                payload=_payload(task, event_type, event_id, now),
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                retry_until=now + RETRY_FOR,
            )
        )
    return len(urls)


def _payload(task: ExportTask, event_type: EventType, event_id: str, now: datetime) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": event_id,
        "type": event_type.value,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "task_id": task.id,
        "run_id": task.run_id,
        "languages": [languages.by_id(i).short_name for i in task.track_language_ids],
        "output_format": task.output_format,
        "status": task.status,
        "progress": task.progress,
    }
    if event_type is not EventType.PROGRESS:
        payload["message"] = task.message
    if event_type is EventType.FAILED:
        payload["exception_reason"] = task.exception_reason
    return payload


def subscribe(session: Session, task_id: str, url: str) -> None:
    """Tell ``url`` of the task from now on; if the task already ended, its final event is written for it now.

    The task's row is locked first (PostgreSQL; SQLite has one writer at a time), so a task that
    ends meanwhile either sees this callback when it writes its events, or is seen here as ended.
    """
    task = session.execute(
        select(ExportTask.status).where(ExportTask.id == task_id).with_for_update()
    ).scalar_one_or_none()
    if task is None:
        return
    if not _insert_callback(session, task_id, url):
        return  # this URL is told already
    status = session.scalar(select(ExportTask.status).where(ExportTask.id == task_id))
    event = final_event(status) if status else None
    if event is not None:
        enqueue(session, task_id, event, only_url=url)


def _insert_callback(session: Session, task_id: str, url: str) -> bool:
    """Add the task's callback in the caller's transaction; False when it is there already.

    ``INSERT … ON CONFLICT DO NOTHING`` rather than a SAVEPOINT: with pysqlite a SAVEPOINT opened
    outside a transaction starts one, and its RELEASE commits the row on its own, apart from the
    event written with it (a crash in between left a callback that would never be told).
    """
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert
    statement = insert(TaskCallback).values(task_id=task_id, url=url).on_conflict_do_nothing()
    return session.execute(statement).rowcount == 1
