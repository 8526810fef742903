"""One database connection held by the event loop for its quick reads (the cached export POST).

Checking a pooled connection out and back in costs more than the indexed query it serves (bench/
FINDINGS.md, target 3, round two: ~40 % of that query's 0.17 ms). The loop runs one read at a time, so
one connection, held for the server's life, serves all of them. Each read is its own transaction, ended
at once: the next read sees every commit made meanwhile (a key revoked, an export removed), exactly as a
fresh connection would, and SQLite's checkpoints are never held back by an open read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Row
from sqlalchemy.exc import DBAPIError


class HeldConnection:
    """Quick reads on one connection; used from the thread that first reads (the event loop's) only."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._thread: int | None = None

    def first(self, statement: Executable, params: Mapping[str, Any]) -> Row[Any] | None:
        """The first row of ``statement``, in a transaction of its own; a dropped connection is replaced once."""
        try:
            return self._read(statement, params)
        except DBAPIError as exc:
            self.close()
            if not exc.connection_invalidated:
                raise
        return self._read(statement, params)  # once more, on a new connection

    def _read(self, statement: Executable, params: Mapping[str, Any]) -> Row[Any] | None:
        connection = self._open()
        try:
            return connection.execute(statement, params).first()
        finally:
            if not connection.invalidated:
                connection.rollback()  # the read's transaction ends here: the next read sees new commits

    def _open(self) -> Connection:
        thread = threading.get_ident()
        if self._thread is not None and self._thread != thread:
            raise RuntimeError("a HeldConnection serves the one thread that first used it")
        self._thread = thread
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def close(self) -> None:
        """Give the connection back (at shutdown, before the engine is disposed)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()
