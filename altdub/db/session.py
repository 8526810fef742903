"""Engine and session factory for SQLite (default) or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# As many connections as the threads that serve sync routes (AnyIO's default limit), so that a
# request never waits for a connection that another request, itself waiting, holds.
POOL = {"pool_size": 40, "max_overflow": 0}


def make_engine(url: str, *, durable: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``url``; for SQLite, ``durable`` makes every commit survive a power cut (an fsync each).

    Without it (the default, like ``ALTDUB_FSYNC``'s for files), SQLite's WAL is synced at checkpoints
    only: a crash of the process loses nothing, a power cut may lose the last commits. An fsync waits
    for the disk, and behind an export writing gigabytes it took 150 ms (bench/FINDINGS.md).
    """
    options = kwargs if "poolclass" in kwargs else POOL | kwargs
    synchronous = "FULL" if durable else "NORMAL"
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
