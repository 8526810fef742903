"""Request an export (URL now, or a task to poll) and run the task that makes it."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from altdub import languages
from altdub.db.models import LIVE_STATUSES, ExportTask, FileRole, Run, TaskStatus
from altdub.media.ffmpeg import FFmpegCancelled, FFmpegError, FFmpegTimeout, run_ffmpeg
from altdub.media.formats import FORMATS, ExportInputs, build_plan
from altdub.media.probe import MediaInfo, ProbeError, probe
from altdub.service.context import Context
from altdub.service.errors import InvalidInput, NotFound
from altdub.service.runs import exports_prefix, get_run
from altdub.storage import StorageError

log = logging.getLogger(__name__)

DURATION_TOLERANCE = 0.05  # seconds (spec §4)


@dataclass(frozen=True)
class ExportAnswer:
    output_url: str | None = None
    task_id: str | None = None


def parse_language(value: str, loc: tuple[str, ...]) -> languages.Language:
    language = languages.lookup(value)
    if language is None:
        raise InvalidInput(loc, f"unknown language {value!r}: use an id or short_name of /target-languages")
    return language


def export_identity(run_id: int, language_id: int, output_format: str, options: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"run": run_id, "language": language_id, "format": output_format, "options": options},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def download_filename(task: ExportTask) -> str:
    language = languages.by_id(task.language_id)
    return f"run-{task.run_id}_{language.short_name}.{FORMATS[task.output_format].extension}"


def signed_url(ctx: Context, task: ExportTask, base_url: str) -> str:
    assert task.storage_key is not None
    return ctx.storage.signed_url(task.storage_key, filename=download_filename(task), base_url=base_url)


def _live_task(session: Session, identity: str) -> ExportTask | None:
    return session.scalar(
        select(ExportTask).where(ExportTask.identity == identity, ExportTask.status.in_(LIVE_STATUSES))
    )


def request_export(
    ctx: Context,
    session: Session,
    workspace_id: int,
    run_id: int,
    language_value: str,
    output_format: str,
    base_url: str,
) -> ExportAnswer:
    """The signed URL when the export exists; else the live task for it, created if there is none.

    Uniqueness is the database's: a partial unique index admits one PENDING/SUCCESS task per
    identity, so concurrent requests in any number of processes converge on one task.
    """
    language = parse_language(language_value, ("path", "language"))
    run = get_run(session, workspace_id, run_id)
    if language.id not in run.dub_language_ids:
        raise NotFound(f"language {language.short_name} is not in run {run_id}")
    if FORMATS[output_format].is_video and not run.has_video:
        raise InvalidInput(
            ("body", "output_format"), f"{output_format} is a video format and run {run_id} has no video"
        )
    options: dict[str, Any] = {}
    identity = export_identity(run.id, language.id, output_format, options)

    task = _live_task(session, identity)
    if task is None:
        task = ExportTask(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            run_id=run.id,
            language_id=language.id,
            output_format=output_format,
            options=options,
            identity=identity,
            status=TaskStatus.PENDING.value,
            progress=0,
        )
        session.add(task)
        try:
            session.commit()
        except IntegrityError:  # another request, maybe in another process, created it first
            session.rollback()
            task = _live_task(session, identity)
            if task is None:
                raise
        else:
            if ctx.executor is not None:
                ctx.executor.submit(task.id)
            return ExportAnswer(task_id=task.id)
    if task.status == TaskStatus.SUCCESS:
        return ExportAnswer(output_url=signed_url(ctx, task, base_url))
    return ExportAnswer(task_id=task.id)


def get_task(session: Session, workspace_id: int, task_id: str, run_id: int | None = None) -> ExportTask:
    task = session.get(ExportTask, task_id)
    if task is None or task.workspace_id != workspace_id or (run_id is not None and task.run_id != run_id):
        raise NotFound("task not found")
    return task


def pending_task_ids(ctx: Context) -> list[str]:
    with ctx.sessions() as session:
        return list(
            session.scalars(select(ExportTask.id).where(ExportTask.status == TaskStatus.PENDING.value))
        )


class _TaskFailed(Exception):
    def __init__(self, status: TaskStatus, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class _ProgressWriter:
    """Writes progress to the database at most every half second, and only upwards."""

    def __init__(self, ctx: Context, task_id: str) -> None:
        self._ctx, self._task_id = ctx, task_id
        self._last_value, self._last_time = 0, 0.0

    def __call__(self, fraction: float) -> None:
        value = min(99, int(fraction * 100))  # 100 only once the file is published
        now = time.monotonic()
        if value <= self._last_value or now - self._last_time < 0.5:
            return
        self._last_value, self._last_time = value, now
        with self._ctx.sessions.begin() as session:
            session.execute(
                update(ExportTask)
                .where(
                    ExportTask.id == self._task_id,
                    ExportTask.status == TaskStatus.PENDING.value,
                    ExportTask.progress < value,
                )
                .values(progress=value)
            )


def _finish(ctx: Context, task_id: str, **values: Any) -> bool:
    """Record a final state if the task is still pending; False when it is gone or already final."""
    with ctx.sessions.begin() as session:
        result = session.execute(
            update(ExportTask)
            .where(ExportTask.id == task_id, ExportTask.status == TaskStatus.PENDING.value)
            .values(finished_at=datetime.now(UTC), **values)
        )
        return result.rowcount == 1


def run_export_task(ctx: Context, task_id: str) -> None:
    """Make the export of a PENDING task. Idempotent: a re-run after a crash starts over cleanly."""
    with ctx.sessions.begin() as session:
        task = session.get(ExportTask, task_id)
        if task is None or task.status != TaskStatus.PENDING.value:
            return
        task.attempts += 1
        task.started_at = datetime.now(UTC)
        run = session.get(Run, task.run_id, options=[selectinload(Run.files)])
        if run is None:
            return
        session.expunge_all()  # detached copies: the conversion holds no session open
    fmt = FORMATS[task.output_format]
    output = ctx.settings.staging_dir / f"export-{task.id}-{uuid.uuid4().hex}.{fmt.extension}"
    try:
        size_key = _convert_and_publish(ctx, task, run, output)
    except FFmpegCancelled:
        log.info("task %s interrupted by shutdown; it resumes at the next start", task.id)
        return
    except _TaskFailed as failure:
        _finish(
            ctx,
            task.id,
            status=failure.status.value,
            exception_reason=failure.reason,
            message=failure.message,
        )
        return
    except Exception as exc:
        log.exception("export task %s failed", task.id)
        _finish(
            ctx,
            task.id,
            status=TaskStatus.ERROR.value,
            exception_reason="INTERNAL_ERROR",
            message=f"internal error: {exc.__class__.__name__}",
        )
        return
    finally:
        output.unlink(missing_ok=True)
    size, key = size_key
    if not _finish(ctx, task.id, status=TaskStatus.SUCCESS.value, progress=100, storage_key=key, size=size):
        with ctx.sessions() as session:  # the run was deleted meanwhile: drop the orphan file
            if session.get(ExportTask, task.id) is None:
                ctx.storage.delete_prefix(key)


def _convert_and_publish(ctx: Context, task: ExportTask, run: Run, output: Path) -> tuple[int, str]:
    language = languages.by_id(task.language_id)
    dub_file = run.file(FileRole.DUB, task.language_id)
    source_file = run.file(FileRole.SOURCE)
    if dub_file is None:
        raise _TaskFailed(
            TaskStatus.ERROR, "INVALID_SOURCE_DATA", f"run {run.id} has no dub for {language.short_name}"
        )
    try:
        with ctx.storage.local_copy(dub_file.storage_key) as dub_path:
            if source_file is None:
                _convert(
                    ctx,
                    task,
                    run,
                    language,
                    output,
                    dub_path,
                    MediaInfo.from_json(dub_file.probe),
                    None,
                    None,
                )
            else:
                with ctx.storage.local_copy(source_file.storage_key) as source_path:
                    _convert(
                        ctx, task, run, language, output, dub_path, MediaInfo.from_json(dub_file.probe),
                        source_path, MediaInfo.from_json(source_file.probe),
                    )  # fmt: skip
    except StorageError as exc:
        raise _TaskFailed(
            TaskStatus.ERROR, "INVALID_SOURCE_DATA", f"an input of the run is unreadable: {exc}"
        ) from exc
    key = f"{exports_prefix(task.workspace_id, run.id)}{task.id}.{FORMATS[task.output_format].extension}"
    return ctx.storage.put_file(key, output), key


def _convert(
    ctx: Context,
    task: ExportTask,
    run: Run,
    language: languages.Language,
    output: Path,
    dub_path: Path,
    dub: MediaInfo,
    source_path: Path | None,
    source: MediaInfo | None,
) -> None:
    inputs = ExportInputs(
        dub_path=dub_path,
        dub=dub,
        source_path=source_path,
        source=source,
        duration=run.duration,
        language=language.iso639_2,
        title=f"{run.name} ({language.name})",
    )
    try:
        plan = build_plan(task.output_format, inputs, output)
    except ValueError as exc:
        raise _TaskFailed(TaskStatus.ERROR, "MISMATCHED_SOURCE_CODEC", str(exc)) from exc
    try:
        run_ffmpeg(
            plan.args,
            duration=inputs.duration,
            on_progress=_ProgressWriter(ctx, task.id),
            time_limit=ctx.settings.task_time_limit,
            cancel=ctx.stopping,
        )
    except FFmpegCancelled:
        raise
    except FFmpegTimeout as exc:
        raise _TaskFailed(TaskStatus.TIMEOUT, "TIMEOUT", str(exc)) from exc
    except FFmpegError as exc:
        raise _TaskFailed(TaskStatus.ERROR, "PROCESSING_ERROR", f"conversion failed: {exc}") from exc
    _verify(task.output_format, output, inputs)


def _verify(output_format: str, output: Path, inputs: ExportInputs) -> None:
    """Check the file before it is published: readable, the right streams, the right length."""
    try:
        info = probe(output)
    except ProbeError as exc:
        raise _TaskFailed(TaskStatus.ERROR, "PROCESSING_ERROR", f"output is unreadable: {exc}") from exc
    problems = []
    if not info.audio:
        problems.append("no audio stream")
    if FORMATS[output_format].is_video and not info.video:
        problems.append("no video stream")
    if abs(info.duration - inputs.duration) > DURATION_TOLERANCE:
        problems.append(f"duration {info.duration:.3f} s instead of {inputs.duration:.3f} s")
    if problems:
        raise _TaskFailed(
            TaskStatus.ERROR, "PROCESSING_ERROR", "output failed verification: " + "; ".join(problems)
        )
