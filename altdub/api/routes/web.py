"""The web dashboard: its page at ``/``, its static files under ``/web/``, and the two reads it needs."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import Scope

from altdub.api.deps import ContextDep, RunId, SessionDep, WorkspaceDep
from altdub.api.qc_page import STYLE_SOURCE
from altdub.db.models import TaskStatus
from altdub.service import history
from altdub.service.context import Context

WEB_DIR = Path(__file__).resolve().parents[2] / "web"  # package data: altdub/web/

# The page loads its own script and stylesheet only; thumbnails are blob: URLs made from fetched bytes;
# previews play exports from where their URLs point, and streaming packages through Media Source
# Extensions (hls.js), whose media element plays a blob: URL and whose subtitle <track> elements
# start from an empty data: WebVTT. A QC report opens as a blob: page, which keeps this policy: its
# inline stylesheet is allowed by its hash, its plots are data: images. ``{origins}``: see _export_origins.
_CSP = (
    f"default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self' {STYLE_SOURCE}; "
    "media-src 'self' blob: data:{origins}; connect-src 'self'{origins}; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _export_origins(context: Context) -> list[str]:
    """Where the exports' URLs point when it is not the page's own origin: the service's public URL (a
    dashboard reached by another name), and the bucket that serves downloads and segments (S3 storage)."""
    public = context.settings.effective_public_url
    sample = context.storage.signed_url("w0/preview", filename="preview.mp4", content_type="video/mp4", base_url=public)
    origins = set()
    for url in (public, sample):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins)


# A thumbnail is the workspace's: revalidated with the caller's key on every use (see run_thumbnail).
_THUMBNAIL_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "x-api-key", "X-Content-Type-Options": "nosniff"}

router = APIRouter()


class LoudnessOut(BaseModel):
    integrated: float = Field(description="Integrated loudness, LUFS.")
    true_peak: float = Field(description="True peak, dBTP.")
    lra: float = Field(description="Loudness range, LU.")


class QcSummaryOut(BaseModel):
    passed: bool = Field(description="The QC report's verdict: every check passed.")
    failed: list[str] = Field(description="The failing checks' names.", examples=[["clipping"]])


class ExportOut(BaseModel):
    task_id: str
    language: str = Field(description="The default track's language (short_name).", examples=["es-es"])
    languages: list[str] = Field(
        description="Every dubbed track's language in track order: one, or several in a master.",
        examples=[["es-es", "fr-fr"]],
    )
    output_format: str = Field(examples=["mp3"])
    options: dict[str, Any] = Field(description="The export's effective (resolved) options.")
    status: TaskStatus
    progress: int = Field(ge=0, le=100)
    size: int | None = Field(description="Bytes of the finished file.")
    loudness: LoudnessOut | None = Field(description="Measured on the output of a loudness-normalised export.")
    message: str | None
    exception_reason: str | None
    created_at: datetime
    finished_at: datetime | None
    output_url: str | None = Field(description="Signed download URL, on SUCCESS only.")
    qc: QcSummaryOut | None = Field(
        description="The QC report's verdict (the whole report: GET /runs/{run_id}/exports/{task_id}/qc); "
        "null without a report."
    )


@router.get("/", include_in_schema=False)
def dashboard(context: ContextDep) -> HTMLResponse:
    """The dashboard's single page (no key needed: it asks for one)."""
    origins = "".join(f" {origin}" for origin in _export_origins(context))
    headers = {"Content-Security-Policy": _CSP.format(origins=origins), **_PAGE_HEADERS}
    return HTMLResponse((WEB_DIR / "index.html").read_text(encoding="utf-8"), headers=headers)


@router.get(
    "/runs/{run_id}/exports",
    tags=["runs"],
    response_model=list[ExportOut],
    responses={404: {"description": "Unknown run."}},
)
def list_run_exports(
    run_id: RunId,
    context: ContextDep,
    session: SessionDep,
    workspace: WorkspaceDep,
    limit: Annotated[int, Query(ge=1, le=history.MAX_EXPORTS)] = 100,
) -> list[ExportOut]:
    """The run's export tasks, newest first: status, progress, size, loudness, and a signed URL once done."""
    entries = history.list_exports(context, session, workspace.id, run_id, limit)
    return [ExportOut.model_validate(entry, from_attributes=True) for entry in entries]


@router.get(
    "/runs/{run_id}/thumbnail",
    tags=["runs"],
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG, 320 px wide, of the video at about 1 s."},
        404: {"description": "Unknown run, or a run without video."},
    },
)
def run_thumbnail(
    run_id: RunId, request: Request, context: ContextDep, session: SessionDep, workspace: WorkspaceDep
) -> Response:
    """A small still of the run's video, made on first request and kept with the run.

    Browsers may keep it but must revalidate it on each use, with the key they hold then
    (``Cache-Control: private, no-cache`` and an ETag: an unchanged picture is a 304).
    """
    # Asked for with a key in a header: with a plain max-age, a browser cache keyed by the URL
    # alone would show one workspace's picture to whoever signs in next with another key.
    data = history.run_thumbnail(context, session, workspace.id, run_id)
    etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
    headers = {**_THUMBNAIL_HEADERS, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)


class _RevalidatedStaticFiles(StaticFiles):
    """Static files that browsers check again on each load (ETag), so an upgrade shows at once."""

    def file_response(
        self, full_path: PathLike[str] | str, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_web(app: FastAPI) -> None:
    """Add the dashboard to ``app``: call it after every other router, so that their paths come first."""
    app.include_router(router)
    app.mount("/web", _RevalidatedStaticFiles(directory=WEB_DIR), name="web")
