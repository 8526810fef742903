"""Wake requests that wait for a task (long polling) as soon as a worker of this process ends it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class TaskWaiter:
    """One waiting request: woken by ``TaskEvents.notify`` from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> None:
        """Return when woken or after ``timeout`` seconds, whichever is first; costs no thread."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


class TaskEvents:
    """Which requests wait for which task, and how many wait in all.

    Only the workers of this process notify (the embedded mode). A request waiting for a worker in
    another process must also read the task again now and then (the route decides).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[TaskWaiter]] = {}
        self._count = 0
        self._closed = False

    @contextlib.contextmanager
    def watch(self, task_id: str, limit: int) -> Iterator[TaskWaiter | None]:
        """Register before reading the task, so that an end between the read and the wait is not missed.

        Yields None, registering nothing, when ``limit`` requests wait already or the process is
        stopping: the caller answers at once.
        """
        waiter = TaskWaiter(asyncio.get_running_loop())
        with self._lock:
            if self._closed or self._count >= limit:
                waiter = None
            else:
                self._waiters.setdefault(task_id, set()).add(waiter)
                self._count += 1
        if waiter is None:
            yield None
            return
        try:
            yield waiter
        finally:
            with self._lock:
                waiters = self._waiters.get(task_id, set())
                waiters.discard(waiter)
                self._count -= 1
                if not waiters:
                    self._waiters.pop(task_id, None)

    def notify(self, *task_ids: str) -> None:
        with self._lock:
            waiters = [waiter for task_id in task_ids for waiter in self._waiters.get(task_id, ())]
        for waiter in waiters:
            waiter.wake()

    def close(self) -> None:
        """The process is stopping: wake every waiter and take no new one, so that open long polls answer now.

        Without it a shutdown would wait its whole grace period for requests that only wait.
        """
        with self._lock:
            self._closed = True
        self.notify(*list(self._waiters))

    @property
    def closed(self) -> bool:
        return self._closed
