"""First start of an empty database: a workspace, its key, and a demo run to try."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from altdub.db.session import session_scope
from altdub.media.synth import make_tone, make_video
from altdub.service.context import Context
from altdub.service.keys import create_key, has_any_workspace
from altdub.service.runs import ImportRequest, IncomingFile, import_run

DEMO_SECONDS = 10.0


@dataclass(frozen=True)
class Bootstrap:
    api_key: str
    demo_run_id: int | None


def bootstrap_if_empty(context: Context, *, demo: bool) -> Bootstrap | None:
    """Create the ``default`` workspace with a key (and a demo run) when there is no workspace yet."""
    try:
        with session_scope(context.sessions) as session:
            if has_any_workspace(session):
                return None
            raw_key, key = create_key(session, "default")
            workspace_id = key.workspace_id
    except IntegrityError:  # another process, started at the same moment, made it
        return None
    run_id = create_demo_run(context, workspace_id) if demo else None
    return Bootstrap(raw_key, run_id)


def create_demo_run(context: Context, workspace_id: int) -> int:
    """A 10-second test-pattern video in English, dubbed into Spanish and French (FFmpeg-made)."""
    with tempfile.TemporaryDirectory(dir=context.settings.staging_dir) as tmp:
        folder = Path(tmp)
        files = [
            make_video(folder / "demo.mp4", DEMO_SECONDS, tone_hz=440),
            make_tone(folder / "dub-es.wav", DEMO_SECONDS, tone_hz=550),
            make_tone(folder / "dub-fr.flac", DEMO_SECONDS, tone_hz=660, codec="flac"),
        ]
        incoming = [
            IncomingFile(field, path.name, path, path.stat().st_size)
            for field, path in zip(("source", "dub_es-es", "dub_fr-fr"), files, strict=True)
        ]
        request = ImportRequest(source_language="en-us", files=incoming, transcript_texts={}, name="altdub demo")
        run = import_run(context, workspace_id, request)
    return run.id
