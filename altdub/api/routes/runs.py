import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from altdub.api.deps import ContextDep, RunId, SessionDep, WorkspaceDep
from altdub.api.schemas import RunOut, RunPage
from altdub.api.uploads import read_multipart
from altdub.service import runs

router = APIRouter(tags=["runs"])

_IMPORT_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["source_language"],
                    "properties": {
                        "source": {"type": "string", "format": "binary", "description": "Original media."},
                        "source_language": {"type": "string", "description": "Language id or short_name."},
                        "name": {"type": "string", "description": "A name for the run (default: the file's)."},
                        "background": {
                            "type": "string",
                            "format": "binary",
                            "description": "Music-and-effects stem, for exports with stem=background.",
                        },
                    },
                    "patternProperties": {
                        "^dub_.+$": {"type": "string", "format": "binary", "description": "The dubbed mix."},
                        "^voice_.+$": {
                            "type": "string",
                            "format": "binary",
                            "description": "Speech-only stem of that language, for stem=voice.",
                        },
                        "^transcript_.+$": {
                            "type": "string",
                            "format": "binary",
                            "description": "SRT, WebVTT or JSON [{start, end, text, speaker}], as a file or text.",
                        },
                    },
                    "description": "One dub_<language> file per target language (dub_54 or dub_es-es).",
                }
            }
        },
    }
}


@router.post(
    "/runs",
    status_code=status.HTTP_201_CREATED,
    response_model=RunOut,
    openapi_extra=_IMPORT_FORM,
    responses={
        413: {"description": "A file is over the size limit."},
        507: {"description": "The service has no room left to store the upload (a full disk); nothing was kept."},
        422: {"description": "Invalid field."},
    },
)
async def import_run(request: Request, context: ContextDep, workspace: WorkspaceDep) -> RunOut:
    """Import a completed dubbing run: streamed to disk, every file probed before anything is stored."""
    staging = tempfile.mkdtemp(prefix="upload-", dir=context.settings.staging_dir)
    try:
        form = await read_multipart(
            request.headers.get("content-type", ""),
            request.stream(),
            Path(staging),
            context.settings.max_upload_bytes,
        )
        run = await run_in_threadpool(runs.import_run, context, workspace.id, form.import_request())
    finally:
        if _cancelled():  # a shutdown past its grace: the loop may never run again, remove what was staged now
            shutil.rmtree(staging, ignore_errors=True)
        else:
            await run_in_threadpool(shutil.rmtree, staging, True)
    return RunOut.of(run)


def _cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@router.get("/runs", response_model=RunPage)
def list_runs(
    session: SessionDep,
    workspace: WorkspaceDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunPage:
    """The workspace's runs, newest first."""
    items, total = runs.list_runs(session, workspace.id, page, page_size)
    return RunPage(items=[RunOut.of(r) for r in items], page=page, page_size=page_size, total=total)


@router.get("/runs/{run_id}", response_model=RunOut, responses={404: {"description": "Unknown run."}})
def get_run(run_id: RunId, session: SessionDep, workspace: WorkspaceDep) -> RunOut:
    return RunOut.of(runs.get_run(session, workspace.id, run_id))


@router.delete(
    "/runs/{run_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "Unknown run."}}
)
def delete_run(run_id: RunId, context: ContextDep, session: SessionDep, workspace: WorkspaceDep) -> Response:
    """Delete the run, its exports and all their files."""
    runs.delete_run(context, session, workspace.id, run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
