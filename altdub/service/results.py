"""Camb-compatible reads of a run: its transcripts and its per-language results."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from altdub import languages
from altdub.db.models import ExportTask, FileRole, Run, RunFile, TaskStatus
from altdub.media.formats import probed_extension
from altdub.media.options import resolve_options
from altdub.media.probe import MediaInfo
from altdub.media.transcripts import Segment, TextFormat, render
from altdub.service.context import Context
from altdub.service.errors import NotFound
from altdub.service.exports import export_identity, signed_url
from altdub.service.runs import get_run, parse_language, run_exists


def _segments(run: Run, language: languages.Language) -> list[Segment]:
    transcript = run.transcript(language.id)
    if transcript is None:
        raise NotFound(f"run {run.id} has no transcript for {language.short_name}")
    return [Segment(**s) for s in transcript.segments]


def transcript_text(
    session: Session, workspace_id: int, run_id: int, language_value: str, text_format: TextFormat
) -> str:
    language = parse_language(language_value, "language")
    return render(_segments(get_run(session, workspace_id, run_id), language), text_format)


def transcript_url(
    ctx: Context,
    session: Session,
    workspace_id: int,
    run_id: int,
    language_value: str,
    text_format: TextFormat,
) -> str:
    """A signed URL of the transcript file, written to storage on first use (the same bytes every time)."""
    language = parse_language(language_value, "language")
    run = get_run(session, workspace_id, run_id)
    text = render(_segments(run, language), text_format)
    key = f"{run.storage_prefix}transcript_{language.id}.{text_format}"
    if not ctx.storage.exists(key):
        with tempfile.TemporaryDirectory(dir=ctx.settings.staging_dir) as tmp:
            path = Path(tmp) / f"transcript.{text_format}"
            path.write_text(text, encoding="utf-8")
            ctx.storage.put_file(key, path)
        if not run_exists(session, run_id):  # deleted while its file was written
            ctx.storage.delete_prefix(key)  # its folder is gone: leave no transcript behind in it
            raise NotFound("run not found")
    filename = f"run-{run_id}_{language.short_name}.{text_format}"
    return ctx.download_url(key, filename)


def _default_mp4(session: Session, run: Run, language_id: int, dub: RunFile) -> ExportTask | None:
    """The finished mp4 export with default options, if one was made."""
    options = resolve_options("mp4", {}, MediaInfo.from_json(dub.probe).audio[0])
    identity = export_identity(run.id, [language_id], language_id, "mp4", options.as_dict())
    return session.scalar(
        select(ExportTask).where(
            ExportTask.identity == identity,
            ExportTask.status == TaskStatus.SUCCESS.value,
            ExportTask.evicted_at.is_(None),
        )
    )


def dub_result(ctx: Context, session: Session, workspace_id: int, run_id: int) -> dict[str, Any]:
    """Per language (by short_name): the dubbed audio's URL, the video's (an mp4 export, once made), the transcript."""
    run = get_run(session, workspace_id, run_id)
    result: dict[str, Any] = {}
    for language_id in run.dub_language_ids:
        language = languages.by_id(language_id)
        dub = run.file(FileRole.DUB, language_id)
        assert dub is not None
        video = _default_mp4(session, run, language_id, dub) if run.has_video else None
        extension = probed_extension(MediaInfo.from_json(dub.probe))  # never the uploader's file name
        audio_url = ctx.download_url(dub.storage_key, f"run-{run.id}_{language.short_name}.{extension}")
        transcript = run.transcript(language_id)
        result[language.short_name] = {
            "audio_url": audio_url,
            "video_url": signed_url(ctx, video) if video else None,
            "transcript": transcript.segments if transcript else [],
        }
    return result
