"""Prometheus metrics: export tasks per status and the work queue's depth, read at scrape time."""

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from altdub.service.context import Context
from altdub.service.tasks import task_counts

router = APIRouter(tags=["health"])


class TaskCollector(Collector):
    def __init__(self, context: Context) -> None:
        self.context = context

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = task_counts(self.context)
        tasks = GaugeMetricFamily("altdub_export_tasks", "Export tasks by status (all processes).", labels=["status"])
        for status, count in counts.by_status.items():
            tasks.add_metric([status.value], count)
        yield tasks
        executor = self.context.executor
        depth = executor.queue_depth() if executor is not None else counts.waiting
        yield GaugeMetricFamily("altdub_queue_depth", "Export tasks submitted and not yet started.", value=depth)
        yield GaugeMetricFamily(
            "altdub_tasks_waiting", "PENDING tasks no worker has claimed yet (database view).", value=counts.waiting
        )


def metrics_registry(context: Context) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskCollector(context))
    return registry


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
