"""The SQLite engine: how durable a commit is follows ALTDUB_FSYNC, as for stored files."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from altdub.config import Settings
from altdub.service.context import build_context

SYNCHRONOUS = {1: "NORMAL", 2: "FULL"}


@pytest.mark.parametrize(("fsync", "expected"), [(False, "NORMAL"), (True, "FULL")])
def test_sqlite_syncs_every_commit_only_when_asked(tmp_path: Path, fsync: bool, expected: str) -> None:
    context = build_context(Settings(data_dir=tmp_path / "data", fsync=fsync, create_demo=False))
    try:
        with context.engine.connect() as connection:
            mode = connection.execute(text("PRAGMA journal_mode")).scalar()
            synchronous = connection.execute(text("PRAGMA synchronous")).scalar()
    finally:
        context.engine.dispose()
    assert mode == "wal"  # NORMAL is only crash-safe with the write-ahead log
    assert SYNCHRONOUS[synchronous] == expected
