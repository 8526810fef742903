"""Prometheus metrics: export tasks per status and the work queue's depth, read at scrape time."""

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from altdub.db.models import ExportTask, TaskStatus
from altdub.service.context import Context

router = APIRouter(tags=["health"])


class TaskCollector(Collector):
    def __init__(self, context: Context) -> None:
        self.context = context

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.context.sessions() as session:
            counts = dict(session.execute(select(ExportTask.status, func.count()).group_by(ExportTask.status)).all())
            waiting = session.scalar(
                select(func.count()).where(
                    ExportTask.status == TaskStatus.PENDING.value, ExportTask.heartbeat_at.is_(None)
                )
            )
        tasks = GaugeMetricFamily("altdub_export_tasks", "Export tasks by status (all processes).", labels=["status"])
        for status in TaskStatus:
            tasks.add_metric([status.value], counts.get(status.value, 0))
        yield tasks
        executor = self.context.executor
        depth = executor.queue_depth() if executor is not None else waiting
        yield GaugeMetricFamily("altdub_queue_depth", "Export tasks submitted and not yet started.", value=depth)
        yield GaugeMetricFamily(
            "altdub_tasks_waiting", "PENDING tasks no worker has claimed yet (database view).", value=waiting or 0
        )


def metrics_registry(context: Context) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskCollector(context))
    return registry


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
