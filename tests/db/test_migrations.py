"""The Alembic migrations make exactly the schema of the models, on SQLite and on PostgreSQL.

``compare_metadata`` diffs a freshly migrated database against ``altdub.db.models.Base.metadata``:
tables, columns (types, nullability, server defaults), indexes, unique constraints and foreign
keys. An empty diff means a database made by ``altdub db upgrade`` is the one the code expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from altdub.db.migrate import upgrade
from altdub.db.models import Base
from tests.scaleout.conftest import postgres_databases


def _diff(url: str) -> list[object]:
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (skips, or fails on CI, when there is no server)."""
    databases = postgres_databases()
    try:
        yield databases.create()
    finally:
        databases.drop_all()


def test_migrations_make_the_models_schema_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert _diff(url) == []
    assert _tables(url) == set(Base.metadata.tables)
    assert {"task_callbacks", "webhook_events", "webhook_attempts"} <= _tables(url)


def test_migrations_make_the_models_schema_on_postgresql(postgres_database: str) -> None:
    assert _diff(postgres_database) == []
    assert _tables(postgres_database) == set(Base.metadata.tables)
