"""An export's QC report (spec DELIVERIES §6): its JSON, or its HTML page with plots."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from altdub.api.deps import ContextDep, RunId, WorkspaceDep
from altdub.api.qc_page import STYLE_SOURCE, render_page
from altdub.media.qc_report import QcReport
from altdub.service import qc

router = APIRouter(tags=["dub"])

# The page loads nothing: its one stylesheet by hash, its plots as data: images, no script at all.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; img-src data:; style-src {STYLE_SOURCE}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-cache",
}


@router.get(
    "/runs/{run_id}/exports/{task_id}/qc",
    response_model=QcReport,
    responses={
        200: {
            "description": "The report: JSON, or with ``format=html`` a self-contained HTML page.",
            "content": {"text/html": {}},
        },
        404: {"description": "Unknown task, another workspace's, or a task of another run."},
        409: {
            "description": "No report: the task is not SUCCESS (still PENDING, or failed), or the export was made "
            "without one (before reports existed, or with ALTDUB_QC_REPORTS off)."
        },
    },
)
def export_qc_report(
    run_id: RunId,
    task_id: Annotated[str, Path(max_length=64, description="The export's task id.")],
    context: ContextDep,
    workspace: WorkspaceDep,
    answer_format: Annotated[
        Literal["json", "html"],
        Query(
            alias="format",
            description="``json`` (the default): the report as data; ``html``: a page with a plot per track.",
        ),
    ] = "json",
) -> Response:
    """The QC report of a finished export: the verdict, every check, and per track its loudness figures.

    Computed once, when the export was made, and kept with it. A report that does not pass is still a
    finished export (``passed: false``): the file is delivered and the failing checks say what misses.
    """
    report = qc.report_for(context, workspace.id, run_id, task_id)
    if answer_format == "html":
        return HTMLResponse(render_page(report, f"Run {run_id}, export {task_id}"), headers=_PAGE_HEADERS)
    return JSONResponse(report.as_dict(), headers={"Cache-Control": "private, no-cache"})
