"""Everything a use-case needs, built once per process from the settings."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from altdub.config import Settings
from altdub.db.migrate import upgrade
from altdub.db.session import make_engine, make_sessionmaker
from altdub.jobs import Executor
from altdub.media.formats import content_type_for
from altdub.service.waiting import TaskEvents
from altdub.storage import Storage, open_storage
from altdub.storage.signing import URLSigner


class IdentityCache:
    """Which export identity a request resolves to: facts that never change, kept in an LRU bounded in bytes.

    With it, asking again for an export that exists is one indexed query (see
    ``exports.cached_export_url``) instead of resolving the run's files and options anew. Keys are
    fixed-size digests of the request, so what a client sends never stays here, whatever its size.
    """

    ENTRY_OVERHEAD = 120  # bytes per entry beyond its key and value: the ordered dict's node and slot (CPython)

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[bytes, str] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """Memory held by the entries, as counted against the limit."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    @classmethod
    def _cost(cls, key: bytes, identity: str) -> int:
        return sys.getsizeof(key) + sys.getsizeof(identity) + cls.ENTRY_OVERHEAD

    def get(self, key: bytes) -> str | None:
        with self._lock:
            identity = self._items.get(key)
            if identity is not None:
                self._items.move_to_end(key)
            return identity

    def put(self, key: bytes, identity: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= self._cost(key, old)
            self._items[key] = identity
            self._bytes += self._cost(key, identity)
            while self._bytes > self._max_bytes and self._items:
                evicted_key, evicted = self._items.popitem(last=False)
                self._bytes -= self._cost(evicted_key, evicted)


class TaskCancel(threading.Event):
    """Stops one running conversion: set when its task is gone (its run was deleted).

    It also reads as set once the process is stopping, so that the FFmpeg runner, which polls
    ``is_set()``, stops for either; ``task_gone`` tells the two apart (only ``is_set`` sees the
    shutdown: ``wait`` does not).
    """

    def __init__(self, stopping: threading.Event) -> None:
        super().__init__()
        self._stopping = stopping

    def is_set(self) -> bool:
        return super().is_set() or self._stopping.is_set()

    @property
    def task_gone(self) -> bool:
        return super().is_set()


class RunningConversions:
    """The cancel of every conversion running in this process, by task id, so that deleting a run stops its FFmpeg."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._cancels: dict[str, TaskCancel] = {}
        self._lock = threading.Lock()

    @contextmanager
    def running(self, task_id: str) -> Iterator[TaskCancel]:
        cancel = TaskCancel(self._stopping)
        with self._lock:
            self._cancels[task_id] = cancel
        try:
            yield cancel
        finally:
            with self._lock:
                self._cancels.pop(task_id, None)

    def cancel(self, task_ids: Iterable[str]) -> None:
        """Stop the conversions of these tasks, if they run here (in scale-out, the worker's heartbeat notices)."""
        with self._lock:
            cancels = [self._cancels[t] for t in task_ids if t in self._cancels]
        for cancel in cancels:
            cancel.set()


def utc_now() -> datetime:
    return datetime.now(UTC)


class RecentUses:
    """When each stored file was last handed out (a signed URL made) or downloaded, by storage key.

    Kept in memory and written in batches by ``service.lifecycle``: a use costs no query, which matters
    on the event loop's fast path. A use lost in a crash makes an export look older than it is, and
    the lifecycle never removes what was used within a signed URL's lifetime anyway.
    """

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._keys: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def touch(self, key: str) -> None:
        with self._lock:
            self._keys[key] = self._clock()

    def drain(self) -> dict[str, datetime]:
        with self._lock:
            keys, self._keys = self._keys, {}
        return keys


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    executor: Executor | None = field(default=None)
    stopping: threading.Event = field(default_factory=threading.Event)  # set at shutdown: conversions stop
    identities: IdentityCache = field(init=False)
    task_events: TaskEvents = field(default_factory=TaskEvents)  # wakes requests waiting for a task
    conversions: RunningConversions = field(init=False)
    clock: Callable[[], datetime] = utc_now  # the storage lifecycle's time (tests move it)
    uses: RecentUses = field(init=False)
    url_signer: URLSigner = field(init=False)  # signs URLs the API serves whatever the storage (packages)

    def __post_init__(self) -> None:
        self.conversions = RunningConversions(self.stopping)
        self.identities = IdentityCache(self.settings.identity_cache_bytes)
        self.uses = RecentUses(lambda: self.clock())
        self.url_signer = URLSigner(self.settings.effective_secret_key(), self.settings.url_ttl)

    def download_url(self, key: str, filename: str) -> str:
        """A fresh signed URL that downloads ``key`` as ``filename``, at the service's public address.

        The address is a setting (``ALTDUB_PUBLIC_URL``), never taken from a request: no use-case carries it.
        Handing a URL out is a use of the file (the storage lifecycle keeps what is used).
        """
        self.uses.touch(key)
        return self.storage.signed_url(
            key,
            filename=filename,
            content_type=content_type_for(filename),
            base_url=self.settings.effective_public_url,
        )


def build_context(settings: Settings, *, migrate: bool = True) -> Context:
    url = settings.effective_database_url
    if migrate:
        upgrade(url)
    engine = make_engine(url, durable=settings.fsync)
    storage = open_storage(
        settings.effective_storage_url,
        secret=settings.effective_secret_key(),
        url_ttl=settings.url_ttl,
        scratch=settings.staging_dir,
        fsync=settings.fsync,
    )
    return Context(settings, engine, make_sessionmaker(engine), storage)


def remove_stale_scratch(settings: Settings) -> None:
    """Delete the scratch folders of processes that no longer run (uploads and outputs cut short)."""
    if not settings.scratch_root.is_dir():
        return
    for folder in settings.scratch_root.iterdir():
        if folder.name.isdigit() and not _process_alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
