"""Executors run export tasks by id; in-process threads today, the same interface for remote workers."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def submit(self, task_id: str) -> None:
        """Run the task soon; the task's state lives in the database, not here."""

    def shutdown(self) -> None: ...
