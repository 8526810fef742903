"""The run of one claimed export task: open its inputs, convert, verify, measure loudness, publish.

Outcomes are decided here and only here: FFmpeg's errors become a task's TIMEOUT or ERROR in
``_ffmpeg_step``, and a conversion stopped by a shutdown or by the deletion of its run records no
outcome at all (``_run_claimed``), whatever exception the stop surfaced as. Every state it writes goes
through ``service.tasks``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import selectinload

from altdub import languages
from altdub.db.models import ExportTask, FileRole, Run, RunFile, TaskStatus
from altdub.media import meter
from altdub.media.aaf import write_aaf
from altdub.media.catalogue import CATALOGUE, Format, LoudnessTarget
from altdub.media.clips import write_clips_zip
from altdub.media.ffmpeg import FFmpegCancelled, FFmpegError, FFmpegRun, FFmpegTimeout, Limits, run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, TextTrack, build_plan, pre_loudness_chain
from altdub.media.handoff import stem_problems
from altdub.media.isobmff import disable_text_tracks
from altdub.media.loudness import ON_TARGET as LOUDNESS_ON_TARGET
from altdub.media.loudness import LoudnessFigures, Normalisation, plan_normalisation
from altdub.media.meter import Reading, Regions
from altdub.media.options import ExportOptions
from altdub.media.otio import write_otio
from altdub.media.packaging import finish_package, package_plan, verify_package
from altdub.media.probe import MediaInfo, ProbeError, probe_output
from altdub.media.qc_report import QcReport
from altdub.media.timecode import timecode_problem
from altdub.media.timeline import HANDOFF_BITS, Timeline
from altdub.media.tracks_zip import write_tracks_zip
from altdub.media.transcripts import Segment, write_text_track
from altdub.service import handoff, intermediates, qc, qc_handoff, tasks
from altdub.service.context import Context, TaskCancel
from altdub.service.errors import InvalidInput
from altdub.service.packages import stored_prefix
from altdub.service.runs import exports_prefix, stem_file
from altdub.storage import StorageError

log = logging.getLogger(__name__)

DURATION_TOLERANCE = 0.05  # seconds (spec §4)


def run_next_task(ctx: Context) -> str | None:
    """Claim the fairest waiting task (``tasks.claim_next``) and make its export; the task's id, or None.

    Executors call this once per task submitted, when a worker is free: the task to run is chosen
    then, not when it was submitted. None when every PENDING task is taken (a duplicate delivery,
    or a task already run by an earlier call) or the process is stopping.
    Idempotent: a re-run after a crash starts over and publishes under the same key.
    """
    if ctx.stopping.is_set():
        return None  # shutting down: the tasks stay PENDING and resume at the next start
    task_id = tasks.claim_next(ctx)
    if task_id is not None:
        _run_claimed(ctx, task_id)
    return task_id


class _TaskFailed(Exception):
    """Ends the task in ``status`` with a Camb ``exception_reason`` and a human message."""

    def __init__(self, message: str, reason: str = "PROCESSING_ERROR", status: TaskStatus = TaskStatus.ERROR) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@contextmanager
def _ffmpeg_step(failure: str) -> Iterator[None]:
    """FFmpeg's errors as task outcomes, the one place they are translated.

    Its time limit is a TIMEOUT; any other error an ERROR saying ``failure: <FFmpeg's reason>``; a
    cancellation passes through untouched: it is no outcome (``_run_claimed``).
    """
    try:
        yield
    except FFmpegCancelled:
        raise
    except FFmpegTimeout as exc:
        raise _TaskFailed(str(exc), "TIMEOUT", TaskStatus.TIMEOUT) from exc
    except FFmpegError as exc:
        raise _TaskFailed(f"{failure}: {exc}") from exc


def _task_ffmpeg(
    ctx: Context,
    task: ExportTask,
    args: list[str],
    duration: float,
    cancel: TaskCancel,
    progress: Callable[[float], None] | None = None,
) -> FFmpegRun:
    """FFmpeg for the task: its progress recorded (``progress``, else the task's own writer), the task's time
    limit and the shutdown's cancel applied."""
    return run_ffmpeg(
        args,
        duration=duration,
        on_progress=progress or tasks.ProgressWriter(ctx, task.id),
        time_limit=ctx.settings.task_time_limit,
        cancel=cancel,
    )


def _run_claimed(ctx: Context, task_id: str) -> None:
    """Make the export of a task claimed for this worker, and record how it ended."""
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
        with ctx.conversions.running(task.id) as cancel, tasks.Heartbeat(ctx, task.id, cancel):
            result = _convert_and_publish(ctx, task, run, scratch, cancel)
    except Exception as exc:
        if isinstance(exc, FFmpegCancelled) or (cancel is not None and cancel.is_set()):
            _log_cancelled(task.id, cancel)  # whatever the stop surfaced as, it is not the task's failure
            return
        if isinstance(exc, _TaskFailed):
            failure = exc
        else:
            log.exception("export task %s failed", task.id)
            failure = _TaskFailed(f"internal error: {exc.__class__.__name__}", "INTERNAL_ERROR")
        recorded = tasks.finish(
            ctx, task.id, status=failure.status.value, exception_reason=failure.reason, message=failure.message
        )
        if not recorded and isinstance(exc, _TaskFailed):
            log.info(
                "task %s ended %s (%s) after it was deleted with its run", task.id, failure.status, failure.message
            )
        return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    published = tasks.finish(
        ctx,
        task.id,
        status=TaskStatus.SUCCESS.value,
        progress=100,
        storage_key=result.key,
        size=result.size,
        loudness=result.loudness.as_dict() if result.loudness else None,
        message=result.message,
        qc_report=result.qc_report.as_dict() if result.qc_report else None,
    )
    if not published and not tasks.task_exists(ctx, task.id):  # the run was deleted meanwhile: drop the orphan file
        ctx.storage.delete_prefix(stored_prefix(result.key))  # a streaming package: its whole folder
        log.info("task %s was deleted with its run as it finished; its file was dropped", task.id)


def _log_cancelled(task_id: str, cancel: TaskCancel | None) -> None:
    if cancel is not None and cancel.task_gone:  # not a failure: there is no task left to record one on
        log.info("task %s was deleted with its run; its conversion was stopped", task_id)
    else:
        log.info("task %s interrupted by shutdown; it resumes at the next start", task_id)


@dataclass(frozen=True)
class _Published:
    key: str
    size: int
    loudness: LoudnessFigures | None
    message: str | None
    qc_report: QcReport | None = None


def _convert_and_publish(ctx: Context, task: ExportTask, run: Run, scratch: Path, cancel: TaskCancel) -> _Published:
    fmt = CATALOGUE[task.output_format]
    output = scratch / f"output.{fmt.extension}"
    options = ExportOptions(**task.options)
    chosen = [languages.by_id(i) for i in task.track_language_ids]
    try:
        stems = [stem_file(run, language, options.stem) for language in chosen]
    except InvalidInput as exc:
        raise _TaskFailed(exc.message, "INVALID_SOURCE_DATA") from exc
    source = run.file(FileRole.SOURCE)
    try:
        with ExitStack() as stack:
            stored = [*stems, source] if source is not None else stems
            if fmt.handoff:  # every stem of the run, not the one asked for
                stored = handoff.stored_inputs(run, chosen)
            keys = dict.fromkeys(f.storage_key for f in stored)  # the background stem serves every language
            paths = {key: stack.enter_context(ctx.storage.local_copy(key)) for key in keys}
            for file in stored:
                if paths[file.storage_key].stat().st_size != file.size:
                    raise _TaskFailed(
                        f"the stored {file.role} changed since it was imported "
                        f"({paths[file.storage_key].stat().st_size} bytes instead of {file.size})",
                        "INVALID_SOURCE_DATA",
                    )
            if fmt.handoff:
                return _handoff_and_publish(ctx, task, run, chosen, options, paths, scratch, cancel)
            dubs = [
                _dub_track(language, stem, paths[stem.storage_key])
                for language, stem in zip(chosen, stems, strict=True)
            ]
            default_dub = task.track_language_ids.index(task.language_id)
            source_path = paths[source.storage_key] if source is not None else None
            inputs = _export_inputs(run, chosen, dubs, default_dub, options, source, source_path, scratch, fmt)
            delivery = _delivery(ctx, run, chosen, fmt, options, inputs, cancel)
            if fmt.package_entry is not None:
                return _package_and_publish(ctx, task, delivery, scratch / "package", cancel)
            converted = _convert(ctx, task, delivery, output, cancel)
    except StorageError as exc:
        raise _TaskFailed(f"an input of the run is unreadable: {exc}", "INVALID_SOURCE_DATA") from exc
    key = f"{exports_prefix(task.workspace_id, run.id)}{task.id}.{fmt.extension}"
    notes = [_track_sheet(inputs, options)] if fmt.track_per_channel else []
    figures = converted.figures
    if figures and options.loudness_target is not None:
        notes.append(_loudness_note(options.loudness_target, chosen, figures))
    default_figures = figures[inputs.default_dub] if figures else None  # the column holds the default track's
    report = _qc_report(ctx, delivery, output, converted.info, converted.readings, cancel)
    return _Published(key, ctx.storage.put_file(key, output), default_figures, "; ".join(notes) or None, report)


def _delivery(
    ctx: Context,
    run: Run,
    chosen: list[languages.Language],
    fmt: Format,
    options: ExportOptions,
    inputs: ExportInputs,
    cancel: TaskCancel,
) -> qc.Delivery:
    """What the export is asked to deliver, with each track's speech regions (the dialogue gate, the QC's)."""
    names = [language.short_name for language in chosen] + [languages.by_id(run.source_language_id).short_name]
    target = options.loudness_target
    tracks = len(inputs.audio_tracks(options))
    if ctx.settings.qc_reports or (target is not None and target.dialogue_gated):
        with _ffmpeg_step("speech detection failed"):
            speech = qc.track_speech(
                ctx, run, chosen, options, inputs.duration, Limits(ctx.settings.task_time_limit, cancel)
            )
    else:
        speech = [qc.Speech(None, "none")] * tracks
    return qc.Delivery(fmt, options, inputs, names[:tracks], speech)


def _qc_report(
    ctx: Context, delivery: qc.Delivery, output: Path, info: MediaInfo, readings: list[Reading], cancel: TaskCancel
) -> QcReport | None:
    """The output's QC report (its loudness readings taken now unless the normalisation took them already)."""
    if not ctx.settings.qc_reports:
        return None
    if not readings:
        limits = Limits(ctx.settings.task_time_limit, cancel)
        with _ffmpeg_step("QC measurement failed"):
            readings = qc.measure_output(output, delivery.fmt, delivery.options, info, len(delivery.tracks), limits)
    return qc.build_report(delivery, info, readings)


def _package_and_publish(
    ctx: Context, task: ExportTask, delivery: qc.Delivery, folder: Path, cancel: TaskCancel
) -> _Published:
    """A streaming package: its segments and manifests made in scratch, checked, then published as one folder.

    The task's key is the entry file (the playlist or manifest): its URL is only handed out once the
    whole folder is stored, so no client sees a playlist whose segments are not all there.
    """
    folder.mkdir()
    options, inputs = delivery.options, delivery.inputs
    if options.loudness_target is not None:  # each rendition normalised by one measured gain (no second pass)
        limits = Limits(ctx.settings.task_time_limit, cancel)
        inputs = inputs.with_loudnorm([plan.filter() for plan in _plans(delivery, task.output_format, limits)])
    progress = tasks.ProgressWriter(ctx, task.id)
    with ExitStack() as stack:
        with _ffmpeg_step("audio encoding failed"):  # each rendition encoded once (intermediates.py)
            encoded = stack.enter_context(intermediates.encoded_inputs(ctx, task, inputs, options, cancel, progress))
        inputs = encoded.inputs
        try:
            plan = package_plan(task.output_format, inputs, options, folder)
        except ValueError as exc:
            raise _TaskFailed(str(exc), "MISMATCHED_SOURCE_CODEC") from exc
        remux = intermediates.remux_progress(progress)
        _, tap, copied = _run_metered(
            ctx, task, delivery, plan.args, folder.parent, inputs, remux, cancel, "packaging failed", encoded.readings
        )
    for text in inputs.subtitles if options.subtitles == "soft" else ():
        shutil.copyfile(text.path, folder / text.path.name)
    try:
        finish_package(folder, inputs, options)
    except (ValueError, OSError) as exc:  # FFmpeg's draft is not whole, or the finished manifests cannot be written
        raise _TaskFailed(f"packaging failed: {exc}") from exc
    problems = verify_package(folder, inputs.duration)
    if problems:
        raise _TaskFailed("package failed verification: " + "; ".join(problems))
    readings = _readings(tap) or copied
    report = qc.build_report(delivery, qc.package_info(folder, delivery.fmt), readings) if readings else None
    prefix = f"{exports_prefix(task.workspace_id, task.run_id)}{task.id}/"
    try:
        size = ctx.storage.put_folder(prefix, folder)
    except StorageError as exc:  # not the run's inputs: the storage refused the package (and holds none of it)
        raise _TaskFailed(f"publishing the package failed: {exc}", "INTERNAL_ERROR") from exc
    entry = CATALOGUE[task.output_format].package_entry
    assert entry is not None
    return _Published(prefix + entry, size, None, None, report)


# Hand-offs for audio post (spec §5): each format's writer, from the run's rendered timeline to one file in scratch.
HANDOFF_WRITERS: dict[str, Callable[[Timeline, Path, Limits], Path]] = {
    "tracks_zip": write_tracks_zip,
    "clips_zip": write_clips_zip,
    "aaf": write_aaf,
    "otio": write_otio,
}


def _handoff_and_publish(
    ctx: Context,
    task: ExportTask,
    run: Run,
    chosen: list[languages.Language],
    options: ExportOptions,
    paths: dict[str, Path],
    scratch: Path,
    cancel: TaskCancel,
) -> _Published:
    """A hand-off: every stem rendered on the run's timeline, checked (and measured for the QC report), then
    written by the format's writer."""
    stems = scratch / "stems"
    stems.mkdir()
    handoff_plan = handoff.plan(run, chosen, options, paths, stems)
    tap = qc_handoff.tap_stems(handoff_plan.timeline, Path(tempfile.mkdtemp(prefix="meter-", dir=scratch)))
    args = [*handoff_plan.args, *tap.args()] if ctx.settings.qc_reports else handoff_plan.args
    with _ffmpeg_step("rendering the stems failed"):  # the QC's meter on each stem as it is written
        _task_ffmpeg(ctx, task, args, run.duration, cancel)
    problems = stem_problems(handoff_plan.timeline)
    if problems:
        raise _TaskFailed("stems failed verification: " + "; ".join(problems))
    limits = Limits(ctx.settings.task_time_limit, cancel)
    report = None
    if ctx.settings.qc_reports:
        timeline = handoff_plan.timeline
        report = qc_handoff.handoff_report(timeline, timeline.start_timecode, _readings(tap))
    try:
        with _ffmpeg_step(f"writing the {task.output_format} failed"):  # the clips' and the AAF's channels' cuts
            output = HANDOFF_WRITERS[task.output_format](handoff_plan.timeline, scratch, limits)
    except (ValueError, OSError) as exc:  # the writer's library refused the timeline, or the disk the file
        raise _TaskFailed(f"writing the {task.output_format} failed: {exc}") from exc
    key = f"{exports_prefix(task.workspace_id, run.id)}{task.id}.{CATALOGUE[task.output_format].extension}"
    return _Published(key, ctx.storage.put_file(key, output), None, _handoff_note(handoff_plan.timeline), report)


def _handoff_note(timeline: Timeline) -> str:
    """Where the timeline starts and what it holds, for the task's message: the mixer's first questions."""
    stems = ", ".join(f"{stem.language or ''} {stem.role}".strip() for stem in timeline.stems)
    return (
        f"start {timeline.start_timecode} at {timeline.frame_rate:.4g} fps (TimeReference {timeline.start_samples}); "
        f"{len(timeline.stems)} stems, {timeline.sample_rate / 1000:g} kHz {HANDOFF_BITS}-bit, {timeline.duration} "
        f"samples: {stems}"
    )


def _loudness_note(target: LoudnessTarget, chosen: list[languages.Language], figures: list[LoudnessFigures]) -> str:
    """The target and the figures measured on the output: one set, or one per language of a master."""

    gate = "dialogue" if target.dialogue_gated else "integrated"

    def measured(f: LoudnessFigures) -> str:
        return f"{gate} {f.integrated:.1f} LUFS, true peak {f.true_peak:.1f} dBTP, range {f.lra:.1f} LU"

    head = f"loudness {target.name} (target {target.integrated:g} LUFS, true peak <= {target.true_peak:g} dBTP): "
    if len(figures) == 1:
        return head + measured(figures[0])
    names = [language.short_name for language in chosen] + ["original"]
    return head + ", ".join(f"{name} {measured(f)}" for name, f in zip(names, figures, strict=False))


# The channels of each layout the catalogue offers, as a track sheet names them.
_CHANNEL_NAMES = {1: ("M",), 2: ("L", "R"), 6: ("L", "R", "C", "LFE", "Ls", "Rs")}


def _track_sheet(inputs: ExportInputs, options: ExportOptions) -> str:
    """MXF's audio tracks in order, each with its language and channel (spec §2): ``A1 es-es L, A2 es-es R, ...``."""
    names = _CHANNEL_NAMES.get(options.channels) or tuple(f"ch{i + 1}" for i in range(options.channels))
    sheet, number = [], 0
    for track in inputs.audio_tracks(options):
        for channel in names:
            number += 1
            sheet.append(f"A{number} {track.title} {channel}")
    return "track sheet: " + ", ".join(sheet)


def _dub_track(language: languages.Language, stem: RunFile, path: Path) -> AudioTrack:
    info = MediaInfo.from_json(stem.probe)
    return AudioTrack(path, info.audio[0], info.duration, language.iso639_2, language.name, language.tag)


def _export_inputs(
    run: Run,
    chosen: list[languages.Language],
    dubs: list[AudioTrack],
    default_dub: int,
    options: ExportOptions,
    source: RunFile | None,
    source_path: Path | None,
    scratch: Path,
    fmt: Format,
) -> ExportInputs:
    video_path = video = original = start_timecode = None
    if source is not None and source_path is not None:
        source_info = MediaInfo.from_json(source.probe)
        if source_info.video:
            video_path, video = source_path, source_info.video[0]
            if source_info.timecode and timecode_problem(source_info.timecode, video.frame_rate) is None:
                start_timecode = source_info.timecode
        source_language = languages.by_id(run.source_language_id)
        original = AudioTrack(
            source_path,
            source_info.audio[0],
            source_info.duration,
            source_language.iso639_2,
            f"{source_language.name} (original)",
            source_language.tag,
        )
    subtitles = []
    if options.subtitles == "soft":
        for language in chosen:
            transcript = run.transcript(language.id)
            if transcript is not None:
                extension = "vtt" if fmt.subtitle_codec == "webvtt" else "srt"
                path = scratch / f"subtitles-{language.tag}.{extension}"
                write_text_track([Segment(**s) for s in transcript.segments], path)
                subtitles.append(TextTrack(path, language.iso639_2, language.name, language.tag))
    names = ", ".join(language.name for language in chosen)
    title = f"{run.name} ({names})" + ("" if options.stem == "mix" else f" [{options.stem}]")
    return ExportInputs(
        dubs=tuple(dubs),
        duration=run.duration,
        title=title,
        default_dub=default_dub,
        video_path=video_path,
        video=video,
        original=original,
        subtitles=tuple(subtitles),
        timecode=start_timecode,
    )


_ENCODES = 2  # a normalised export is encoded again, once, when the encoder moved its loudness


def _gate(target: LoudnessTarget, speech: qc.Speech) -> Regions | None:
    """The regions a target's loudness is measured over: the speech's for a dialogue-gated one (None: the whole)."""
    return speech.regions if target.dialogue_gated else None


def _plans(delivery: qc.Delivery, output_format: str, limits: Limits) -> list[Normalisation]:
    """The gain (and limiter) that a measurement of each track calls for, on the target's gate."""
    target, options, duration = delivery.options.loudness_target, delivery.options, delivery.inputs.duration
    assert target is not None
    # Lossy encoders overshoot the peaks they are given: aim below the ceiling.
    ceiling = target.true_peak - (1.0 if CATALOGUE[output_format].lossy else 0.1)
    plans = []
    for track, speech in zip(delivery.tracks, delivery.speech, strict=True):
        chain = pre_loudness_chain(track, options, duration)
        with _ffmpeg_step("loudness measurement failed"):
            plans.append(
                plan_normalisation(
                    track.path, f"0:{track.stream.index}", chain, target, ceiling, options.sample_rate, limits,
                    _gate(target, speech),
                )
            )  # fmt: skip
    return plans


@dataclass(frozen=True)
class _Converted:
    info: MediaInfo  # the output's probe
    readings: list[Reading]  # the meter's, per audio track, taken to check a loudness target (else none)
    figures: list[LoudnessFigures]  # on the target's gate, per audio track (none without a target)


def _convert(ctx: Context, task: ExportTask, delivery: qc.Delivery, output: Path, cancel: TaskCancel) -> _Converted:
    """Encode (and, for a loudness target, measure each track of the output and correct once)."""
    options, inputs = delivery.options, delivery.inputs
    target = options.loudness_target
    limits = Limits(ctx.settings.task_time_limit, cancel)
    plans = _plans(delivery, task.output_format, limits) if target is not None else []
    attempt = 0
    while True:
        attempt += 1
        if plans:
            inputs = inputs.with_loudnorm([plan.filter() for plan in plans])
        info, readings = _encode(ctx, task, delivery, inputs, output, cancel)
        if target is None:
            return _Converted(info, readings, [])
        with _ffmpeg_step("output loudness unreadable"):
            readings = readings or qc.measure_output(output, delivery.fmt, options, info, len(plans), limits)
            figures = [LoudnessFigures.of(r, _gate(target, s)) for r, s in zip(readings, delivery.speech, strict=True)]
        misses = [target.integrated - f.integrated for f in figures]
        if attempt == _ENCODES or all(abs(m) <= LOUDNESS_ON_TARGET for m in misses):
            return _Converted(info, readings, figures)
        plans = [plan.corrected(miss) for plan, miss in zip(plans, misses, strict=True)]


def _encode(
    ctx: Context, task: ExportTask, delivery: qc.Delivery, inputs: ExportInputs, output: Path, cancel: TaskCancel
) -> tuple[MediaInfo, list[Reading]]:
    """Run the plan and check its output (AAC formats: on the tracks' intermediates, encoded once, or encoding its
    one track itself and keeping it as the intermediate after); the output's probe and the meter's readings of its
    audio: taken in the same run (``_metered``), or the intermediates' (``_measuring_copies``), or none."""
    options = delivery.options
    progress = tasks.ProgressWriter(ctx, task.id)
    with ExitStack() as stack:
        encoded = None
        if intermediates.uses_intermediates(task.output_format):
            making = intermediates.encoded_inputs(ctx, task, inputs, options, cancel, progress)
            with _ffmpeg_step("audio encoding failed"):
                encoded = stack.enter_context(making)
            inputs = encoded.inputs
            if encoded.in_place is None:
                progress = intermediates.remux_progress(progress)
        try:
            plan = build_plan(task.output_format, inputs, options, output)
        except ValueError as exc:
            raise _TaskFailed(str(exc), "MISMATCHED_SOURCE_CODEC") from exc
        known = encoded.readings if encoded else None
        written, tap, copied = _run_metered(
            ctx, task, delivery, plan.args, output.parent, inputs, progress, cancel, "conversion failed", known
        )
        if plan.disable_text_tracks:
            disable_text_tracks(output)
        info = _verify(task.output_format, output, written, inputs, options)
        readings = _readings(tap) or copied
        if encoded is not None and encoded.in_place is not None:
            encoded.in_place.keep(output, readings[0] if readings else None)
    return info, readings


def _metered(ctx: Context, delivery: qc.Delivery, args: list[str], scratch: Path) -> tuple[list[str], meter.Tap | None]:
    """The encoding command with the meter on its output (``qc.tap``) when a QC report or a loudness target wants
    readings; the tap's readings are read once the output is checked (None: measure the file after, if at all)."""
    wanted = qc.readings_wanted(ctx.settings.qc_reports, delivery.options)
    tap = qc.tap(delivery, args, Path(tempfile.mkdtemp(prefix="meter-", dir=scratch))) if wanted else None
    return ([*args, *tap.args()] if tap else args), tap


def _run_metered(
    ctx: Context,
    task: ExportTask,
    delivery: qc.Delivery,
    plan_args: list[str],
    scratch: Path,
    inputs: ExportInputs,
    progress: Callable[[float], None],
    cancel: TaskCancel,
    failure: str,
    known: list[Reading] | None = None,
) -> tuple[float | None, meter.Tap | None, list[Reading]]:
    """The plan's FFmpeg run with the meter the QC wants: on the run's own encoders (the tap, read once the output
    is checked), or the readings of the intermediates it copies (``known``: taken as they were encoded; else
    measured beside it). The seconds FFmpeg wrote, the tap, those readings."""
    args, tap = _metered(ctx, delivery, plan_args, scratch)
    with _measuring_copies(ctx, tap, inputs, delivery.options, cancel, known) as copied_readings:
        with _ffmpeg_step(failure):
            written = _task_ffmpeg(ctx, task, args, inputs.duration, cancel, progress).written_seconds
        return written, tap, copied_readings()


@contextmanager
def _measuring_copies(
    ctx: Context,
    tap: meter.Tap | None,
    inputs: ExportInputs,
    options: ExportOptions,
    cancel: TaskCancel,
    known: list[Reading] | None,
) -> Iterator[Callable[[], list[Reading]]]:
    """When no meter rides on the command (its audio is copied) and every track is copied from its intermediate,
    the readings are the intermediates' (the very packets the output holds): those taken as they were encoded
    (``known``), else measured while the command remuxes, one FFmpeg per core. Yields what returns the readings
    (none when nothing was measured)."""
    tracks = inputs.audio_tracks(options)
    wanted = qc.readings_wanted(ctx.settings.qc_reports, options)
    if tap is not None or not wanted or not tracks or not all(t.encoded for t in tracks):
        yield list
        return
    if known is not None:
        yield lambda: known
        return
    limits = Limits(ctx.settings.task_time_limit, cancel)
    with ThreadPoolExecutor(max_workers=min(len(tracks), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(meter.read, t.path, [f"0:{t.stream.index}"], limits=limits) for t in tracks]

        def readings() -> list[Reading]:
            with _ffmpeg_step("measuring the encoded audio failed"):
                return [future.result() for future in futures]

        try:
            yield readings
        finally:
            for future in futures:
                future.cancel()  # the ones not started (the command failed): a started one runs to its end


def _readings(tap: meter.Tap | None) -> list[Reading]:
    with _ffmpeg_step("output loudness unreadable"):
        return tap.readings() if tap else []


def _verify(
    output_format: str, output: Path, written_seconds: float | None, inputs: ExportInputs, options: ExportOptions
) -> MediaInfo:
    """Check the file before it is published: readable, the right streams, the right length."""
    try:
        info = probe_output(output, written_seconds)
    except ProbeError as exc:
        raise _TaskFailed(f"output is unreadable: {exc}") from exc
    per_track = options.channels if CATALOGUE[output_format].track_per_channel else 1  # MXF: a track per channel
    expected_audio = per_track * len(inputs.audio_tracks(options))
    problems = []
    if len(info.audio) != expected_audio:
        problems.append(f"{len(info.audio)} audio streams instead of {expected_audio}")
    if CATALOGUE[output_format].is_video and len(info.video) != 1:
        problems.append("no video stream")
    if len(info.subtitles) != len(inputs.subtitles) and options.subtitles == "soft":
        problems.append(f"{len(info.subtitles)} subtitle streams instead of {len(inputs.subtitles)}")
    if abs(info.duration - inputs.duration) > DURATION_TOLERANCE:
        problems.append(f"duration {info.duration:.3f} s instead of {inputs.duration:.3f} s")
    if problems:
        raise _TaskFailed("output failed verification: " + "; ".join(problems))
    return info
