"""The API on PostgreSQL and an S3 bucket (moto's server), in process: migrations, exports, downloads, deletes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from altdub.media.probe import probe
from altdub.service import tasks as tasks_service
from altdub.storage.s3 import S3Storage
from tests.conftest import SOURCE_SECONDS, auth, export, make_run, wait_for_task
from tests.scaleout.conftest import (
    Databases,
    S3Server,
    ScaleOut,
    new_key,
    new_prefix,
    pg_connect,
    pg_s3_client,
    run_altdub,
)

pytestmark = pytest.mark.scaleout

DURATION_TOLERANCE = 0.05  # spec §4
TABLES = {"alembic_version", "workspaces", "api_keys", "runs", "run_files", "transcripts", "export_tasks"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def deployment(postgres_url: str, s3: S3Server) -> ScaleOut:
    return ScaleOut(database_url=postgres_url, s3=s3, prefix=new_prefix("inproc"))


@pytest.fixture(scope="module")
def app(
    deployment: ScaleOut, aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, str]]:
    """One in-process app (API and its own workers) on PostgreSQL + S3, and an API key."""
    settings = deployment.settings(tmp_path_factory.mktemp("pg-s3-data"))
    with pg_s3_client(settings) as client:
        yield client, new_key(client, "scaleout")


@pytest.fixture(scope="module")
def run_id(app: tuple[TestClient, str], media) -> int:
    client, key = app
    return make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav})


def task_row(database_url: str, task_id: str) -> dict[str, object]:
    with pg_connect(database_url) as conn:
        cursor = conn.execute(
            "SELECT status, attempts, storage_key, size, identity FROM export_tasks WHERE id = %s", (task_id,)
        )
        status, attempts, storage_key, size, identity = cursor.fetchone()
    return {"status": status, "attempts": attempts, "storage_key": storage_key, "size": size, "identity": identity}


# --- migrations ----------------------------------------------------------------------------------------


def _tables(database_url: str) -> set[str]:
    with pg_connect(database_url) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return {name for (name,) in rows}


def test_db_upgrade_creates_the_tables_on_a_fresh_database(postgres: Databases, tmp_path: Path) -> None:
    database_url = postgres.create()
    assert _tables(database_url) == set()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ALTDUB_", "CAMB_"))} | {
        "ALTDUB_DATA_DIR": str(tmp_path / "data"),
        "ALTDUB_DATABASE_URL": database_url,
    }
    for attempt in ("first", "second"):
        done = run_altdub(["db", "upgrade"], environment)
        assert done.returncode == 0, f"{attempt} run: {done.stdout}\n{done.stderr}"
        assert "database is up to date" in done.stdout
        assert _tables(database_url) >= TABLES, f"after the {attempt} run"

    with pg_connect(database_url) as conn:
        (pg_version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        (index,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_export_tasks_live_identity'"
        ).fetchone()
    assert "UNIQUE" in index and "WHERE" in index, index  # one live task per identity, as on SQLite

    # The same migrations as SQLite: both end at the same revision.
    sqlite_env = environment | {"ALTDUB_DATABASE_URL": f"sqlite:///{tmp_path / 'same.db'}"}
    done = run_altdub(["db", "upgrade"], sqlite_env)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "same.db") as conn:
        (sqlite_version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert pg_version == sqlite_version


# --- exports on S3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("output_format", "content_type"), [("mp3", "audio/mpeg"), ("mp4", "video/mp4")])
def test_export_downloads_are_presigned_bucket_urls(
    app: tuple[TestClient, str],
    run_id: int,
    deployment: ScaleOut,
    s3: S3Server,
    tmp_path: Path,
    output_format: str,
    content_type: str,
) -> None:
    client, key = app
    status = export(client, key, run_id, "es-es", output_format)
    assert status["status"] == "SUCCESS", status
    url = status["output_url"]
    parsed = urlparse(url)
    assert url.startswith(f"{s3.endpoint}/{s3.bucket}/{deployment.prefix}/"), url
    assert "/files/" not in parsed.path, url
    assert "X-Amz-Signature=" in parsed.query and "X-Amz-Expires=" in parsed.query, url

    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == content_type
    filename = f"run-{run_id}_es-es.{output_format}"
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'
    saved = tmp_path / filename
    saved.write_bytes(response.content)
    info = probe(saved)
    assert abs(info.duration - SOURCE_SECONDS) <= DURATION_TOLERANCE
    assert len(info.video) == (1 if output_format == "mp4" else 0)

    partial = httpx.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert partial.status_code == 206
    assert partial.content == response.content[:100]
    assert partial.headers["content-range"] == f"bytes 0-99/{len(response.content)}"

    # Published whole: the object in the bucket is the size recorded on the task.
    again = client.post(
        f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json={"output_format": output_format}
    ).json()
    assert set(again) == {"output_url"}, again  # it exists now: a URL at once
    assert urlparse(again["output_url"]).path == parsed.path
    rows = _tasks_of(deployment.database_url, run_id, output_format)
    assert len(rows) == 1, rows
    (task_id,) = rows
    row = task_row(deployment.database_url, task_id)
    assert row["status"] == "SUCCESS" and row["attempts"] == 1, row
    head = s3.client().head_object(Bucket=s3.bucket, Key=f"{deployment.prefix}/{row['storage_key']}")
    assert head["ContentLength"] == row["size"] == len(response.content)


def _tasks_of(database_url: str, run_id: int, output_format: str) -> list[str]:
    with pg_connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM export_tasks WHERE run_id = %s AND output_format = %s", (run_id, output_format)
        )
        return [task_id for (task_id,) in rows]


def test_deleting_a_run_removes_every_object_of_it(
    app: tuple[TestClient, str], deployment: ScaleOut, s3: S3Server, media
) -> None:
    client, key = app
    before = s3.keys(deployment.prefix + "/")
    doomed = make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav})
    for output_format in ("wav", "mp4"):
        assert export(client, key, doomed, "es-es", output_format)["status"] == "SUCCESS"
    during = s3.keys(deployment.prefix + "/")
    added = sorted(set(during) - set(before))
    assert len(added) == 5, added  # source, dub, the mp4's encoded audio (service/intermediates.py), two exports
    assert sum("/exports/" in k for k in added) == 2, added
    assert sum("/audio/" in k for k in added) == 1, added

    response = client.delete(f"/runs/{doomed}", headers=auth(key))
    assert response.status_code == 204, response.text
    assert s3.keys(deployment.prefix + "/") == before
    assert client.get(f"/runs/{doomed}", headers=auth(key)).status_code == 404
    with pg_connect(deployment.database_url) as conn:
        (left,) = conn.execute("SELECT count(*) FROM export_tasks WHERE run_id = %s", (doomed,)).fetchone()
    assert left == 0


def test_concurrent_identical_requests_converge_on_postgres(
    app: tuple[TestClient, str], run_id: int, deployment: ScaleOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, key = app
    # Widen the window between "no live task" and the insert so that the requests really collide
    # and PostgreSQL's partial unique index has to make them converge.
    lookup = tasks_service.live_task

    def slow_lookup(session, identity):
        task = lookup(session, identity)
        if task is None:
            time.sleep(0.3)
        return task

    monkeypatch.setattr(tasks_service, "live_task", slow_lookup)
    n = 20
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def post(i: int) -> None:
        barrier.wait()
        try:
            results[i] = client.post(
                f"/dub-alt-format/{run_id}/es-es", headers=auth(key), json={"output_format": "m4a"}
            )
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    bodies = []
    for result in results:
        assert isinstance(result, httpx.Response), repr(result)
        assert result.status_code == 200, result.text
        bodies.append(result.json())
    # A request that looked up after the conversion ended gets that export's URL (its key is the task id).
    task_ids = {body["task_id"] for body in bodies if "task_id" in body}
    assert len(task_ids) == 1, bodies
    (task_id,) = task_ids
    for body in bodies:
        assert body == {"task_id": task_id} or (set(body) == {"output_url"} and task_id in body["output_url"]), body
    assert _tasks_of(deployment.database_url, run_id, "m4a") == [task_id]
    assert wait_for_task(client, key, task_id)["status"] == "SUCCESS"
    assert task_row(deployment.database_url, task_id)["attempts"] == 1


# --- health --------------------------------------------------------------------------------------------


def test_readyz_checks_database_and_storage(app: tuple[TestClient, str]) -> None:
    client, _ = app
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "storage": "ok", "broker": "not used (in-process workers)"},
    }


def test_readyz_names_an_unreachable_bucket(
    deployment: ScaleOut, s3: S3Server, aws_env: dict[str, str], tmp_path: Path
) -> None:
    settings = deployment.settings(tmp_path / "data", storage_url=s3.storage_url("x").replace(s3.bucket, "nowhere"))
    with pg_s3_client(settings) as client:
        response = client.get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["storage"].startswith("error:") and "nowhere" in body["checks"]["storage"]


def test_metrics_count_tasks_by_status(app: tuple[TestClient, str], run_id: int) -> None:
    client, key = app
    assert export(client, key, run_id, "es-es", "flac")["status"] == "SUCCESS"
    text = client.get("/metrics").text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples['altdub_export_tasks{status="SUCCESS"}']) >= 1
    assert float(samples['altdub_export_tasks{status="PENDING"}']) == 0
    assert float(samples["altdub_queue_depth"]) == 0


# --- the S3 storage itself ----------------------------------------------------------------------------


def test_large_files_are_uploaded_in_parts(s3: S3Server, aws_env: dict[str, str], tmp_path: Path) -> None:
    prefix = new_prefix("multipart")
    storage = S3Storage(s3.bucket, prefix, scratch=tmp_path / "scratch", url_ttl=60)
    big = tmp_path / "big.bin"
    size = 70 * MiB  # over the 64 MiB multipart threshold
    chunk = os.urandom(MiB)
    digest = hashlib.sha256()
    with big.open("wb") as fh:
        for i in range(70):
            block = chunk[i:] + chunk[:i]
            fh.write(block)
            digest.update(block)

    assert storage.put_file("exports/big.bin", big) == size
    assert not big.exists()  # handed over: the local file is gone
    head = s3.client().head_object(Bucket=s3.bucket, Key=f"{prefix}/exports/big.bin")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-2"), head["ETag"]  # two 64 MiB parts
    assert storage.exists("exports/big.bin")
    with storage.local_copy("exports/big.bin") as copy, copy.open("rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == digest.hexdigest()
    storage.delete_prefix("exports/")
    assert not storage.exists("exports/big.bin")
    assert s3.keys(prefix + "/") == []
