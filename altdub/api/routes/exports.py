from typing import Annotated

from fastapi import APIRouter, Query

from altdub.api.deps import BaseUrlDep, ContextDep, SessionDep, WorkspaceDep
from altdub.api.schemas import ExportRequest, OutputUrlOut, TaskIdOut, TaskStatusOut
from altdub.db.models import TaskStatus
from altdub.service import exports

router = APIRouter(tags=["dub"])


@router.post(
    "/dub-alt-format/{run_id}/{language}",
    response_model=OutputUrlOut | TaskIdOut,
    responses={404: {"description": "Unknown run, or the language is not in the run."}},
)
def get_dubbed_output_in_alt_format(
    run_id: int,
    language: str,
    body: ExportRequest,
    context: ContextDep,
    session: SessionDep,
    workspace: WorkspaceDep,
    base_url: BaseUrlDep,
) -> OutputUrlOut | TaskIdOut:
    """The dubbed output of a run in another format: its URL when it exists, else a task to poll.

    ``language`` is a language id or short_name.
    """
    answer = exports.request_export(
        context, session, workspace.id, run_id, language, body.output_format, body.requested_options(), base_url
    )
    if answer.output_url is not None:
        return OutputUrlOut(output_url=answer.output_url)
    assert answer.task_id is not None
    return TaskIdOut(task_id=answer.task_id)


@router.get(
    "/dub-alt-format/{task_id}",
    response_model=TaskStatusOut,
    response_model_exclude_unset=True,
    responses={404: {"description": "Unknown task."}},
)
def get_dubbed_output_in_alt_format_status(
    task_id: str,
    context: ContextDep,
    session: SessionDep,
    workspace: WorkspaceDep,
    base_url: BaseUrlDep,
    run_id: Annotated[int | None, Query()] = None,
) -> TaskStatusOut:
    """The state of an export task; ``output_url`` appears on SUCCESS."""
    task = exports.get_task(session, workspace.id, task_id, run_id)
    answer = TaskStatusOut(
        status=TaskStatus(task.status),
        run_id=task.run_id,
        exception_reason=task.exception_reason,
        message=task.message,
        progress=task.progress,
    )
    if task.status == TaskStatus.SUCCESS:
        answer.output_url = exports.signed_url(context, task, base_url)
    return answer
