"""Every write of an export task's state, and the counts taken over it: one module, so the rules are read in one place.

A task leaves PENDING only by a conditional ``UPDATE ... WHERE status = 'PENDING'`` (``finish``), so a
final state is written once whoever else tries; claims, heartbeats and progress are conditional
updates too. Creating a task reserves its minutes against the workspace's quota and checks the
workspace's limit of pending tasks in the same transaction.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from altdub.db.models import LIVE_STATUSES, ExportTask, Run, TaskCallback, TaskStatus, Workspace
from altdub.service import outbox
from altdub.service.context import Context, TaskCancel
from altdub.service.errors import NotFound, TooManyPending
from altdub.service.runs import run_exists

PENDING_RETRY_SECONDS = 5  # Retry-After of a request over the pending-task limit: short exports end in seconds
HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 10.0  # a claim without a heartbeat for this long belongs to a dead worker


def live_task(session: Session, identity: str) -> ExportTask | None:
    """The PENDING or SUCCESS task of an export identity (the partial unique index admits one)."""
    return session.scalar(
        select(ExportTask).where(
            ExportTask.identity == identity, ExportTask.status.in_(LIVE_STATUSES), ExportTask.evicted_at.is_(None)
        )
    )


def live_or_new_task(
    ctx: Context,
    session: Session,
    workspace_id: int,
    run: Run,
    language_ids: list[int],
    default_id: int,
    output_format: str,
    options: dict[str, Any],
    identity: str,
    callback_url: str | None = None,
) -> tuple[ExportTask, bool]:
    """The live task of ``identity``, or a new one; True when this call created it.

    Uniqueness is the database's: concurrent requests in any number of processes all try to
    insert, one wins, and the others read the winner's row. A new task is PAYMENT_REQUIRED when
    the quota cannot hold its minutes; over the pending limit, nothing is written (TooManyPending).
    ``callback_url`` is told of the task's events from now on (of a task already finished: nothing,
    the answer is its URL).
    """
    task = live_task(session, identity)
    if task is not None:
        return _subscribed(session, task, callback_url), False
    run_id, minutes = run.id, run.duration / 60  # read now: a rollback expires ``run``, which may be deleted by then
    task = ExportTask(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        run_id=run_id,
        language_id=default_id,
        language_ids=language_ids if len(language_ids) > 1 else None,
        output_format=output_format,
        options=options,
        identity=identity,
        minutes=minutes,
        status=TaskStatus.PENDING.value,
        progress=0,
    )
    quota = ctx.settings.export_quota_minutes
    if not _reserve_minutes(session, workspace_id, minutes, quota):
        task.status = TaskStatus.PAYMENT_REQUIRED.value
        task.exception_reason = TaskStatus.PAYMENT_REQUIRED.value
        task.message = _quota_message(session, workspace_id, minutes, quota)
        task.finished_at = datetime.now(UTC)
    elif _pending_tasks(session, workspace_id) >= ctx.settings.max_pending_tasks:
        session.rollback()  # the reservation too
        raise TooManyPending(ctx.settings.max_pending_tasks, PENDING_RETRY_SECONDS)
    session.add(task)
    if callback_url is not None:
        session.add(TaskCallback(task_id=task.id, url=callback_url))
    if task.status != TaskStatus.PENDING.value:
        event = outbox.final_event(task.status)
        assert event is not None
        outbox.enqueue(session, task.id, event)  # refused for its quota: told in the same transaction
    try:
        session.commit()  # the reservation and the task, together
    except IntegrityError:  # another request, maybe in another process, created it first; or the run is gone
        session.rollback()
        found = live_task(session, identity)
        if found is None:
            if not run_exists(session, run_id):
                raise NotFound("run not found") from None  # a DELETE of the run committed meanwhile
            raise
        return _subscribed(session, found, callback_url), False
    return task, True


def _subscribed(session: Session, task: ExportTask, callback_url: str | None) -> ExportTask:
    """``task``, with ``callback_url`` told of its events, unless it already succeeded (the answer is its URL)."""
    if callback_url is None or task.status == TaskStatus.SUCCESS.value:
        return task
    task_id = task.id
    outbox.subscribe(session, task_id, callback_url)
    session.commit()
    return session.get(ExportTask, task_id) or task


def _reserve_minutes(session: Session, workspace_id: int, minutes: float, default_quota: float | None) -> bool:
    """Charge ``minutes`` to the workspace if its quota allows; one atomic UPDATE, safe across processes."""
    quota = func.coalesce(Workspace.quota_minutes, default_quota)
    result = session.execute(
        update(Workspace)
        .where(Workspace.id == workspace_id, or_(quota.is_(None), Workspace.used_minutes + minutes <= quota))
        .values(used_minutes=Workspace.used_minutes + minutes)
    )
    return result.rowcount == 1


def _pending_tasks(session: Session, workspace_id: int) -> int:
    """The workspace's PENDING tasks, counted after ``_reserve_minutes`` locked its row.

    The lock makes the count and the insert that follows one step across processes: a concurrent
    request of the workspace waits for this transaction, then counts again and sees its task
    (PostgreSQL gives each statement a fresh snapshot; SQLite has one writer at a time).
    """
    return session.scalar(
        select(func.count())
        .select_from(ExportTask)
        .where(ExportTask.workspace_id == workspace_id, ExportTask.status == TaskStatus.PENDING.value)
    )


def _quota_message(session: Session, workspace_id: int, minutes: float, default_quota: float | None) -> str:
    workspace = session.get(Workspace, workspace_id)
    assert workspace is not None
    quota = workspace.quota_minutes if workspace.quota_minutes is not None else default_quota
    return (
        f"export quota spent: {workspace.used_minutes:.1f} of {quota:g} minutes used, "
        f"this export needs {minutes:.1f}; no work was done"
    )


def release_pending_tasks(ctx: Context) -> list[str]:
    """Every PENDING task, with the claims of dead workers released, to run again.

    Only for the embedded mode, where this process is the only worker: whatever claim a
    PENDING task holds was made by a process that is gone.
    """
    with ctx.sessions.begin() as session:
        pending = ExportTask.status == TaskStatus.PENDING.value
        session.execute(update(ExportTask).where(pending).values(heartbeat_at=None))
        return list(session.scalars(select(ExportTask.id).where(pending).order_by(ExportTask.created_at)))


def _claimable(now: datetime) -> ColumnElement[bool]:
    """PENDING, and nobody alive working on it (never claimed, or its worker's heartbeat is stale)."""
    return and_(
        ExportTask.status == TaskStatus.PENDING.value,
        or_(
            ExportTask.heartbeat_at.is_(None),
            ExportTask.heartbeat_at < now - timedelta(seconds=STALE_AFTER_SECONDS),
        ),
    )


def _fairest_claimable(now: datetime) -> Select[tuple[str, int]]:
    """The task a free worker should take: the fair-scheduling rule, the same for every executor.

    Across workspaces: the one with the fewest tasks running, then the one served longest ago (round
    robin); within a workspace: the oldest task. So a workspace that queued hundreds of tasks delays
    another's next task by at most the tasks already running, not by its whole queue.
    """
    running = aliased(ExportTask)
    running_count = (
        select(func.count())
        .select_from(running)
        .where(
            running.workspace_id == ExportTask.workspace_id,
            running.status == TaskStatus.PENDING.value,
            running.heartbeat_at >= now - timedelta(seconds=STALE_AFTER_SECONDS),
        )
        .scalar_subquery()
    )
    return (
        select(ExportTask.id, ExportTask.workspace_id)
        .join(Workspace, Workspace.id == ExportTask.workspace_id)
        .where(_claimable(now))
        .order_by(
            running_count,
            Workspace.last_claimed_at.asc().nulls_first(),
            ExportTask.created_at,
            ExportTask.id,
        )
        .limit(1)
    )


def claim_next(ctx: Context) -> str | None:
    """Take the fairest claimable task for this worker; None when there is none. Atomic across processes.

    Workers in other processes may pick the same task at once: the conditional UPDATE lets one
    of them have it, and the others pick again. The workspace's turn is recorded in a transaction
    of its own: a claim that held the task's row while it waited for the workspace's row could
    deadlock (on PostgreSQL) with a request that holds the workspace's row (its quota) and waits
    on the task's row (an identical export being inserted).
    """
    while True:
        now = datetime.now(UTC)
        with ctx.sessions.begin() as session:
            picked = session.execute(_fairest_claimable(now)).first()
            if picked is None:
                return None
            claimed = session.execute(
                update(ExportTask)
                .where(ExportTask.id == picked.id, _claimable(now))
                .values(attempts=ExportTask.attempts + 1, started_at=now, heartbeat_at=now)
            ).rowcount
        if claimed == 1:
            with ctx.sessions.begin() as session:
                session.execute(
                    update(Workspace).where(Workspace.id == picked.workspace_id).values(last_claimed_at=now)
                )
            return picked.id


class Heartbeat:
    """Marks the task as being worked on, every few seconds, for as long as the conversion runs.

    When the mark finds no pending task (its run was deleted, maybe by another process), it
    cancels the conversion: nobody can receive its output any more.
    """

    def __init__(self, ctx: Context, task_id: str, cancel: TaskCancel) -> None:
        self._ctx, self._task_id, self._cancel = ctx, task_id, cancel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{task_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._ctx.sessions.begin() as session:
                result = session.execute(
                    update(ExportTask)
                    .where(ExportTask.id == self._task_id, ExportTask.status == TaskStatus.PENDING.value)
                    .values(heartbeat_at=datetime.now(UTC))
                )
            if result.rowcount == 0:
                self._cancel.set()
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class ProgressWriter:
    """Writes progress to the database at most every half second, and only upwards.

    With it, an ``export.progress`` event at most every ``ALTDUB_WEBHOOK_PROGRESS_SECONDS`` (10 s).
    """

    def __init__(self, ctx: Context, task_id: str) -> None:
        self._ctx, self._task_id = ctx, task_id
        self._last_value, self._last_time = 0, 0.0
        self._last_event_time: float | None = None

    def __call__(self, fraction: float) -> None:
        value = min(99, int(fraction * 100))  # 100 only once the file is published
        now = time.monotonic()
        if value <= self._last_value or now - self._last_time < 0.5:
            return
        self._last_value, self._last_time = value, now
        with self._ctx.sessions.begin() as session:
            result = session.execute(
                update(ExportTask)
                .where(
                    ExportTask.id == self._task_id,
                    ExportTask.status == TaskStatus.PENDING.value,
                    ExportTask.progress < value,
                )
                .values(progress=value)
            )
            every = self._ctx.settings.webhook_progress_seconds
            if result.rowcount == 1 and (self._last_event_time is None or now - self._last_event_time >= every):
                self._last_event_time = now
                outbox.enqueue(session, self._task_id, outbox.EventType.PROGRESS)


def finish(ctx: Context, task_id: str, **values: Any) -> bool:
    """Record a final state if the task is still pending; False when it is gone or already final.

    A task that failed gives its minutes back to the workspace's quota. Requests waiting for the
    task are woken once the state is committed.
    """
    with ctx.sessions.begin() as session:
        result = session.execute(
            update(ExportTask)
            .where(ExportTask.id == task_id, ExportTask.status == TaskStatus.PENDING.value)
            .values(finished_at=datetime.now(UTC), **values)
        )
        if result.rowcount != 1:
            return False
        event = outbox.final_event(values["status"])
        assert event is not None
        outbox.enqueue(session, task_id, event)
        if values["status"] != TaskStatus.SUCCESS.value:
            task = session.get(ExportTask, task_id)
            assert task is not None
            session.execute(
                update(Workspace)
                .where(Workspace.id == task.workspace_id)
                .values(used_minutes=Workspace.used_minutes - task.minutes)
            )
    ctx.task_events.notify(task_id)
    return True


def task_exists(ctx: Context, task_id: str) -> bool:
    with ctx.sessions() as session:
        return session.get(ExportTask, task_id) is not None


@dataclass(frozen=True)
class TaskCounts:
    """The figures the metrics endpoint shows, read from the database (every process's tasks)."""

    by_status: dict[TaskStatus, int]
    waiting: int  # PENDING and never claimed


def task_counts(ctx: Context) -> TaskCounts:
    with ctx.sessions() as session:
        counts = dict(session.execute(select(ExportTask.status, func.count()).group_by(ExportTask.status)).all())
        waiting = session.scalar(
            select(func.count()).where(ExportTask.status == TaskStatus.PENDING.value, ExportTask.heartbeat_at.is_(None))
        )
    return TaskCounts({status: counts.get(status.value, 0) for status in TaskStatus}, waiting or 0)
