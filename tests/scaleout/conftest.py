"""Real servers for the scale-out tests: PostgreSQL and Redis on loopback, an S3 server (moto) started here.

Each session gets fresh PostgreSQL databases (dropped at the end), its own Redis database number
(flushed before and after) and a bucket on a moto server listening on a free loopback port. When a
server is missing the tests skip with a message naming it; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.session import session_scope
from altdub.service.keys import create_key
from tests.e2e.conftest import (
    ALTDUB,
    API_DOCS_LINE,
    KEY_BANNER,
    START_TIMEOUT,
    Server,
    _drain,
    clean_env,
    free_port,
)

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 13
BUCKET = "altdub-scaleout"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
WORKER_READY = " ready."  # Celery's "celery@host ready." log line


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scaleout: needs PostgreSQL, Redis and an S3 server (moto) on loopback")


def unavailable(message: str) -> NoReturn:
    """Skip naming the missing server; on CI (``CI=true``) these tests must run, so fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the scale-out tests must run)", pytrace=False)
    pytest.skip(message)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# --- PostgreSQL ----------------------------------------------------------------------------------------


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True, connect_timeout=3
    )


def pg_connect(url: str) -> Any:
    """A psycopg connection to the database of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True)


class Databases:
    """Creates fresh databases ``altdub_test_<random>`` and drops every one of them at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self) -> str:
        from psycopg import sql

        name = f"altdub_test_{secrets.token_hex(6)}"
        with _pg_admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.names.append(name)
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def drop_all(self) -> None:
        from psycopg import sql

        with _pg_admin() as conn:
            for name in self.names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.names.clear()


def postgres_databases() -> Databases:
    """A factory of fresh PostgreSQL databases (skips, or fails on CI, when there is no server); drop_all at the end."""
    try:
        import psycopg
    except ImportError as exc:
        unavailable(f"PostgreSQL client (psycopg) not installed: {exc}")
    try:
        with _pg_admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL not found at {PG_HOST}:{PG_PORT}: {_one_line(exc)}")
    return Databases()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Databases]:
    """A factory of fresh PostgreSQL databases (skips, or fails on CI, when there is no server)."""
    databases = postgres_databases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres: Databases) -> str:
    """``postgresql+psycopg://`` URL of a fresh database for the session."""
    return postgres.create()


# --- Redis ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Redis database 13 on loopback, flushed before and after the session."""
    try:
        import redis
    except ImportError as exc:
        unavailable(f"Redis client (redis-py) not installed: {exc}")
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=3)
    try:
        client.ping()
        client.flushdb()
    except redis.RedisError as exc:
        unavailable(f"Redis not found at {REDIS_HOST}:{REDIS_PORT}: {_one_line(exc)}")
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()


@pytest.fixture
def own_redis_url(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """Redis database ``REDIS_DB`` of the test's module alone, flushed before and after.

    A module whose workers must not take another module's messages names a database of its own.
    """
    import redis

    url = f"{redis_url.rsplit('/', 1)[0]}/{request.module.REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


# --- S3 (moto's server mode) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """What boto3 needs to reach the server: endpoint, fake credentials, region."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **AWS_ENV}

    def storage_url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``."""
        found: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return sorted(found)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, with an empty bucket; stopped at the end."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        unavailable(f"S3 server not found: moto[server] is not installed ({exc})")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
        host, port = server.get_host_and_port()
        s3_server = S3Server(f"http://{host}:{port}", BUCKET)
        s3_server.client().create_bucket(Bucket=BUCKET)
    except Exception as exc:
        with contextlib.suppress(Exception):
            server.stop()
        unavailable(f"S3 server (moto) could not start on 127.0.0.1: {_one_line(exc)}")
    yield s3_server
    server.stop()


@pytest.fixture(scope="module")
def aws_env(s3: S3Server) -> Iterator[dict[str, str]]:
    """This process's AWS_* variables pointing boto3 at the moto server, for the module's duration."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        for name, value in s3.env.items():
            patch.setenv(name, value)
        yield s3.env


# --- configuration for in-process apps and subprocesses -----------------------------------------------


@dataclass(frozen=True)
class ScaleOut:
    """One deployment: a database, a bucket prefix, maybe a broker, and the shared secret key."""

    database_url: str
    s3: S3Server
    prefix: str
    broker_url: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def storage_url(self) -> str:
        return self.s3.storage_url(self.prefix)

    def settings(self, data_dir: Path, **overrides: Any) -> Settings:
        """In-process settings (no broker unless given: conversions run in the app's own workers)."""
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": self.database_url,
            "storage_url": self.storage_url,
            "broker_url": self.broker_url,
            "secret_key": self.secret_key,
            "create_demo": False,
            "workers": 2,
            "task_time_limit": 120,
        }
        return Settings(**(values | overrides))

    def env(self, data_dir: Path, **overrides: str) -> dict[str, str]:
        """The environment of an ``altdub`` subprocess: every ALTDUB_* and AWS_* setting, nothing inherited."""
        env = {k: v for k, v in clean_env().items() if not k.startswith("AWS_")}
        env |= self.s3.env
        env |= {
            "ALTDUB_DATA_DIR": str(data_dir),
            "ALTDUB_DATABASE_URL": self.database_url,
            "ALTDUB_STORAGE_URL": self.storage_url,
            "ALTDUB_SECRET_KEY": self.secret_key,
            "ALTDUB_CREATE_DEMO": "false",
        }
        if self.broker_url:
            env["ALTDUB_BROKER_URL"] = self.broker_url
        return env | overrides


def new_prefix(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def pg_s3_client(settings: Settings) -> Iterator[TestClient]:
    """An in-process app (``create_app(settings, workers=True)``) behind a TestClient."""
    with TestClient(create_app(settings, workers=True)) as client:
        yield client


def new_key(client: TestClient, workspace: str) -> str:
    context = client.app.state.context  # type: ignore[attr-defined]
    with session_scope(context.sessions) as session:
        raw, _ = create_key(session, workspace)
    return raw


def run_altdub(args: list[str], env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``altdub ARGS`` to completion, output captured."""
    return subprocess.run(
        [str(ALTDUB), *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


# --- processes -----------------------------------------------------------------------------------------


class Processes:
    """``altdub serve --no-workers`` and ``altdub worker`` processes, all stopped by ``stop_all``."""

    def __init__(self) -> None:
        self.started: list[Server] = []

    def _spawn(self, args: list[str], data_dir: Path, env: Mapping[str, str], base_url: str) -> tuple[Server, Any]:
        process = subprocess.Popen(
            [str(ALTDUB), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env),
        )
        server = Server(base_url, None, data_dir, process)
        self.started.append(server)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_drain, args=(process.stdout, server.output, lines), daemon=True).start()
        return server, lines

    def api(self, data_dir: Path, env: Mapping[str, str]) -> Server:
        """Start ``altdub serve --no-workers`` on a free loopback port; return once /healthz answers.

        ``api_key`` is set when this start created the first workspace (and printed its key).
        """
        port = free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-workers"]
        server, lines = self._spawn(args, data_dir, env, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + START_TIMEOUT
        expect_key = False
        while True:
            line = _next_line(server, lines, deadline, "altdub serve")
            if expect_key:
                server.api_key, expect_key = line.strip(), False
            elif line.strip() == KEY_BANNER:
                expect_key = True
            elif line.startswith(API_DOCS_LINE):
                break
        while True:
            if server.process.poll() is not None:
                pytest.fail(f"altdub serve exited with {server.process.returncode}:\n{server.text}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                pytest.fail(f"altdub serve did not answer /healthz in {START_TIMEOUT:g} s:\n{server.text}")
            time.sleep(0.05)

    def worker(self, data_dir: Path, env: Mapping[str, str]) -> Server:
        """Start ``altdub worker``; return once Celery logs that it is ready to consume."""
        server, lines = self._spawn(["worker"], data_dir, env, "")
        deadline = time.monotonic() + START_TIMEOUT
        while not _next_line(server, lines, deadline, "altdub worker").endswith(WORKER_READY):
            pass
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


def _next_line(server: Server, lines: queue.Queue[str | None], deadline: float, what: str) -> str:
    try:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
    except queue.Empty:
        pytest.fail(f"{what} did not start in {START_TIMEOUT:g} s:\n{server.text}")
    if line is None:
        pytest.fail(f"{what} exited with {server.process.wait()} before it was ready:\n{server.text}")
    return line
