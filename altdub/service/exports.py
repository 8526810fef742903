"""Answer export requests: the signed URL of an export that exists, else the task that makes it.

The task's state is written by ``service.tasks``, its conversion run by ``service.conversion``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from altdub import languages
from altdub.db.models import ApiKey, ExportTask, FileRole, Run, TaskStatus
from altdub.media import catalogue
from altdub.media.catalogue import CATALOGUE, Format
from altdub.media.options import OptionError, resolve_options
from altdub.media.probe import MediaInfo
from altdub.media.timeline import NO_PICTURE_FRAME_RATE
from altdub.service import lifecycle, outbox, qc, tasks
from altdub.service.context import Context
from altdub.service.errors import InvalidInput, NotFound
from altdub.service.keys import hash_key
from altdub.service.loop_reads import HeldConnection
from altdub.service.packages import package_url
from altdub.service.runs import get_run, parse_language, stem_file


@dataclass(frozen=True)
class ExportAnswer:
    output_url: str | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class ExportOrder:
    """What a client asked to export, as it sent it (spec §1): checked and resolved by ``request_export``.

    ``languages`` are ids or short_names in track order (None: every dubbed language of the run, in
    import order); ``default_language`` names the default track among them (None: the first).
    ``language_field`` is what the client called the languages, for its errors: ``languages`` in a
    body, ``language`` in the Camb path.
    """

    run_id: int
    output_format: str
    options: dict[str, Any]  # the option keys the client sent
    languages: tuple[str, ...] | None = None
    default_language: str | None = None
    language_field: str = "languages"
    callback_url: str | None = None  # told of the task's events (a task answered at once with its URL: none)

    @classmethod
    def single(
        cls, run_id: int, language: str, output_format: str, options: dict[str, Any], callback_url: str | None = None
    ) -> ExportOrder:
        """The Camb path's request: one language, named in the URL."""
        return cls(run_id, output_format, options, (language,), None, "language", callback_url)

    def request_key(self) -> bytes:
        """A fixed-size digest of the order as the client sent it, for ``Context.identities``.

        A digest, not the request: whatever length of text a client pads its options with, an entry
        costs the same few bytes (the cache is bounded in bytes, see ``IdentityCache``). A one-language
        order gives the same key by either endpoint.
        """
        names = None if self.languages is None else [v.strip().lower() for v in self.languages]
        default = self.default_language.strip().lower() if self.default_language else None
        canonical = json.dumps(
            [self.run_id, names, default, self.output_format, self.options], sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).digest()


def export_identity(
    run_id: int, language_ids: Sequence[int], default_id: int, output_format: str, options: dict[str, Any]
) -> str:
    """The export's identity: one language's is the Camb path's, unchanged since the first release."""
    chosen: dict[str, Any] = (
        {"language": language_ids[0]}
        if len(language_ids) == 1
        else {"languages": list(language_ids), "default": default_id}
    )
    canonical = json.dumps(
        {"run": run_id, **chosen, "format": output_format, "options": options},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _source_frame_rate(run: Run) -> float | None:
    """The rate of the run's picture, which a start timecode must fit (None: no picture, or no rate known)."""
    source = run.file(FileRole.SOURCE)
    video = MediaInfo.from_json(source.probe).video if source is not None else []
    return video[0].frame_rate if video else None


def download_filename(run_id: int, language_ids: Sequence[int], output_format: str) -> str:
    """``run-<id>_<short_name>.<ext>`` (spec §3); a master's names its languages joined by ``+``, or their count."""
    return f"run-{run_id}_{languages.filename_label(language_ids)}.{CATALOGUE[output_format].extension}"


def signed_url(ctx: Context, task: ExportTask) -> str | None:
    """A fresh URL of the task's file; None when the storage lifecycle removed it since the task was read."""
    assert task.storage_key is not None
    if not lifecycle.hold(ctx, task.storage_key, task.last_used_at, task.finished_at):
        return None
    return _export_url(ctx, task.storage_key, task.run_id, task.track_language_ids, task.output_format)


def _export_url(ctx: Context, key: str, run_id: int, language_ids: Sequence[int], output_format: str) -> str:
    """A streaming package's signed prefix URL (its playlist or manifest), else the file's signed download."""
    if CATALOGUE[output_format].package_entry is not None:
        return package_url(ctx, key)
    return ctx.download_url(key, download_filename(run_id, language_ids, output_format))


# Built once: constructing a statement costs more than running it.
_FINISHED_EXPORT = (
    select(
        ExportTask.storage_key,
        ExportTask.run_id,
        ExportTask.language_id,
        ExportTask.language_ids,
        ExportTask.output_format,
        ExportTask.last_used_at,
        ExportTask.finished_at,
    )
    .join(ApiKey, ApiKey.workspace_id == ExportTask.workspace_id)
    .where(
        ApiKey.key_hash == bindparam("key_hash"),
        ApiKey.revoked_at.is_(None),
        ExportTask.identity == bindparam("identity"),
        ExportTask.status == TaskStatus.SUCCESS.value,
        ExportTask.evicted_at.is_(None),
    )
)


def cached_export_url(ctx: Context, raw_key: str | None, order: ExportOrder, reads: HeldConnection) -> str | None:
    """The signed URL of an export that exists, found with one indexed query; None sends the caller the long way.

    The query checks everything the long way would: the key is valid and not revoked, the export
    belongs to the key's workspace, and it is finished. Fast enough to run on the event loop, on the
    connection the loop holds (``reads``).
    """
    identity = ctx.identities.get(order.request_key())
    if identity is None or not raw_key:
        return None
    row = reads.first(_FINISHED_EXPORT, {"key_hash": hash_key(raw_key), "identity": identity})
    if row is None or not lifecycle.use_recorded_lately(ctx, row.last_used_at, row.finished_at):
        return None  # (an export not used lately: its use is written first, which the event loop leaves to a thread)
    return _export_url(ctx, row.storage_key, row.run_id, row.language_ids or [row.language_id], row.output_format)


def _parse_languages(order: ExportOrder) -> tuple[list[languages.Language] | None, languages.Language | None]:
    """The languages the order names (None: all of the run's) and its default language, each known."""
    field = order.language_field
    named = None
    if order.languages is not None:
        if not order.languages:
            raise InvalidInput(field, 'list at least one language, or send "all"')
        named = []
        for value in order.languages:
            language = parse_language(value, field)
            if language in named:
                raise InvalidInput(field, f"{language.short_name} is listed twice")
            named.append(language)
    default = parse_language(order.default_language, "default_language") if order.default_language else None
    return named, default


def _chosen_languages(
    run: Run, order: ExportOrder, named: list[languages.Language] | None, default: languages.Language | None
) -> tuple[list[languages.Language], languages.Language]:
    """The languages of the tracks in order, and the default one; each checked against the run and the format."""
    chosen = [languages.by_id(i) for i in run.dub_language_ids] if named is None else named
    for language in chosen:
        if language.id not in run.dub_language_ids:
            raise NotFound(f"language {language.short_name} is not in run {run.id}")
    listed = ", ".join(lang.short_name for lang in chosen)
    if default is not None and default not in chosen:
        raise InvalidInput("default_language", f"{default.short_name} is not among the languages asked for ({listed})")
    fmt = CATALOGUE[order.output_format]
    if len(chosen) > 1 and not fmt.multiple_languages:
        several = ", ".join(catalogue.multilingual())
        raise InvalidInput(
            order.language_field,
            f"{fmt.name} carries one language and {len(chosen)} were asked for ({listed}): "
            f"name one, or ask for a format that takes several ({several})",
        )
    return chosen, default or chosen[0]


def _check_transcripts(run: Run, chosen: list[languages.Language], fmt: Format, field: str) -> None:
    """A format made of transcript segments (clips) needs every language's transcript."""
    missing = [language.short_name for language in chosen if run.transcript(language.id) is None]
    if missing:
        names = ", ".join(missing)
        raise InvalidInput(field, f"{fmt.name} is cut from transcript segments and run {run.id} has none for {names}")


def request_export(ctx: Context, session: Session, workspace_id: int, order: ExportOrder) -> ExportAnswer:
    """The signed URL when the export exists; else the live task for it, created if there is none.

    The order's option keys are resolved to effective values first, so that spelling out a default
    gives the same export as omitting it; the default language's dub sets the defaults every track
    then shares (spec §2: every option applies to every track). A new task is handed to the executor.
    """
    named, default_named = _parse_languages(order)
    if order.callback_url is not None:
        outbox.check_callback_url(ctx.settings, order.callback_url)
    run = get_run(session, workspace_id, order.run_id)
    chosen, default = _chosen_languages(run, order, named, default_named)
    output_format, requested = order.output_format, order.options
    fmt = CATALOGUE[output_format]
    if fmt.is_video and not run.has_video:
        raise InvalidInput("output_format", f"{output_format} is a video format and run {run.id} has no video")
    if fmt.needs_transcript:
        _check_transcripts(run, chosen, fmt, order.language_field)
    stem_name = "mix" if fmt.handoff else requested.get("stem") or "mix"  # a hand-off takes every stem: its own 422
    stems = [stem_file(run, language, stem_name) for language in chosen]
    frame_rate = _source_frame_rate(run)
    if fmt.handoff and frame_rate is None:  # an audio-only hand-off counts its timecode in EBU frames
        frame_rate = NO_PICTURE_FRAME_RATE
    try:
        audio = MediaInfo.from_json(stems[chosen.index(default)].probe).audio[0]
        options = resolve_options(output_format, requested, audio, frame_rate)
    except OptionError as exc:
        raise InvalidInput(exc.key, exc.message) from exc
    qc.check_dialogue_gate(run, chosen, options.loudness_target)
    if options.subtitles == "soft" and not any(run.transcript(lang.id) for lang in chosen):
        names = ", ".join(lang.short_name for lang in chosen)
        raise InvalidInput("subtitles", f"run {run.id} has no transcript for {names}")
    resolved = options.as_dict()
    language_ids = [lang.id for lang in chosen]
    identity = export_identity(run.id, language_ids, default.id, output_format, resolved)
    ctx.identities.put(order.request_key(), identity)

    callback_url = order.callback_url
    for _ in range(2):  # a second pass only when the file was removed under the first (then it makes it anew)
        task, created = tasks.live_or_new_task(
            ctx, session, workspace_id, run, language_ids, default.id, output_format, resolved, identity, callback_url
        )
        if created and ctx.executor is not None and task.status == TaskStatus.PENDING:
            ctx.executor.submit(task.id)
        if task.status != TaskStatus.SUCCESS:
            break
        url = signed_url(ctx, task)
        if url is not None:
            return ExportAnswer(output_url=url)
        # The storage lifecycle removed the file since the task was read: the task left the live index.
    return ExportAnswer(task_id=task.id)


def get_task(session: Session, workspace_id: int, task_id: str, run_id: int | None = None) -> ExportTask:
    task = session.get(ExportTask, task_id)
    if task is None or task.workspace_id != workspace_id or (run_id is not None and task.run_id != run_id):
        raise NotFound("task not found")
    return task
