"""Executors run export tasks; in-process threads, or Celery workers in other processes.

A submission says "one task's worth of work is waiting", not "run this task": a worker that
becomes free claims the fairest waiting task from the database (``service.conversion.run_next_task``),
so both executors schedule by the same rule and a task's state lives in the database only.
"""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def submit(self, task_id: str) -> None:
        """One more task (``task_id``, just created or left unfinished) waits: a free worker takes the fairest."""

    def queue_depth(self) -> int:
        """Tasks submitted and not yet started."""

    def check(self) -> None:
        """Raise when the executor cannot take work (its broker is unreachable)."""

    def shutdown(self) -> None: ...
