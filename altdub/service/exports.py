"""Answer export requests: the signed URL of an export that exists, else the task that makes it.

The task's state is written by ``service.tasks``, its conversion run by ``service.conversion``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from altdub import languages
from altdub.db.models import ApiKey, ExportTask, FileRole, Run, TaskStatus
from altdub.media.catalogue import CATALOGUE
from altdub.media.options import OptionError, resolve_options
from altdub.media.probe import MediaInfo
from altdub.service import tasks
from altdub.service.context import Context
from altdub.service.errors import InvalidInput, NotFound
from altdub.service.keys import hash_key
from altdub.service.runs import get_run, parse_language, stem_file


@dataclass(frozen=True)
class ExportAnswer:
    output_url: str | None = None
    task_id: str | None = None


def export_identity(run_id: int, language_id: int, output_format: str, options: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"run": run_id, "language": language_id, "format": output_format, "options": options},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _source_frame_rate(run: Run) -> float | None:
    """The rate of the run's picture, which a start timecode must fit (None: no picture, or no rate known)."""
    source = run.file(FileRole.SOURCE)
    video = MediaInfo.from_json(source.probe).video if source is not None else []
    return video[0].frame_rate if video else None


def download_filename(run_id: int, language_id: int, output_format: str) -> str:
    """``run-<id>_<short_name>.<ext>`` (spec §3)."""
    return f"run-{run_id}_{languages.by_id(language_id).short_name}.{CATALOGUE[output_format].extension}"


def signed_url(ctx: Context, task: ExportTask) -> str:
    assert task.storage_key is not None
    filename = download_filename(task.run_id, task.language_id, task.output_format)
    return ctx.download_url(task.storage_key, filename)


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
    return ctx.download_url(row.storage_key, filename)


def request_export(
    ctx: Context,
    session: Session,
    workspace_id: int,
    run_id: int,
    language_value: str,
    output_format: str,
    requested_options: dict[str, Any],
) -> ExportAnswer:
    """The signed URL when the export exists; else the live task for it, created if there is none.

    ``requested_options`` holds the option keys the client sent; they are resolved to effective
    values first, so that spelling out a default gives the same export as omitting it. A new task
    is handed to the executor.
    """
    language = parse_language(language_value, "language")
    run = get_run(session, workspace_id, run_id)
    if language.id not in run.dub_language_ids:
        raise NotFound(f"language {language.short_name} is not in run {run_id}")
    if CATALOGUE[output_format].is_video and not run.has_video:
        raise InvalidInput("output_format", f"{output_format} is a video format and run {run_id} has no video")
    stem = stem_file(run, language, requested_options.get("stem") or "mix")
    try:
        audio = MediaInfo.from_json(stem.probe).audio[0]
        options = resolve_options(output_format, requested_options, audio, _source_frame_rate(run))
    except OptionError as exc:
        raise InvalidInput(exc.key, exc.message) from exc
    if options.subtitles == "soft" and run.transcript(language.id) is None:
        raise InvalidInput("subtitles", f"run {run_id} has no transcript for {language.short_name}")
    resolved = options.as_dict()
    identity = export_identity(run.id, language.id, output_format, resolved)
    ctx.identities.put(_request_key(run_id, language_value, output_format, requested_options), identity)

    task, created = tasks.live_or_new_task(
        ctx, session, workspace_id, run, language.id, output_format, resolved, identity
    )
    if created and ctx.executor is not None and task.status == TaskStatus.PENDING:
        ctx.executor.submit(task.id)
    if task.status == TaskStatus.SUCCESS:
        return ExportAnswer(output_url=signed_url(ctx, task))
    return ExportAnswer(task_id=task.id)


def get_task(session: Session, workspace_id: int, task_id: str, run_id: int | None = None) -> ExportTask:
    task = session.get(ExportTask, task_id)
    if task is None or task.workspace_id != workspace_id or (run_id is not None and task.run_id != run_id):
        raise NotFound("task not found")
    return task
