import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from altdub.api.bodies import StrictJsonRoute
from altdub.api.deps import MAX_ID, ApiKeyDep, RunId, require_workspace
from altdub.api.schemas import ExportRequest, OutputUrlOut, RunExportRequest, TaskIdOut, TaskStatusOut
from altdub.db.models import TaskStatus
from altdub.service import exports
from altdub.service.context import Context

router = APIRouter(tags=["dub"], route_class=StrictJsonRoute)


_EXPORT_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown run, or a language is not in the run."},
    429: {
        "description": "The workspace has its most tasks pending (ALTDUB_MAX_PENDING_TASKS); "
        "Retry-After says when to try again."
    },
}


@router.post("/dub-alt-format/{run_id}/{language}", response_model=OutputUrlOut | TaskIdOut, responses=_EXPORT_ANSWERS)
async def get_dubbed_output_in_alt_format(
    run_id: RunId, language: str, body: ExportRequest, request: Request, api_key: ApiKeyDep
) -> Response:
    """The dubbed output of a run in another format: its URL when it exists, else a task to poll.

    ``language`` is a language id or short_name. The same export as ``POST /runs/{run_id}/exports``
    with ``languages: [language]``: one identity, one task, one file by either path.
    """
    order = exports.ExportOrder.single(
        run_id, language, body.output_format, body.requested_options(), body.callback_url
    )
    return await _answer(request, api_key, order)


@router.post(
    "/runs/{run_id}/exports",
    response_model=OutputUrlOut | TaskIdOut,
    responses=_EXPORT_ANSWERS,
)
async def export_run(run_id: RunId, body: RunExportRequest, request: Request, api_key: ApiKeyDep) -> Response:
    """Any deliverable of a run: one language, or a master with every language asked for (spec §1, §2).

    Answered as the Camb path is: ``{"output_url"}`` when the export exists, else ``{"task_id"}`` to
    poll at ``GET /dub-alt-format/{task_id}``.
    """
    order = exports.ExportOrder(
        run_id,
        body.output_format,
        body.requested_options(),
        body.language_names(),
        None if body.default_language is None else str(body.default_language),
        callback_url=body.callback_url,
    )
    return await _answer(request, api_key, order)


async def _answer(request: Request, api_key: str | None, order: exports.ExportOrder) -> Response:
    """An export that exists is answered on the event loop with one indexed query; anything else takes a thread.

    An order with a ``callback_url`` always takes the thread: its URL is checked (a DNS lookup, which
    must not block the loop) whether or not the export exists, so a refused one is a 422 either way.
    """
    context: Context = request.app.state.context
    reads = request.app.state.loop_reads
    url = None if order.callback_url is not None else exports.cached_export_url(context, api_key, order, reads)
    if url is None:
        answer = await run_in_threadpool(_request_export, context, api_key, order)
        url = answer.output_url
        if url is None:
            return JSONResponse({"task_id": answer.task_id})
    return JSONResponse({"output_url": url})


def _request_export(context: Context, api_key: str | None, order: exports.ExportOrder) -> exports.ExportAnswer:
    with context.sessions() as session:
        workspace = require_workspace(session, api_key)
        return exports.request_export(context, session, workspace.id, order)


MAX_WAIT_SECONDS = 30.0
# How often a waiting request reads the task again when workers in other processes (with a broker) may
# end it: they notify nobody here. Modest: each read takes a thread and a query, and hundreds of clients may wait.
RECHECK_SECONDS = 1.0


@router.get(
    "/dub-alt-format/{task_id}",
    response_model=TaskStatusOut,
    response_model_exclude_unset=True,
    responses={404: {"description": "Unknown task."}},
)
async def get_dubbed_output_in_alt_format_status(
    task_id: str,
    request: Request,
    api_key: ApiKeyDep,
    run_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Long polling: answer as soon as the task leaves PENDING, or after this many "
            "seconds at most. 0 (the default) answers at once, as does any wait while the server "
            "holds its most waiting requests (ALTDUB_MAX_WAITING_REQUESTS).",
        ),
    ] = 0,
) -> TaskStatusOut:
    """The state of an export task; ``output_url`` appears on SUCCESS.

    With ``wait``, a PENDING task is answered when it ends (at once when a worker of this process
    ends it; within a second for a worker elsewhere) or when the wait is over. In the embedded mode
    a waiting request holds no thread and reads the task twice: now, and when woken or at the end.
    """
    context: Context = request.app.state.context
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    ends_here = not context.settings.broker_url  # embedded: only this process's workers end tasks, and notify
    limit = context.settings.max_waiting_requests if wait > 0 else 0
    with context.task_events.watch(task_id, limit) as waiter:
        answer = await run_in_threadpool(_task_status, context, api_key, task_id, run_id)
        if waiter is None:
            return answer
        events = context.task_events
        while answer.status == TaskStatus.PENDING and not events.closed and (remaining := deadline - loop.time()) > 0:
            await waiter.wait(remaining if ends_here else min(remaining, RECHECK_SECONDS))
            answer = await run_in_threadpool(_task_status, context, api_key, task_id, run_id)
        return answer


def _task_status(context: Context, api_key: str | None, task_id: str, run_id: int | None) -> TaskStatusOut:
    with context.sessions() as session:
        workspace = require_workspace(session, api_key)
        task = exports.get_task(session, workspace.id, task_id, run_id)
        answer = TaskStatusOut(
            status=TaskStatus(task.status),
            run_id=task.run_id,
            exception_reason=task.exception_reason,
            message=task.message,
            progress=task.progress,
        )
        if task.status == TaskStatus.SUCCESS and task.storage_key is not None:  # None: the lifecycle removed it
            url = exports.signed_url(context, task)
            if url is not None:
                answer.output_url = url
            else:  # removed since it was read: say so as a later poll would
                session.refresh(task)
                answer.message = task.message
        return answer
