"""Run tasks on a pool of threads inside the API process (the embedded default)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class InProcessExecutor:
    def __init__(self, handler: Callable[[str], None], workers: int) -> None:
        self._handler = handler
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="altdub-worker")
        self._lock = threading.Lock()
        self._waiting = 0

    def submit(self, task_id: str) -> None:
        with self._lock:
            self._waiting += 1
        self._pool.submit(self._run, task_id)

    def queue_depth(self) -> int:
        return self._waiting

    def check(self) -> None:
        """Threads of this process: always there."""

    def _run(self, task_id: str) -> None:
        with self._lock:
            self._waiting -= 1
        try:
            self._handler(task_id)
        except Exception:  # the handler records failures on the task; this is a last resort
            log.exception("task %s crashed its worker", task_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
