"""Celery with a Redis broker: API processes submit, ``altdub worker`` processes on any machine convert.

Configured for long media jobs: a message is acknowledged only when its task is done, a
worker takes one task at a time, and a message whose worker died is delivered again once
the broker's visibility timeout passes (longer than the conversion time limit, so a live
conversion is never handed out twice).

A message is a turn, not an order: the worker that takes it claims the fairest waiting task from
the database (see ``altdub.jobs``), which may be another than the one the message names. Since
every task sends one message and every message claims at most one task, no task is left without
a turn; the redelivered message of a dead worker is the turn of the task it held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery

log = logging.getLogger(__name__)

EXPORT_TASK = "altdub.export"
QUEUE = "altdub-exports"


def make_celery(broker_url: str, *, time_limit: float, redelivery_margin: float) -> Celery:
    app = Celery("altdub", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_transport_options={
            "visibility_timeout": int(time_limit + redelivery_margin),
            # kombu looks for expired unacknowledged messages every interval, but by default
            # scans only on every 10th look: scan each time, so redelivery follows the timeout.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


class CeleryExecutor:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def submit(self, task_id: str) -> None:
        self.app.send_task(EXPORT_TASK, args=[task_id], queue=QUEUE)

    def queue_depth(self) -> int:
        """Messages waiting in the Redis list of the queue (not those being worked on)."""
        with self.app.connection_for_write() as connection:
            return int(connection.default_channel.client.llen(QUEUE))

    def check(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)

    def shutdown(self) -> None:
        self.app.close()


def run_worker(app: Celery, handler: Callable[[], object]) -> None:
    """Consume export turns in this process, one at a time, until stopped (SIGTERM waits for the task)."""

    @app.task(name=EXPORT_TASK)
    def export(task_id: str) -> None:  # the task whose creation sent the message: kept for the logs
        ran = handler()
        if ran is None:
            log.info("turn of task %s: no task was waiting (an earlier turn ran it)", task_id)
        elif ran != task_id:
            log.info("turn of task %s: ran task %s, the fairest waiting", task_id, ran)

    app.worker_main(["worker", "--pool=solo", "--loglevel=INFO", "-Q", QUEUE, "--without-gossip", "--without-mingle"])
