"""Executors run export tasks by id; in-process threads today, the same interface for remote workers."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def submit(self, task_id: str) -> None:
        """Run the task soon; the task's state lives in the database, not here."""

    def queue_depth(self) -> int:
        """Tasks submitted and not yet started."""

    def check(self) -> None:
        """Raise when the executor cannot take work (its broker is unreachable)."""

    def shutdown(self) -> None: ...
