"""The storage lifecycle (spec §8): exports not used for ``ALTDUB_EXPORT_TTL_DAYS`` are removed, and past
``ALTDUB_STORAGE_BUDGET_GB`` the least recently used go first.

Never a run's inputs, never an export being made (it has no file yet), never one used (its URL handed
out, or downloaded) within a signed URL's lifetime: no download can start after its URL expires, and
one that started is not broken by the removal (a local file stays readable to an open download; an
S3 GET in progress completes). A removed export's task stays SUCCESS, without a file, with a message;
the next identical request makes it anew (it left the live index).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, delete, func, or_, select, update

from altdub.db.models import AudioIntermediate, ExportTask, Run, RunFile, TaskStatus, Workspace
from altdub.service.context import Context
from altdub.service.packages import stored_prefix

log = logging.getLogger(__name__)

GB = 1000**3
SWEEP_SECONDS = 60.0  # how often a serving process records uses and applies the lifecycle
URL_MARGIN = timedelta(minutes=5)  # beyond a signed URL's lifetime, before an export used is removable
# A use the database recorded this recently already keeps a URL handed out now for its whole lifetime
# (less than URL_MARGIN); an older one is written before the URL is handed out (``hold``).
RECORDED_USE_FRESH = timedelta(minutes=2)


def record_uses(ctx: Context) -> int:
    """Write the uses this process saw since the last call (batched: one statement for all); how many."""
    uses = ctx.uses.drain()
    if not uses:
        return 0
    statement = (
        update(ExportTask)
        .where(
            ExportTask.storage_key == bindparam("key"),
            or_(ExportTask.last_used_at.is_(None), ExportTask.last_used_at < bindparam("used")),
        )
        .values(last_used_at=bindparam("used"))
        .execution_options(synchronize_session=False)
    )
    with ctx.sessions.begin() as session:
        session.connection().execute(statement, [{"key": key, "used": used} for key, used in uses.items()])
    return len(uses)


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def use_recorded_lately(ctx: Context, *recorded: datetime | None) -> bool:
    """Whether the database's last use of an export (its ``last_used_at`` or ``finished_at``) is recent enough
    that no sweep, in any process, removes it within the lifetime of a URL handed out now."""
    times = [_utc(t) for t in recorded if t is not None]
    return bool(times) and max(times) > ctx.clock() - RECORDED_USE_FRESH


def hold(ctx: Context, key: str, *recorded: datetime | None) -> bool:
    """Before an export's URL is handed out: whether its file is still stored, its use now in the database.

    Uses are kept in each process's memory until its next pass, so a sweep in another process would not
    see this one and could remove the file under the URL. When the recorded use is old, it is written
    now, conditionally on the file being still stored: a removal that committed first makes this False
    (answer without a URL), one that comes after finds the export used and leaves it. Cheap in the
    usual case: an export used or made lately needs no query.
    """
    if use_recorded_lately(ctx, *recorded):
        return True
    now = ctx.clock()
    later = or_(ExportTask.last_used_at.is_(None), ExportTask.last_used_at < now)
    with ctx.sessions.begin() as session:
        held = session.execute(
            update(ExportTask)
            .where(ExportTask.storage_key == key, _stored_exports())
            .values(last_used_at=case((later, now), else_=ExportTask.last_used_at))
            .execution_options(synchronize_session=False)
        ).rowcount
    return held == 1


def _last_use() -> ColumnElement[Any]:
    return func.coalesce(ExportTask.last_used_at, ExportTask.finished_at, ExportTask.created_at)


def _stored_exports() -> ColumnElement[bool]:
    return (ExportTask.status == TaskStatus.SUCCESS.value) & ExportTask.storage_key.is_not(None)


@dataclass(frozen=True)
class Removed:
    task_id: str
    size: int
    reason: str


def sweep(ctx: Context) -> list[Removed]:
    """Record this process's uses, then remove what the TTL and the budget call for; what was removed."""
    record_uses(ctx)
    settings = ctx.settings
    if settings.export_ttl_days is None and settings.storage_budget_gb is None:
        return []
    now = ctx.clock()
    protected_since = now - timedelta(seconds=settings.url_ttl) - URL_MARGIN  # used after this: kept
    removed: list[Removed] = []
    if settings.export_ttl_days is not None:
        stale_before = min(now - timedelta(days=settings.export_ttl_days), protected_since)
        reason = f"not used for {settings.export_ttl_days:g} days"
        with ctx.sessions() as session:
            stale = session.execute(
                select(ExportTask.id, ExportTask.storage_key, ExportTask.size)
                .where(_stored_exports(), _last_use() < stale_before)
                .order_by(_last_use())
            ).all()
        removed += [r for row in stale if (r := _remove(ctx, row.id, row.storage_key, row.size, stale_before, reason))]
        _remove_intermediates(ctx, stale_before, None)
    if settings.storage_budget_gb is not None:
        budget = int(settings.storage_budget_gb * GB)
        reason = f"the storage budget of {settings.storage_budget_gb:g} GB was reached"
        if stored_bytes(ctx) > budget:
            with ctx.sessions() as session:
                candidates = session.execute(
                    select(ExportTask.id, ExportTask.storage_key, ExportTask.size)
                    .where(_stored_exports(), _last_use() < protected_since)
                    .order_by(_last_use(), ExportTask.id)
                ).all()
            # Intermediates first (an encode to redo, not a deliverable), least recently used first. Counted again
            # after the candidates are read, and whenever one was taken by another process (all sweep in the same
            # order): what another process removed is never removed again in its place.
            excess = stored_bytes(ctx) - budget
            excess -= _remove_intermediates(ctx, protected_since, excess)
            for row in candidates:
                if excess <= 0:
                    break
                done = _remove(ctx, row.id, row.storage_key, row.size, protected_since, reason)
                if done is not None:
                    removed.append(done)
                    excess -= done.size
                else:
                    excess = stored_bytes(ctx) - budget
            if excess > 0:
                log.warning("storage is %d bytes over its budget; nothing more can be removed yet", excess)
    return removed


def _remove(
    ctx: Context, task_id: str, key: str, size: int | None, used_before: datetime, reason: str
) -> Removed | None:
    """Take the export out of service (a conditional UPDATE: still stored, still unused), then delete its file."""
    now = ctx.clock()
    message = f"removed by the storage lifecycle on {now:%Y-%m-%d} ({reason}); request it again to make it anew"
    with ctx.sessions.begin() as session:
        taken = session.execute(
            update(ExportTask)
            .where(ExportTask.id == task_id, _stored_exports(), _last_use() < used_before)
            .values(storage_key=None, evicted_at=now, message=message)
            .execution_options(synchronize_session=False)
        ).rowcount
    if taken != 1:
        return None  # used, removed or deleted meanwhile
    ctx.storage.delete_prefix(stored_prefix(key))  # a streaming package: its whole folder
    log.info("export %s removed (%s): %d bytes", task_id, reason, size or 0)
    return Removed(task_id, size or 0, reason)


def _last_intermediate_use() -> ColumnElement[Any]:
    return func.coalesce(AudioIntermediate.last_used_at, AudioIntermediate.ready_at)


def _remove_intermediates(ctx: Context, used_before: datetime, excess: int | None) -> int:
    """Remove the intermediates (service/intermediates.py) not used since ``used_before``, least recently used
    first: all of them, or until ``excess`` bytes are freed. Each by a conditional DELETE (still ready, still
    unused: a remux about to read one marked it used first), then its file. The bytes freed."""
    unused = AudioIntermediate.ready_at.is_not(None) & (_last_intermediate_use() < used_before)
    with ctx.sessions() as session:
        rows = session.execute(
            select(AudioIntermediate.id, AudioIntermediate.storage_key, AudioIntermediate.size)
            .where(unused)
            .order_by(_last_intermediate_use(), AudioIntermediate.id)
        ).all()
    freed = 0
    for row in rows:
        if excess is not None and freed >= excess:
            break
        with ctx.sessions.begin() as session:
            taken = session.execute(delete(AudioIntermediate).where(AudioIntermediate.id == row.id, unused)).rowcount
        if taken == 1:
            ctx.storage.delete_prefix(row.storage_key)
            freed += row.size or 0
            log.info("audio intermediate %s removed: %d bytes", row.id, row.size or 0)
    return freed


def stored_bytes(ctx: Context) -> int:
    """Every byte the service stores: the runs' inputs and the exports still kept."""
    return sum(u.inputs_bytes + u.exports_bytes for u in usage(ctx))


@dataclass(frozen=True)
class WorkspaceUsage:
    workspace_id: int
    name: str
    inputs_bytes: int
    exports_bytes: int  # the exports kept, and their encoded audio kept for reuse (intermediates)
    exports: int  # exports kept
    removed_exports: int  # exports the lifecycle removed (asked again, they are made anew)


def usage(ctx: Context, workspace_id: int | None = None) -> list[WorkspaceUsage]:
    """Bytes stored per workspace and per kind, from the sizes recorded when each file was stored."""
    with ctx.sessions() as session:
        workspaces = select(Workspace.id, Workspace.name).order_by(Workspace.id)
        if workspace_id is not None:
            workspaces = workspaces.where(Workspace.id == workspace_id)
        inputs = dict(
            session.execute(
                select(Run.workspace_id, func.coalesce(func.sum(RunFile.size), 0))
                .join(RunFile, RunFile.run_id == Run.id)
                .group_by(Run.workspace_id)
            ).all()
        )
        kept = {
            row.workspace_id: (row.size, row.count)
            for row in session.execute(
                select(
                    ExportTask.workspace_id,
                    func.coalesce(func.sum(ExportTask.size), 0).label("size"),
                    func.count().label("count"),
                )
                .where(_stored_exports())
                .group_by(ExportTask.workspace_id)
            )
        }
        encoded = dict(
            session.execute(
                select(AudioIntermediate.workspace_id, func.coalesce(func.sum(AudioIntermediate.size), 0))
                .where(AudioIntermediate.ready_at.is_not(None))
                .group_by(AudioIntermediate.workspace_id)
            ).all()
        )
        removed = dict(
            session.execute(
                select(ExportTask.workspace_id, func.count())
                .where(ExportTask.evicted_at.is_not(None))
                .group_by(ExportTask.workspace_id)
            ).all()
        )
        return [
            WorkspaceUsage(
                workspace_id=row.id,
                name=row.name,
                inputs_bytes=int(inputs.get(row.id, 0)),
                exports_bytes=int(kept.get(row.id, (0, 0))[0]) + int(encoded.get(row.id, 0)),
                exports=int(kept.get(row.id, (0, 0))[1]),
                removed_exports=int(removed.get(row.id, 0)),
            )
            for row in session.execute(workspaces)
        ]


class Sweeper:
    """Applies the lifecycle every ``SWEEP_SECONDS`` in a serving process (any number may: removals are conditional)."""

    def __init__(self, ctx: Context, every: float = SWEEP_SECONDS) -> None:
        self._ctx, self._every = ctx, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="storage-lifecycle", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                sweep(self._ctx)
            except Exception:  # a failed pass leaves everything as it was; the next one tries again
                log.exception("storage lifecycle: a pass failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        record_uses(self._ctx)  # the uses seen since the last pass are kept for the other processes
