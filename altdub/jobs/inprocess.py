"""Run tasks on a pool of threads inside the API process (the embedded default).

Each submission queues one call of the handler, which claims the fairest waiting task when a
thread is free (see ``altdub.jobs``): the queue holds turns, not task ids.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class InProcessExecutor:
    def __init__(self, handler: Callable[[], object], workers: int) -> None:
        self._handler = handler
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="altdub-worker")
        self._lock = threading.Lock()
        self._waiting = 0

    def submit(self, task_id: str) -> None:
        with self._lock:
            self._waiting += 1
        self._pool.submit(self._run)

    def queue_depth(self) -> int:
        return self._waiting

    def check(self) -> None:
        """Threads of this process: always there."""

    def _run(self) -> None:
        with self._lock:
            self._waiting -= 1
        try:
            self._handler()
        except Exception:  # the handler records failures on the task; this is a last resort
            log.exception("a task crashed its worker")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
