from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from altdub.api.deps import ContextDep, RunId, SessionDep, WorkspaceDep
from altdub.service import results

router = APIRouter(tags=["dub"])


@router.get("/transcript/{run_id}/{language}", responses={404: {"description": "Unknown run or no transcript."}})
def get_dubbed_run_transcript(
    run_id: RunId,
    language: str,
    context: ContextDep,
    session: SessionDep,
    workspace: WorkspaceDep,
    format_type: Annotated[Literal["txt", "srt", "vtt"], Query()] = "txt",
    data_type: Annotated[Literal["raw_data", "file"], Query()] = "raw_data",
) -> dict[str, str]:
    """A language's transcript: its text, ``{"transcript": ...}``, or a signed URL, ``{"transcript_url": ...}``."""
    if data_type == "file":
        url = results.transcript_url(context, session, workspace.id, run_id, language, format_type)
        return {"transcript_url": url}
    return {"transcript": results.transcript_text(session, workspace.id, run_id, language, format_type)}


@router.get("/dub-result/{run_id}", responses={404: {"description": "Unknown run."}})
def get_dubbed_run_info(
    run_id: RunId, context: ContextDep, session: SessionDep, workspace: WorkspaceDep
) -> dict[str, Any]:
    """Per language: ``audio_url`` (the dub), ``video_url`` (its mp4 export, once made, else null), ``transcript``."""
    return results.dub_result(context, session, workspace.id, run_id)
