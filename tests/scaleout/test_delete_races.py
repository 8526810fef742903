"""Issue 11 on PostgreSQL: export requests and reads racing a DELETE of their run are 200 or 404, never 500.

The same race as tests/reliability/test_hostile_requests.py on SQLite; on PostgreSQL the task insert of a
deleted run fails with a ForeignKeyViolation (43 answers of 500 in 5 rounds before the fix).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from altdub.media.synth import make_tone, make_video
from tests.e2e.conftest import Server, ServerFactory
from tests.reliability.test_hostile_requests import SECONDS, race_deletes
from tests.scaleout.conftest import Databases, pg_connect

pytestmark = [pytest.mark.scaleout, pytest.mark.e2e]


@pytest.fixture
def server(postgres: Databases, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    database_url = postgres.create()
    factory = ServerFactory()
    try:
        # Hundreds of racing exports in one workspace: above the pending limit, so that each answer shows the race.
        env = {"ALTDUB_DATABASE_URL": database_url, "ALTDUB_WORKERS": "1", "ALTDUB_MAX_PENDING_TASKS": "10000"}
        yield factory(tmp_path / "data", env=env), database_url
    finally:
        factory.stop_all()


def test_exports_and_reads_racing_a_delete_on_postgres_are_200_or_404(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    served, database_url = server
    assert served.api_key, served.text
    files = {
        "source": make_video(tmp_path / "video.mp4", SECONDS),
        "dub_es-es": make_tone(tmp_path / "dub.wav", SECONDS),
    }

    def tasks_of(run_id: int) -> int:
        with pg_connect(database_url) as conn:
            return conn.execute("SELECT count(*) FROM export_tasks WHERE run_id = %s", (run_id,)).fetchone()[0]

    race_deletes(served, served.api_key, files, tasks_of)
