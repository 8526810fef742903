"""Real ``altdub serve`` processes on loopback, for end-to-end tests through HTTP and the CLI."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ALTDUB = Path(sys.executable).parent / "altdub"
KEY_BANNER = "First start: created workspace 'default'. Its API key (shown once):"
API_DOCS_LINE = "API docs: "  # the last line `altdub serve` prints before uvicorn starts
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """The test's environment without any ALTDUB_* (or CAMB_*) setting leaking in, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALTDUB_", "CAMB_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


@dataclass
class Server:
    """A running ``altdub serve``; unpacks as ``(base_url, api_key, data_dir, process)``."""

    base_url: str
    api_key: str | None  # None when the start found a workspace and printed no key
    data_dir: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)  # stdout and stderr lines so far

    def __iter__(self) -> Iterator[object]:
        return iter((self.base_url, self.api_key, self.data_dir, self.process))

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    def child_pids(self) -> list[int]:
        """Direct children (FFmpeg conversions) of the server process."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a timeout (with a warning); fails the test if it will not die."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
        self.process.kill()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"altdub serve (pid {self.process.pid}) did not die after SIGKILL")
        warnings.warn(
            f"altdub serve (pid {self.process.pid}) ignored SIGTERM for {STOP_TIMEOUT:g} s; killed",
            stacklevel=2,
        )

    def crash(self) -> list[int]:
        """SIGKILL the server, as a machine crash would; returns the FFmpeg pids it had running.

        FFmpeg runs in its own session but asks Linux to kill it when its parent dies, so the
        caller can check that none of those pids outlives the server.
        """
        children = self.child_pids()
        self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)
        return children


def wait_until_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids still alive (not zombies) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.05)
    return alive


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _drain(stream: object, sink: list[str], lines: queue.Queue[str | None]) -> None:
    for raw in stream:  # type: ignore[attr-defined]
        line = raw.rstrip("\n")
        sink.append(line)
        lines.put(line)
    lines.put(None)


def start_server(
    data_dir: Path, *, demo: bool = False, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Server:
    """Start ``altdub serve [ARGS]`` on a free loopback port; return once /healthz answers.

    The caller must ``stop()`` it (the fixtures below do).
    """
    port = free_port()
    environment = clean_env(
        ALTDUB_DATA_DIR=str(data_dir), ALTDUB_CREATE_DEMO="true" if demo else "false", **(env or {})
    )
    process = subprocess.Popen(
        [str(ALTDUB), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    server = Server(f"http://127.0.0.1:{port}", None, data_dir, process)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(process.stdout, server.output, lines), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    try:
        # The banner: a key only on a first start; "API docs:" ends it either way.
        expect_key = False
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"altdub serve printed no banner in {START_TIMEOUT:g} s:\n{server.text}")
            if line is None:
                pytest.fail(f"altdub serve exited with {process.wait()} before serving:\n{server.text}")
            if expect_key:
                server.api_key = line.strip()
                expect_key = False
            elif line.strip() == KEY_BANNER:
                expect_key = True
            elif line.startswith(API_DOCS_LINE):
                break
        while True:
            if process.poll() is not None:
                pytest.fail(f"altdub serve exited with {process.returncode}:\n{server.text}")
            try:
                if httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"altdub serve did not answer /healthz in {START_TIMEOUT:g} s:\n{server.text}")
            time.sleep(0.05)
    except BaseException:
        server.stop()
        raise


class ServerFactory:
    """Starts servers for one test (or module) and stops every one of them afterwards."""

    def __init__(self) -> None:
        self.started: list[Server] = []

    def __call__(
        self, data_dir: Path, *, demo: bool = False, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> Server:
        server = start_server(data_dir, demo=demo, env=env, args=args)
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def start_altdub() -> Iterator[ServerFactory]:
    """``start_altdub(data_dir, demo=...)`` starts a server; all are stopped at teardown."""
    factory = ServerFactory()
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A first start with the demo run (ALTDUB_CREATE_DEMO=true), shared by a module."""
    factory = ServerFactory()
    server = factory(tmp_path_factory.mktemp("altdub-demo"), demo=True)
    assert server.api_key, f"no API key printed on first start:\n{server.text}"
    yield server
    factory.stop_all()


@pytest.fixture(scope="module")
def altdub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A first start without a demo run, shared by a module: ``(base_url, api_key, data_dir, process)``."""
    factory = ServerFactory()
    server = factory(tmp_path_factory.mktemp("altdub-data"), demo=False)
    assert server.api_key, f"no API key printed on first start:\n{server.text}"
    yield server
    factory.stop_all()


def create_key(data_dir: Path, workspace: str) -> str:
    """A key of ``workspace`` (created if new), made by the real CLI on a server's data directory."""
    done = subprocess.run(
        [str(ALTDUB), "keys", "create", "--workspace", workspace],
        env=clean_env(ALTDUB_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]  # printed alone on the last line


def auth(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def import_run(
    base_url: str, key: str, files: Mapping[str, Path], source_language: str = "en-us", **fields: str
) -> httpx.Response:
    """POST /runs as multipart/form-data over real HTTP."""
    handles = {name: (path.name, path.open("rb")) for name, path in files.items()}
    try:
        return httpx.post(
            f"{base_url}/runs",
            headers=auth(key),
            data={"source_language": source_language, **fields},
            files=handles,
            timeout=60,
        )
    finally:
        for _, fh in handles.values():
            fh.close()


def import_run_id(base_url: str, key: str, files: Mapping[str, Path], **fields: str) -> int:
    """Import a run over real HTTP (it must succeed); its id."""
    response = import_run(base_url, key, files, **fields)
    assert response.status_code == 201, response.text
    return response.json()["run_id"]


def request_export(
    base_url: str, key: str, run_id: int, output_format: str, *, language: str = "es-es", timeout: float = 30
) -> httpx.Response:
    """POST /dub-alt-format/{run_id}/{language} over real HTTP."""
    return httpx.post(
        f"{base_url}/dub-alt-format/{run_id}/{language}",
        headers=auth(key),
        json={"output_format": output_format},
        timeout=timeout,
    )


def wait_for_task(base_url: str, key: str, task_id: str, timeout: float = 60) -> dict[str, object]:
    """Poll the task over HTTP until it leaves PENDING; progress must never go down."""
    deadline = time.monotonic() + timeout
    last = 0
    while time.monotonic() < deadline:
        response = httpx.get(f"{base_url}/dub-alt-format/{task_id}", headers=auth(key), timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["progress"] >= last, f"progress went down: {body}"
        last = body["progress"]
        if body["status"] != "PENDING":
            return body
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still PENDING after {timeout:g} s")


def download(url: str, destination: Path) -> httpx.Response:
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200, f"{response.status_code}: {response.text[:300]}"
    destination.write_bytes(response.content)
    return response
