"""Import a run from uploaded files (probed before anything is stored), list, read and delete runs."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from altdub import languages
from altdub.db.models import ExportTask, FileRole, Run, RunFile, TaskStatus, Transcript
from altdub.media.probe import MediaInfo, MediaLimits, MediaRefused, ProbeError, probe
from altdub.media.text import label_problem
from altdub.media.transcripts import MAX_TRANSCRIPT_BYTES, TranscriptError, parse_transcript, validate
from altdub.service.context import Context
from altdub.service.errors import InvalidInput, NotFound

DURATION_TOLERANCE = 0.02  # a dub may differ from the source by 2 % (spec §5)
TRANSCRIPT = "transcript_"  # the slot of a language's transcript: transcript_<language>, a file or text
MAX_NAME_CHARS = Run.__table__.c.name.type.length  # what the database keeps


@dataclass(frozen=True)
class IncomingFile:
    """An uploaded file, staged complete on local disk."""

    field: str
    filename: str
    path: Path
    size: int


@dataclass(frozen=True)
class ImportRequest:
    """What an import was given, as the API parsed it: every file staged whole on disk, each in its slot.

    Slots are named as the client named them (``source``, ``dub_<language>``, ``voice_<language>``,
    ``background``, ``transcript_<language>``), the names errors report.
    """

    source_language: str  # an id or short_name, checked here
    files: list[IncomingFile]
    transcript_texts: dict[str, str]  # transcripts sent as text, by slot
    name: str = ""  # empty: the reference file's name


@dataclass(frozen=True)
class _Input:
    incoming: IncomingFile
    role: FileRole
    language: languages.Language | None
    info: MediaInfo


def parse_language(value: str, field: str) -> languages.Language:
    """The language ``value`` (an id or short_name) names; InvalidInput on ``field`` when none."""
    language = languages.lookup(value)
    if language is None:
        raise InvalidInput(field, f"unknown language {value!r}: use an id or short_name of /target-languages")
    return language


def _classify(field: str) -> tuple[FileRole, languages.Language | None]:
    if field == "source":
        return FileRole.SOURCE, None
    if field == "background":
        return FileRole.BACKGROUND, None
    prefix, _, tag = field.partition("_")
    if prefix in ("dub", "voice") and tag:
        return FileRole(prefix), parse_language(tag, field)
    raise InvalidInput(
        field,
        "unknown file field: expected source, dub_<language>, voice_<language>, background or transcript_<language>",
    )


def _probe_input(incoming: IncomingFile, limits: MediaLimits) -> _Input:
    """Probe one staged file; each refusal names the file as its sender named it, never where it was staged."""
    role, language = _classify(incoming.field)
    name = f'"{incoming.filename}"'
    if incoming.size == 0:
        raise InvalidInput(incoming.field, f"{name} is empty")
    try:
        info = probe(incoming.path, limits)
    except MediaRefused as exc:
        raise InvalidInput(incoming.field, f"{name} is refused: {exc}") from exc
    except ProbeError as exc:
        raise InvalidInput(incoming.field, f"{name} is not a media file FFmpeg can read ({exc})") from exc
    if not info.audio:
        raise InvalidInput(incoming.field, f"{name} has no audio stream")
    if info.duration <= 0:
        raise InvalidInput(incoming.field, f"{name} has no measurable duration")
    return _Input(incoming, role, language, info)


def _check_lengths(inputs: list[_Input], reference: _Input) -> None:
    ref = reference.info.duration
    for item in inputs:
        if item is reference:
            continue
        drift = abs(item.info.duration - ref) / ref
        if drift > DURATION_TOLERANCE:
            raise InvalidInput(
                item.incoming.field,
                f"duration {item.info.duration:.3f} s differs from the {reference.incoming.field}'s "
                f"{ref:.3f} s by {drift:.1%}, more than the 2 % allowed",
            )


def _parse_transcripts(
    texts: dict[str, tuple[str, bytes]], languages_allowed: set[int], duration: float
) -> list[Transcript]:
    """Validated transcripts (field -> (file name, bytes)), one per language of the run: a dub's or the source's."""
    transcripts: dict[int, Transcript] = {}
    for field, (name, data) in texts.items():
        language = parse_language(field.removeprefix(TRANSCRIPT), field)
        if language.id not in languages_allowed:
            raise InvalidInput(field, f"the run has no dub in {language.short_name} and its source is not in it")
        if language.id in transcripts:
            raise InvalidInput(field, f"a second transcript for {language.short_name}")
        try:
            segments = parse_transcript(data)
            validate(segments, duration)
        except TranscriptError as exc:
            raise InvalidInput(field, f"invalid transcript: {exc}") from exc
        transcripts[language.id] = Transcript(
            language_id=language.id, original_name=name[:500], segments=[seg.as_dict() for seg in segments]
        )
    return list(transcripts.values())


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput("name", f"longer than {MAX_NAME_CHARS} characters")
    problem = label_problem(name)
    if problem:
        raise InvalidInput("name", f"the name {problem}")


def _extension(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def import_run(ctx: Context, workspace_id: int, request: ImportRequest) -> Run:
    """Validate every field and probe every file, then store them and create the run.

    Nothing is stored unless everything is valid; a failure while storing removes what was written.
    """
    transcript_texts = {slot: (slot, text.encode()) for slot, text in request.transcript_texts.items()}
    files = request.files
    source_language = parse_language(request.source_language, "source_language")
    _check_name(request.name)

    for incoming in files:
        if incoming.field.startswith(TRANSCRIPT):
            if incoming.field in transcript_texts:
                raise InvalidInput(incoming.field, "field given more than once")
            if incoming.size > MAX_TRANSCRIPT_BYTES:
                raise InvalidInput(incoming.field, "transcript larger than 10 MiB")
            transcript_texts[incoming.field] = (incoming.filename, incoming.path.read_bytes())
    limits = MediaLimits(
        ctx.settings.max_video_pixels,
        ctx.settings.max_video_frame_rate,
        ctx.settings.max_audio_sample_rate,
        ctx.settings.max_audio_channels,
        ctx.settings.max_audio_packets,
    )
    inputs = [_probe_input(f, limits) for f in files if not f.field.startswith(TRANSCRIPT)]
    seen: dict[tuple[FileRole, int | None], str] = {}
    for item in inputs:
        slot = (item.role, item.language.id if item.language else None)
        if slot in seen:
            raise InvalidInput(item.incoming.field, f"the same file slot as {seen[slot]!r}")
        seen[slot] = item.incoming.field
    dubs = [i for i in inputs if i.role == FileRole.DUB]
    if not dubs:
        raise InvalidInput("dub_<language>", "at least one dub_<language> file is required", "missing")
    dub_languages = {d.language.id for d in dubs if d.language}
    for item in inputs:
        if item.role == FileRole.VOICE and item.language and item.language.id not in dub_languages:
            raise InvalidInput(item.incoming.field, "a voice stem needs the dub_<language> it belongs to")
    source = next((i for i in inputs if i.role == FileRole.SOURCE), None)
    reference = source or dubs[0]
    _check_lengths(inputs, reference)
    transcripts = _parse_transcripts(transcript_texts, dub_languages | {source_language.id}, reference.info.duration)

    default_name = Path(reference.incoming.filename).stem or "Untitled run"
    run = Run(
        workspace_id=workspace_id,
        name=request.name or default_name,
        source_language_id=source_language.id,
        has_video=bool(source and source.info.video),
        duration=reference.info.duration,
        storage_prefix=f"w{workspace_id}/runs/{uuid.uuid4().hex}/",
    )
    try:
        for item in inputs:
            slot = item.role.value if item.language is None else f"{item.role.value}_{item.language.id}"
            key = f"{run.storage_prefix}{slot}{_extension(item.incoming.filename)}"
            size = ctx.storage.put_file(key, item.incoming.path)
            run.files.append(
                RunFile(
                    role=item.role.value,
                    language_id=item.language.id if item.language else None,
                    storage_key=key,
                    original_name=item.incoming.filename[:500],
                    size=size,
                    probe=item.info.to_json(),
                )
            )
        run.transcripts = transcripts
        with ctx.sessions.begin() as session:
            session.add(run)
    except BaseException:
        ctx.storage.delete_prefix(run.storage_prefix)
        raise
    return run


def get_run(session: Session, workspace_id: int, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None or run.workspace_id != workspace_id:
        raise NotFound("run not found")
    return run


def run_exists(session: Session, run_id: int) -> bool:
    """Whether the run is still there, read in a new transaction: a request that raced a DELETE of it answers 404."""
    session.rollback()  # a transaction begun earlier would still see the run (SQLite reads a snapshot)
    return session.scalar(select(Run.id).where(Run.id == run_id)) is not None


def list_runs(session: Session, workspace_id: int, page: int, page_size: int) -> tuple[list[Run], int]:
    query = select(Run).where(Run.workspace_id == workspace_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Run.id.desc()).offset((page - 1) * page_size).limit(page_size))
    return list(rows), total


def stem_file(run: Run, language: languages.Language, stem: str) -> RunFile:
    """The stored file behind ``stem``: the dubbed mix, the voice stem or the background stem."""
    role, language_id = {
        "mix": (FileRole.DUB, language.id),
        "voice": (FileRole.VOICE, language.id),
        "background": (FileRole.BACKGROUND, None),
    }[stem]
    found = run.file(role, language_id)
    if found is None:
        what = f"voice stem for {language.short_name}" if stem == "voice" else "background stem"
        raise InvalidInput("stem", f"run {run.id} has no {what}")
    return found


def exports_prefix(workspace_id: int, run_id: int) -> str:
    return f"w{workspace_id}/exports/{run_id}/"


def delete_run(ctx: Context, session: Session, workspace_id: int, run_id: int) -> None:
    """Delete the run, its tasks and every stored file of it (inputs and exports).

    Conversions of its tasks running in this process are stopped at once (a worker in another
    process stops its own when its next heartbeat finds the task gone), and requests waiting for
    them are answered (404) at once.
    """
    run = get_run(session, workspace_id, run_id)
    prefix = run.storage_prefix
    pending = list(
        session.scalars(
            select(ExportTask.id).where(ExportTask.run_id == run.id, ExportTask.status == TaskStatus.PENDING.value)
        )
    )
    session.delete(run)
    session.commit()
    ctx.conversions.cancel(pending)
    ctx.task_events.notify(*pending)
    ctx.storage.delete_prefix(prefix)
    ctx.storage.delete_prefix(exports_prefix(workspace_id, run_id))


def remove_unfinished_imports(ctx: Context) -> int:
    """Delete stored run folders that no run refers to: imports a crash cut short. Returns how many.

    An import stores its files before it commits its run (so that nothing is visible before
    everything is stored); a process killed in between leaves the files behind. Only for a
    single process at start: a concurrent import in another process would look unfinished.
    """
    with ctx.sessions() as session:
        known = set(session.scalars(select(Run.storage_prefix)))
        workspaces = [w for w in ctx.storage.children("") if w.startswith("w") and w.endswith("/")]
    removed = 0
    for workspace in workspaces:
        for folder in ctx.storage.children(f"{workspace}runs/"):
            if folder.endswith("/") and folder not in known:
                ctx.storage.delete_prefix(folder)
                removed += 1
    return removed
