"""Who runs conversions, wired once for both kinds of process: ``altdub serve`` and ``altdub worker``.

Embedded (no broker): threads of the serving process run them, and at start it takes over the
work a dead process left (imports cut short, tasks still PENDING). With a broker: the serving
process only submits, and ``altdub worker`` processes consume the broker's turns.
"""

from __future__ import annotations

import logging
from functools import partial

from celery import Celery

from altdub.jobs.celery import CeleryExecutor, make_celery, run_worker
from altdub.jobs.inprocess import InProcessExecutor
from altdub.service.context import Context
from altdub.service.conversion import run_next_task
from altdub.service.runs import remove_unfinished_imports
from altdub.service.tasks import release_pending_tasks
from altdub.service.webhooks import Sender
from altdub.storage import StorageError

log = logging.getLogger(__name__)


def _celery(context: Context) -> Celery:
    settings = context.settings
    assert settings.broker_url is not None
    return make_celery(
        settings.broker_url, time_limit=settings.task_time_limit, redelivery_margin=settings.redelivery_margin
    )


def attach_executor(context: Context, *, workers: bool) -> None:
    """The serving process's executor: the broker's when there is one, else its own threads (unless not ``workers``)."""
    if context.settings.broker_url:  # conversions run in `altdub worker` processes
        context.executor = CeleryExecutor(_celery(context))
    elif workers:
        _start_embedded_workers(context)


def _start_embedded_workers(context: Context) -> None:
    context.executor = InProcessExecutor(partial(run_next_task, context), context.settings.workers)
    try:
        removed = remove_unfinished_imports(context)  # embedded mode: this process is the only one
    except StorageError as exc:  # readiness reports the storage; serving must not depend on the sweep
        log.warning("could not look for imports cut short by a crash: %s", exc)
    else:
        if removed:
            log.warning("removed %d import(s) cut short by a crash", removed)
    pending = release_pending_tasks(context)  # left unfinished by a process that died: run them again
    if pending:
        log.warning("resuming %d unfinished task(s)", len(pending))
    for task_id in pending:
        context.executor.submit(task_id)


def consume_broker(context: Context) -> None:
    """``altdub worker``: run the broker's turns in this process, one at a time, until stopped.

    It also sends webhook events, as every ``altdub serve`` does: any process may deliver any event.
    """
    sender = webhooks_sender(context)
    try:
        run_worker(_celery(context), partial(run_next_task, context))
    finally:
        sender.stop()


def webhooks_sender(context: Context) -> Sender:
    """This process's sender of the webhook outbox, started."""
    return Sender(context).start()
