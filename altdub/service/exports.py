"""Request an export (URL now, or a task to poll) and run the task that makes it."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload

from altdub import languages
from altdub.db.models import LIVE_STATUSES, ApiKey, ExportTask, FileRole, Run, RunFile, TaskStatus, Workspace
from altdub.media.ffmpeg import FFmpegCancelled, FFmpegError, FFmpegTimeout, run_ffmpeg
from altdub.media.formats import FORMATS, AudioTrack, ExportInputs, build_plan, pre_loudness_chain
from altdub.media.loudness import ON_TARGET as LOUDNESS_ON_TARGET
from altdub.media.loudness import Limits, LoudnessFigures, Normalisation, plan_normalisation
from altdub.media.loudness import measure as measure_loudness
from altdub.media.options import ExportOptions, OptionError, resolve_options
from altdub.media.probe import MediaInfo, ProbeError, probe_output
from altdub.media.transcripts import Segment, write_subrip
from altdub.service.context import Context, TaskCancel
from altdub.service.errors import InvalidInput, NotFound, TooManyPending
from altdub.service.keys import hash_key
from altdub.service.runs import exports_prefix, get_run, run_exists
from altdub.storage import StorageError

log = logging.getLogger(__name__)

DURATION_TOLERANCE = 0.05  # seconds (spec §4)
PENDING_RETRY_SECONDS = 5  # Retry-After of a request over the pending-task limit: short exports end in seconds


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


def download_filename(run_id: int, language_id: int, output_format: str) -> str:
    """``run-<id>_<short_name>.<ext>`` (spec §3)."""
    return f"run-{run_id}_{languages.by_id(language_id).short_name}.{FORMATS[output_format].extension}"


def signed_url(ctx: Context, task: ExportTask, base_url: str) -> str:
    assert task.storage_key is not None
    filename = download_filename(task.run_id, task.language_id, task.output_format)
    return ctx.download_url(task.storage_key, filename, base_url)


def _live_task(session: Session, identity: str) -> ExportTask | None:
    return session.scalar(
        select(ExportTask).where(ExportTask.identity == identity, ExportTask.status.in_(LIVE_STATUSES))
    )


def _request_key(run_id: int, language_value: str, output_format: str, requested_options: dict[str, Any]) -> bytes:
    """A fixed-size digest of the request as the client sent it, for ``Context.identities``.

    A digest, not the request: whatever length of text a client pads its options with, an entry
    costs the same few bytes (the cache is bounded in bytes, see ``IdentityCache``).
    """
    canonical = json.dumps(
        [run_id, language_value.strip().lower(), output_format, requested_options],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).digest()


# Built once: constructing a statement costs more than running it.
_FINISHED_EXPORT = (
    select(ExportTask.storage_key, ExportTask.run_id, ExportTask.language_id, ExportTask.output_format)
    .join(ApiKey, ApiKey.workspace_id == ExportTask.workspace_id)
    .where(
        ApiKey.key_hash == bindparam("key_hash"),
        ApiKey.revoked_at.is_(None),
        ExportTask.identity == bindparam("identity"),
        ExportTask.status == TaskStatus.SUCCESS.value,
    )
)


def cached_export_url(
    ctx: Context,
    raw_key: str | None,
    run_id: int,
    language_value: str,
    output_format: str,
    requested_options: dict[str, Any],
    base_url: str,
) -> str | None:
    """The signed URL of an export that exists, found with one indexed query; None sends the caller the long way.

    The query checks everything the long way would: the key is valid and not revoked, the export
    belongs to the key's workspace, and it is finished. Fast enough to run on the event loop.
    """
    identity = ctx.identities.get(_request_key(run_id, language_value, output_format, requested_options))
    if identity is None or not raw_key:
        return None
    with ctx.engine.connect() as connection:
        row = connection.execute(_FINISHED_EXPORT, {"key_hash": hash_key(raw_key), "identity": identity}).first()
    if row is None:
        return None
    filename = download_filename(row.run_id, row.language_id, row.output_format)
    return ctx.download_url(row.storage_key, filename, base_url)


def _stem_file(run: Run, language: languages.Language, stem: str) -> RunFile:
    """The stored file behind ``stem``: the dubbed mix, the voice stem or the background stem."""
    role, language_id = {
        "mix": (FileRole.DUB, language.id),
        "voice": (FileRole.VOICE, language.id),
        "background": (FileRole.BACKGROUND, None),
    }[stem]
    found = run.file(role, language_id)
    if found is None:
        what = f"voice stem for {language.short_name}" if stem == "voice" else "background stem"
        raise InvalidInput(("body", "stem"), f"run {run.id} has no {what}")
    return found


def request_export(
    ctx: Context,
    session: Session,
    workspace_id: int,
    run_id: int,
    language_value: str,
    output_format: str,
    requested_options: dict[str, Any],
    base_url: str,
) -> ExportAnswer:
    """The signed URL when the export exists; else the live task for it, created if there is none.

    Uniqueness is the database's: a partial unique index admits one PENDING/SUCCESS task per
    identity, so concurrent requests in any number of processes converge on one task.
    ``requested_options`` holds the option keys the client sent; they are resolved to effective
    values first, so that spelling out a default gives the same export as omitting it.
    """
    language = parse_language(language_value, ("path", "language"))
    run = get_run(session, workspace_id, run_id)
    if language.id not in run.dub_language_ids:
        raise NotFound(f"language {language.short_name} is not in run {run_id}")
    if FORMATS[output_format].is_video and not run.has_video:
        raise InvalidInput(
            ("body", "output_format"), f"{output_format} is a video format and run {run_id} has no video"
        )
    stem = _stem_file(run, language, requested_options.get("stem") or "mix")
    try:
        options = resolve_options(output_format, requested_options, MediaInfo.from_json(stem.probe).audio[0])
    except OptionError as exc:
        raise InvalidInput(("body", exc.key), exc.message) from exc
    if options.subtitles == "soft" and run.transcript(language.id) is None:
        raise InvalidInput(("body", "subtitles"), f"run {run_id} has no transcript for {language.short_name}")
    resolved = options.as_dict()
    identity = export_identity(run.id, language.id, output_format, resolved)
    ctx.identities.put(_request_key(run_id, language_value, output_format, requested_options), identity)

    task = _live_task(session, identity)
    if task is None:
        minutes = run.duration / 60
        task = ExportTask(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            run_id=run.id,
            language_id=language.id,
            output_format=output_format,
            options=resolved,
            identity=identity,
            minutes=minutes,
            status=TaskStatus.PENDING.value,
            progress=0,
        )
        if not _reserve_minutes(session, workspace_id, minutes, ctx.settings.export_quota_minutes):
            task.status = TaskStatus.PAYMENT_REQUIRED.value
            task.exception_reason = TaskStatus.PAYMENT_REQUIRED.value
            task.message = _quota_message(session, workspace_id, minutes, ctx.settings.export_quota_minutes)
            task.finished_at = datetime.now(UTC)
        elif _pending_tasks(session, workspace_id) >= ctx.settings.max_pending_tasks:
            session.rollback()  # the reservation too
            raise TooManyPending(ctx.settings.max_pending_tasks, PENDING_RETRY_SECONDS)
        session.add(task)
        try:
            session.commit()  # the reservation and the task, together
        except IntegrityError:  # another request, maybe in another process, created it first; or the run is gone
            session.rollback()
            task = _live_task(session, identity)
            if task is None:
                if not run_exists(session, run_id):
                    raise NotFound("run not found") from None  # a DELETE of the run committed meanwhile
                raise
        else:
            if ctx.executor is not None and task.status == TaskStatus.PENDING:
                ctx.executor.submit(task.id)
            return ExportAnswer(task_id=task.id)
    if task.status == TaskStatus.SUCCESS:
        return ExportAnswer(output_url=signed_url(ctx, task, base_url))
    return ExportAnswer(task_id=task.id)


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


def get_task(session: Session, workspace_id: int, task_id: str, run_id: int | None = None) -> ExportTask:
    task = session.get(ExportTask, task_id)
    if task is None or task.workspace_id != workspace_id or (run_id is not None and task.run_id != run_id):
        raise NotFound("task not found")
    return task


def release_pending_tasks(ctx: Context) -> list[str]:
    """Every PENDING task, with the claims of dead workers released, to run again.

    Only for the embedded mode, where this process is the only worker: whatever claim a
    PENDING task holds was made by a process that is gone.
    """
    with ctx.sessions.begin() as session:
        pending = ExportTask.status == TaskStatus.PENDING.value
        session.execute(update(ExportTask).where(pending).values(heartbeat_at=None))
        return list(session.scalars(select(ExportTask.id).where(pending).order_by(ExportTask.created_at)))


HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 10.0  # a claim without a heartbeat for this long belongs to a dead worker


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


def _claim_next(ctx: Context) -> str | None:
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


class _Heartbeat:
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

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class _TaskFailed(Exception):
    """Ends the task in ``status`` with a Camb ``exception_reason`` and a human message."""

    def __init__(self, message: str, reason: str = "PROCESSING_ERROR", status: TaskStatus = TaskStatus.ERROR) -> None:
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


def run_next_task(ctx: Context) -> str | None:
    """Claim the fairest waiting task (``_fairest_claimable``) and make its export; the task's id, or None.

    Executors call this once per task submitted, when a worker is free: the task to run is chosen
    then, not when it was submitted. None when every PENDING task is taken (a duplicate delivery,
    or a task already run by an earlier call) or the process is stopping.
    Idempotent: a re-run after a crash starts over and publishes under the same key.
    """
    if ctx.stopping.is_set():
        return None  # shutting down: the tasks stay PENDING and resume at the next start
    task_id = _claim_next(ctx)
    if task_id is not None:
        _run_claimed(ctx, task_id)
    return task_id


def _run_claimed(ctx: Context, task_id: str) -> None:
    """Make the export of a task claimed for this worker."""
    with ctx.sessions() as session:
        task = session.get(ExportTask, task_id)
        loaders = [selectinload(Run.files), selectinload(Run.transcripts)]
        run = session.get(Run, task.run_id, options=loaders) if task else None
        session.expunge_all()  # detached copies: the conversion holds no session open
    if task is None or run is None:
        return  # the run was deleted meanwhile
    scratch = Path(tempfile.mkdtemp(prefix=f"export-{task.id}-", dir=ctx.settings.staging_dir))
    cancel: TaskCancel | None = None
    try:
        with ctx.conversions.running(task.id) as cancel, _Heartbeat(ctx, task.id, cancel):
            result = _convert_and_publish(ctx, task, run, scratch, cancel)
    except FFmpegCancelled:
        if cancel is not None and cancel.task_gone:  # not a failure: there is no task left to record one on
            log.info("task %s was deleted with its run; its conversion was stopped", task.id)
        else:
            log.info("task %s interrupted by shutdown; it resumes at the next start", task.id)
        return
    except _TaskFailed as failure:
        recorded = _finish(
            ctx,
            task.id,
            status=failure.status.value,
            exception_reason=failure.reason,
            message=failure.message,
        )
        if not recorded:
            log.info(
                "task %s ended %s (%s) after it was deleted with its run", task.id, failure.status, failure.message
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
        shutil.rmtree(scratch, ignore_errors=True)
    published = _finish(
        ctx,
        task.id,
        status=TaskStatus.SUCCESS.value,
        progress=100,
        storage_key=result.key,
        size=result.size,
        loudness=result.loudness.as_dict() if result.loudness else None,
        message=result.message,
    )
    if not published:
        with ctx.sessions() as session:  # the run was deleted meanwhile: drop the orphan file
            if session.get(ExportTask, task.id) is None:
                ctx.storage.delete_prefix(result.key)
                log.info("task %s was deleted with its run as it finished; its file was dropped", task.id)


@dataclass(frozen=True)
class _Published:
    key: str
    size: int
    loudness: LoudnessFigures | None
    message: str | None


def _convert_and_publish(ctx: Context, task: ExportTask, run: Run, scratch: Path, cancel: TaskCancel) -> _Published:
    fmt = FORMATS[task.output_format]
    output = scratch / f"output.{fmt.extension}"
    options = ExportOptions(**task.options)
    language = languages.by_id(task.language_id)
    try:
        stem = _stem_file(run, language, options.stem)
    except InvalidInput as exc:
        raise _TaskFailed(exc.message, "INVALID_SOURCE_DATA") from exc
    source = run.file(FileRole.SOURCE)
    try:
        with ExitStack() as stack:
            stem_path = stack.enter_context(ctx.storage.local_copy(stem.storage_key))
            source_path = stack.enter_context(ctx.storage.local_copy(source.storage_key)) if source else None
            for stored, path in ((stem, stem_path), (source, source_path)):
                if stored is not None and path is not None and path.stat().st_size != stored.size:
                    raise _TaskFailed(
                        f"the stored {stored.role} changed since it was imported "
                        f"({path.stat().st_size} bytes instead of {stored.size})",
                        "INVALID_SOURCE_DATA",
                    )
            inputs = _export_inputs(run, language, options, stem, stem_path, source, source_path, scratch)
            figures = _convert(ctx, task, options, inputs, output, cancel)
    except StorageError as exc:
        raise _TaskFailed(f"an input of the run is unreadable: {exc}", "INVALID_SOURCE_DATA") from exc
    key = f"{exports_prefix(task.workspace_id, run.id)}{task.id}.{fmt.extension}"
    message = None
    if figures is not None and options.loudness_target is not None:
        target = options.loudness_target
        message = (
            f"loudness {target.name} (target {target.integrated:g} LUFS, true peak <= {target.true_peak:g} dBTP): "
            f"integrated {figures.integrated:.1f} LUFS, true peak {figures.true_peak:.1f} dBTP, "
            f"range {figures.lra:.1f} LU"
        )
    return _Published(key, ctx.storage.put_file(key, output), figures, message)


def _export_inputs(
    run: Run,
    language: languages.Language,
    options: ExportOptions,
    stem: RunFile,
    stem_path: Path,
    source: RunFile | None,
    source_path: Path | None,
    scratch: Path,
) -> ExportInputs:
    stem_info = MediaInfo.from_json(stem.probe)
    audio = AudioTrack(stem_path, stem_info.audio[0], stem_info.duration, language.iso639_2)
    video_path = video = original = None
    if source is not None and source_path is not None:
        source_info = MediaInfo.from_json(source.probe)
        if source_info.video:
            video_path, video = source_path, source_info.video[0]
        source_language = languages.by_id(run.source_language_id)
        original = AudioTrack(source_path, source_info.audio[0], source_info.duration, source_language.iso639_2)
    subtitles_path = None
    transcript = run.transcript(language.id)
    if options.subtitles == "soft" and transcript is not None:
        segments = [Segment(**s) for s in transcript.segments]
        subtitles_path = write_subrip(segments, scratch / "subtitles.srt")
    title = f"{run.name} ({language.name})" + ("" if options.stem == "mix" else f" [{options.stem}]")
    return ExportInputs(
        audio=audio,
        duration=run.duration,
        title=title,
        video_path=video_path,
        video=video,
        original=original,
        subtitles_path=subtitles_path,
        subtitles_language=language.iso639_2,
    )


_LOSSY = {"mp3", "aac", "m4a", "mp4", "mov"}
_ENCODES = 2  # a normalised export is encoded again, once, when the encoder moved its loudness


def _plan_normalisation(
    track: AudioTrack, options: ExportOptions, duration: float, output_format: str, limits: Limits
) -> Normalisation:
    """The gain (and limiter) that a measurement of the track calls for."""
    target = options.loudness_target
    assert target is not None
    # Lossy encoders overshoot the peaks they are given: aim below the ceiling.
    ceiling = target.true_peak - (1.0 if output_format in _LOSSY else 0.1)
    chain = pre_loudness_chain(track, options, duration)
    try:
        return plan_normalisation(
            track.path, f"0:{track.stream.index}", chain, target, ceiling, options.sample_rate, limits
        )
    except (FFmpegCancelled, FFmpegTimeout):
        raise
    except FFmpegError as exc:
        raise _TaskFailed(f"loudness measurement failed: {exc}") from exc


def _convert(
    ctx: Context, task: ExportTask, options: ExportOptions, inputs: ExportInputs, output: Path, cancel: TaskCancel
) -> LoudnessFigures | None:
    """Encode (and, for a loudness target, measure the output and correct once); returns the figures."""
    target = options.loudness_target
    plans: list[Normalisation] = []
    if target is not None:
        tracks = [inputs.audio] + ([inputs.original] if options.include_original_audio and inputs.original else [])
        limits = Limits(ctx.settings.task_time_limit, cancel)
        try:
            plans = [_plan_normalisation(t, options, inputs.duration, task.output_format, limits) for t in tracks]
        except FFmpegTimeout as exc:
            raise _TaskFailed(str(exc), "TIMEOUT", TaskStatus.TIMEOUT) from exc
    per_track = _tracks_per_programme(task.output_format, options)
    attempt = 0
    while True:
        attempt += 1
        if plans:
            inputs = replace(inputs, audio=replace(inputs.audio, loudnorm=plans[0].filter()))
            if len(plans) > 1 and inputs.original is not None:
                inputs = replace(inputs, original=replace(inputs.original, loudnorm=plans[1].filter()))
        written = _encode(ctx, task, options, inputs, output, cancel)
        info = _verify(task.output_format, output, written, inputs, options)
        if target is None:
            return None
        streams = [s.index for s in info.audio]
        programmes = [streams[i * per_track : (i + 1) * per_track] for i in range(len(plans))]
        limits = Limits(ctx.settings.task_time_limit, cancel)
        try:
            figures = [measure_loudness(output, programme, limits) for programme in programmes]
        except FFmpegTimeout as exc:
            raise _TaskFailed(str(exc), "TIMEOUT", TaskStatus.TIMEOUT) from exc
        except FFmpegCancelled:
            raise
        except FFmpegError as exc:
            raise _TaskFailed(f"output loudness unreadable: {exc}") from exc
        misses = [target.integrated - f.integrated for f in figures]
        if attempt == _ENCODES or all(abs(m) <= LOUDNESS_ON_TARGET for m in misses):
            return figures[0]
        plans = [plan.corrected(miss) for plan, miss in zip(plans, misses, strict=True)]


def _encode(
    ctx: Context, task: ExportTask, options: ExportOptions, inputs: ExportInputs, output: Path, cancel: TaskCancel
) -> float | None:
    """Run the plan; returns the seconds of media FFmpeg says it wrote."""
    try:
        plan = build_plan(task.output_format, inputs, options, output)
    except ValueError as exc:
        raise _TaskFailed(str(exc), "MISMATCHED_SOURCE_CODEC") from exc
    try:
        return run_ffmpeg(
            plan.args,
            duration=inputs.duration,
            on_progress=_ProgressWriter(ctx, task.id),
            time_limit=ctx.settings.task_time_limit,
            cancel=cancel,
        ).written_seconds
    except FFmpegCancelled:
        raise
    except FFmpegTimeout as exc:
        raise _TaskFailed(str(exc), "TIMEOUT", TaskStatus.TIMEOUT) from exc
    except FFmpegError as exc:
        raise _TaskFailed(f"conversion failed: {exc}") from exc


def _tracks_per_programme(output_format: str, options: ExportOptions) -> int:
    """Audio streams that make up the dubbed programme: one, or one per channel in MXF."""
    return options.channels if output_format == "mxf" else 1


def _verify(
    output_format: str, output: Path, written_seconds: float | None, inputs: ExportInputs, options: ExportOptions
) -> MediaInfo:
    """Check the file before it is published: readable, the right streams, the right length."""
    try:
        info = probe_output(output, written_seconds)
    except ProbeError as exc:
        raise _TaskFailed(f"output is unreadable: {exc}") from exc
    expected_audio = _tracks_per_programme(output_format, options) * (2 if options.include_original_audio else 1)
    problems = []
    if len(info.audio) != expected_audio:
        problems.append(f"{len(info.audio)} audio streams instead of {expected_audio}")
    if FORMATS[output_format].is_video and len(info.video) != 1:
        problems.append("no video stream")
    if options.subtitles == "soft" and len(info.subtitles) != 1:
        problems.append("no subtitle stream")
    if abs(info.duration - inputs.duration) > DURATION_TOLERANCE:
        problems.append(f"duration {info.duration:.3f} s instead of {inputs.duration:.3f} s")
    if problems:
        raise _TaskFailed("output failed verification: " + "; ".join(problems))
    return info
