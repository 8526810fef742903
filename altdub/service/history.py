"""Reads for the dashboard: a run's past exports, and a run's thumbnail (made once, then kept in storage)."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from altdub import languages
from altdub.db.models import ExportTask, FileRole, Run, TaskStatus
from altdub.media.ffmpeg import FFmpegError
from altdub.media.probe import MediaInfo
from altdub.media.thumbnail import make_thumbnail
from altdub.service.context import Context
from altdub.service.errors import NotFound
from altdub.service.exports import signed_url
from altdub.service.runs import get_run, run_exists
from altdub.storage import StorageError

log = logging.getLogger(__name__)

MAX_EXPORTS = 500


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ExportEntry:
    task_id: str
    language: str  # short_name of the default track
    languages: list[str]  # short_names of every dubbed track, in order
    output_format: str
    options: dict[str, Any]
    status: str
    progress: int
    size: int | None
    loudness: dict[str, float] | None
    message: str | None
    exception_reason: str | None
    created_at: datetime
    finished_at: datetime | None
    output_url: str | None
    qc: QcSummary | None = None  # the QC report's verdict; None: no report (yet)


@dataclass(frozen=True)
class QcSummary:
    """What a list shows of a QC report: the verdict and the failing checks' names (report order, no repeats)."""

    passed: bool
    failed: list[str]


def list_exports(
    ctx: Context, session: Session, workspace_id: int, run_id: int, limit: int = MAX_EXPORTS
) -> list[ExportEntry]:
    """The run's export tasks, newest first, with a fresh signed URL for each finished one."""
    get_run(session, workspace_id, run_id)  # 404 for an unknown run or one of another workspace
    tasks = session.scalars(
        select(ExportTask)
        .where(ExportTask.workspace_id == workspace_id, ExportTask.run_id == run_id)
        .order_by(ExportTask.created_at.desc(), ExportTask.id.desc())
        .limit(min(max(limit, 1), MAX_EXPORTS))
    )
    tasks = list(tasks)
    summaries = _qc_summaries(session, [task.id for task in tasks if task.status == TaskStatus.SUCCESS])
    entries = []
    for task in tasks:
        done = task.status == TaskStatus.SUCCESS and task.storage_key is not None
        entries.append(
            ExportEntry(
                task_id=task.id,
                language=languages.by_id(task.language_id).short_name,
                languages=[languages.by_id(i).short_name for i in task.track_language_ids],
                output_format=task.output_format,
                options=dict(task.options or {}),
                status=task.status,
                progress=task.progress,
                size=task.size,
                loudness=task.loudness,
                message=task.message,
                exception_reason=task.exception_reason,
                created_at=_utc(task.created_at) or datetime.now(UTC),
                finished_at=_utc(task.finished_at),
                output_url=signed_url(ctx, task) if done else None,
                qc=summaries.get(task.id),
            )
        )
    return entries


def _qc_summaries(session: Session, task_ids: list[str]) -> dict[str, QcSummary]:
    """Each report's verdict and checks, read out of the stored JSON by the database: not the plots' series,
    which are most of a report's bytes (the column is deferred for that reason)."""
    if not task_ids:
        return {}
    report = ExportTask.qc_report
    rows = session.execute(
        select(ExportTask.id, report["passed"].as_boolean(), report["checks"]).where(ExportTask.id.in_(task_ids))
    )
    return {
        task_id: QcSummary(bool(passed), list(dict.fromkeys(c["name"] for c in checks if not c["passed"])))
        for task_id, passed, checks in rows
        if passed is not None and checks is not None
    }


def thumbnail_key(run: Run) -> str:
    return f"{run.storage_prefix}thumbnail.jpg"


def run_thumbnail(ctx: Context, session: Session, workspace_id: int, run_id: int) -> bytes:
    """A small JPEG of the run's video at about 1 s: made on first request, then read from storage.

    NotFound for an unknown run, one of another workspace, and a run without video.
    """
    run = get_run(session, workspace_id, run_id)
    source = run.file(FileRole.SOURCE)
    video = MediaInfo.from_json(source.probe).video if source is not None else []
    if not run.has_video or source is None or not video:
        raise NotFound(f"run {run_id} has no video, so no thumbnail")
    key, source_key, duration = thumbnail_key(run), source.storage_key, run.duration
    session.rollback()  # hand the connection back: FFmpeg and storage need no database
    try:
        if not ctx.storage.exists(key):  # concurrent first requests: one FFmpeg, whose outcome they all get
            _thumbnails_made.run(key, partial(_make_thumbnail, ctx, run_id, key, source_key, video[0].index, duration))
            if not run_exists(session, run_id):  # deleted meanwhile: its folder is gone, leave no thumbnail in it
                ctx.storage.delete_prefix(key)
                raise NotFound("run not found")
        with ctx.storage.local_copy(key) as path:
            return path.read_bytes()
    except StorageError:
        if run_exists(session, run_id):
            raise
        raise NotFound("run not found") from None  # deleted while its thumbnail was read or made


def _make_thumbnail(ctx: Context, run_id: int, key: str, source_key: str, stream_index: int, duration: float) -> None:
    if ctx.storage.exists(key):  # made by a call that ended between our look and this one
        return
    with tempfile.TemporaryDirectory(prefix="thumbnail-", dir=ctx.settings.staging_dir) as tmp:
        output = Path(tmp) / "thumbnail.jpg"
        try:
            with ctx.storage.local_copy(source_key) as source_path:
                make_thumbnail(source_path, output, stream_index=stream_index, duration=duration)
        except FFmpegError as exc:  # no decodable frame: nothing to show
            raise NotFound(f"no thumbnail can be made for run {run_id}: {exc}") from exc
        ctx.storage.put_file(key, output)  # atomic: another process making it too publishes the same picture
    log.info("made the thumbnail of run %d", run_id)


class SingleFlight:
    """One call per key at a time in this process; callers that come while it runs share its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Future[None]] = {}

    def run(self, key: str, call: Callable[[], None]) -> None:
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = Future()
                leading = True
            else:
                leading = False
        if not leading:
            flight.result()  # raises the leader's error
            return
        try:
            call()
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(None)
        finally:
            with self._lock:
                del self._flights[key]


_thumbnails_made = SingleFlight()  # thumbnails being made by this process, by storage key
