"""The README's quick start, run as written: the commands CI relies on, and a newcomer's first export.

The e2e test copies the repository to a fresh folder and runs the README's service command there
(a new venv, `pip install -e .`, `altdub serve` on its default port 8000), then the README's curl
steps, its CLI line and its camb-sdk script, with only the placeholders the README asks the reader
to fill in (the key, the task id, the output URL) replaced by what the server answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from altdub.config import Settings
from altdub.media.probe import probe
from tests.e2e.conftest import KEY_BANNER, clean_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

SERVICE_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/altdub serve"
BASE_URL = "http://127.0.0.1:8000"  # where the README's commands expect the service
INSTALL_TIMEOUT = 900.0  # a fresh venv and pip install from the package index
DEMO_SECONDS = 10.0
DURATION_TOLERANCE = 0.05

# What the README asks the reader to fill in, and from what the server answered.
KEY_PLACEHOLDER = "altdub_..."
TASK_PLACEHOLDER = "0c6c…"
URL_PLACEHOLDER = "<output_url>"


# --- reading the README ---------------------------------------------------------------------------


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    assert "\n## Quick start\n" in text, "README.md has no '## Quick start' section"
    return text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]


def fenced_blocks(section: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced code block, in order."""
    return [(lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```\s*$", section, re.M | re.S)]


def sh_blocks() -> list[str]:
    return [body for lang, body in fenced_blocks(quick_start()) if lang == "sh"]


def commands(block: str) -> list[tuple[str, list[str]]]:
    """Shell commands of a block (continuation lines joined), each with the comment lines that follow it."""
    result: list[tuple[str, list[str]]] = []
    pending = ""
    for line in block.splitlines():
        if pending:
            pending += "\n" + line
        elif line.lstrip().startswith("#"):
            if result:
                result[-1][1].append(line.lstrip()[1:].strip())
            continue
        else:
            pending = line
        if pending.endswith("\\"):
            continue
        if pending.strip():
            result.append((pending, []))
        pending = ""
    return result


# --- always: the README's first two commands are the ones CI depends on ---------------------------


def test_quick_start_starts_with_the_service_and_test_commands() -> None:
    blocks = sh_blocks()
    assert len(blocks) >= 2, blocks
    service, tests = (block.strip() for block in blocks[:2])
    assert service == SERVICE_COMMAND
    assert "\n" not in tests, tests
    ci_lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    assert tests in ci_lines, f".ci/run does not run the README's test command verbatim: {tests!r}"
    assert tests.startswith("python3 -m venv .venv && ") and service.startswith("python3 -m venv .venv && ")


def test_quick_start_mentions_the_dashboard_and_links_the_docs() -> None:
    section = quick_start()
    service_at = section.index(SERVICE_COMMAND)
    assert section.index("http://127.0.0.1:8000/ ", service_at) < section.index("Run the tests")
    for doc in ("docs/API_REFERENCE.md", "docs/ARCHITECTURE.md"):
        assert f"]({doc})" in section, doc
        assert (ROOT / doc).is_file(), doc


def test_quick_start_placeholders_and_camb_sdk_pin() -> None:
    section = quick_start()
    for placeholder in (KEY_PLACEHOLDER, TASK_PLACEHOLDER, URL_PLACEHOLDER):
        assert placeholder in section, placeholder
    pin = re.search(r"`\.venv/bin/pip install (camb-sdk==[\w.]+)`", section)
    assert pin, "the quick start installs camb-sdk with a pinned version"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert pin.group(1) in extras, f"{pin.group(1)} is not the version the tests use: {extras}"
    python = [body for lang, body in fenced_blocks(section) if lang == "python"]
    assert len(python) == 1 and "from camb import CambAI" in python[0]
    compile(python[0], "export.py", "exec")


# --- e2e: run it ------------------------------------------------------------------------------------


def _port_8000_busy() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", 8000))
        except OSError as exc:
            return f"port 8000, which the README's command uses, is busy: {exc}"
    return None


def _copy_repository(destination: Path) -> None:
    """The working tree as a fresh clone would have it (tracked and new files; no venv, data or caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            source = ROOT / name
            top = Path(name).parts[0]
            if not source.is_file() or (top.startswith(".") and top not in {".ci", ".gitignore"}):
                continue
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return
    ignore = shutil.ignore_patterns(".venv", "altdub-data", ".git", "*.egg-info", "__pycache__", ".*cache*", "build")
    shutil.copytree(ROOT, destination, ignore=ignore, dirs_exist_ok=True)


@dataclass
class Service:
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def text(self) -> str:
        return "\n".join(self.output)

    def drain(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, deadline: float) -> str:
        try:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"the service command printed nothing new in time:\n{self.text[-5000:]}")
        if line is None:
            pytest.fail(f"the service command exited with {self.process.wait()}:\n{self.text[-5000:]}")
        return line

    def stop(self) -> None:
        """SIGTERM to the command's process group (bash, pip or altdub), then SIGKILL."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # anything left in the group (FFmpeg)
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def service_copy(tmp_path: Path) -> Iterator[tuple[Path, Service]]:
    """A fresh copy of the repository with the README's service command started in it."""
    busy = _port_8000_busy()
    if busy:
        pytest.skip(busy)
    copy = tmp_path / "altdub"
    copy.mkdir()
    _copy_repository(copy)
    assert (copy / "pyproject.toml").is_file() and not (copy / ".venv").exists()
    process = subprocess.Popen(
        ["bash", "-c", sh_blocks()[0].strip()],
        cwd=copy,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, stopped as a whole
    )
    service = Service(process)
    threading.Thread(target=service.drain, daemon=True).start()
    try:
        yield copy, service
    finally:
        service.stop()


def _bash(script: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _probe_demo_export(path: Path, format_name: str) -> None:
    info = probe(path)
    assert info.format_name == format_name, info.format_name
    assert len(info.audio) == 1 and not info.video
    assert abs(info.duration - DEMO_SECONDS) <= DURATION_TOLERANCE, info.duration


def test_every_setting_is_in_the_configuration_table() -> None:
    """Each ``ALTDUB_*`` setting has its row under "## Configuration", and the table names no setting that is gone."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `ALTDUB_([A-Z0-9_]+)` \|", section, re.M))
    settings = {name.upper() for name in Settings.model_fields}
    assert sorted(settings - documented) == [], "settings missing from the README's configuration table"
    assert sorted(documented - settings) == [], "the README's configuration table names settings that do not exist"


@pytest.mark.e2e
def test_quick_start_as_written(service_copy: tuple[Path, Service]) -> None:
    copy, service = service_copy
    started = time.monotonic()
    timings: dict[str, float] = {}

    # 1. The service command: a venv, pip install, the first start's banner with the key.
    deadline = started + INSTALL_TIMEOUT
    key = None
    while True:
        line = service.next_line(deadline)
        if line.strip() == KEY_BANNER:
            key = service.next_line(deadline).strip()
        elif line.startswith("API docs: "):
            break
    assert key and key.startswith("altdub_"), f"no API key printed:\n{service.text[-3000:]}"
    assert f"Dashboard: {BASE_URL}/" in service.text
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{BASE_URL}/healthz", timeout=1).status_code == 200:
                break
        assert service.process.poll() is None, service.text[-3000:]
        assert time.monotonic() < deadline, f"no /healthz answer:\n{service.text[-3000:]}"
        time.sleep(0.1)
    timings["service command to /healthz"] = time.monotonic() - started
    assert httpx.get(f"{BASE_URL}/", timeout=10).status_code == 200, "the dashboard the README points at"

    # 2. The curl steps, filling in the key, the task id and the output URL as the reader would.
    curl_block = next(block for block in sh_blocks()[2:] if "curl" in block)
    filled = {KEY_PLACEHOLDER: key}
    prelude: list[str] = []  # the variables the reader set in their shell
    for command, comments in commands(curl_block):
        for placeholder, value in filled.items():
            command = command.replace(placeholder, value)
        unfilled = [p for p in (KEY_PLACEHOLDER, TASK_PLACEHOLDER, URL_PLACEHOLDER) if p in command]
        assert not unfilled, f"nothing answered {unfilled} before {command!r}"
        if re.match(r"(export\s+)?\w+=", command):
            prelude.append(command)
            continue
        for _attempt in range(600):
            result = _bash("\n".join([*prelude, command]), copy)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            if not result.stdout.strip():
                break
            body = json.loads(result.stdout)
            if body.get("status") != "PENDING":  # "while it says PENDING ... ask again"
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"still PENDING: {command}")
        for comment in comments:  # the README's sample answer has the keys of the real one
            if comment.startswith("{"):
                sample = json.loads(comment)
                assert set(sample) == set(body), (comment, body)
                if "status" in sample:
                    assert body["status"] == sample["status"], body
        if result.stdout.strip():
            if "task_id" in body:
                filled[TASK_PLACEHOLDER] = body["task_id"]
            if "output_url" in body:
                filled[URL_PLACEHOLDER] = body["output_url"]
    dub = copy / "dub.mp3"
    _probe_demo_export(dub, "mp3")
    timings["service command to dub.mp3 (curl)"] = time.monotonic() - started
    dub.unlink()

    # 3. The CLI line, with the key exported as in the curl block.
    cli_block = next(block for block in sh_blocks()[2:] if "altdub export" in block)
    (cli,) = (command for command, _ in commands(cli_block))
    assert cli == ".venv/bin/altdub export 1 es-es mp3 --wait -o dub.mp3"
    result = _bash("\n".join([*prelude, cli]), copy)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith("saved dub.mp3 ("), result.stdout
    assert "downloading dub.mp3 (" in result.stderr, result.stderr
    _probe_demo_export(dub, "mp3")

    # 4. The camb-sdk script: installed and run as the README says.
    section = quick_start()
    install = re.search(r"`(\.venv/bin/pip install camb-sdk==[\w.]+)`", section).group(1)
    run = re.search(r"`(\.venv/bin/python export\.py)`", section).group(1)
    (script,) = (body for lang, body in fenced_blocks(section) if lang == "python")
    (copy / "export.py").write_text(script)
    installed = _bash(f"{install} -q", copy, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    result = _bash("\n".join([*prelude, run]), copy)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stdout.strip() == "saved dub.flac", result.stdout
    _probe_demo_export(copy / "dub.flac", "flac")

    assert service.process.poll() is None, service.text[-3000:]
    print("quick start timings: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))


# --- always: every document a reader of the repository is pointed to is in it ---------------------


def _documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", _documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_links_and_named_paths_stay_inside_the_repository(document: Path) -> None:
    """A link or a path written as ``../x`` leads outside a checkout (the README once named ../shared/spec)."""
    text = document.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):  # Markdown links
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # http(s), mailto, or a heading of this page
            continue
        linked = (document.parent / target.split("#", 1)[0]).resolve()
        assert linked.is_relative_to(ROOT), f"{document.name} links outside the repository: {target}"
        assert linked.exists(), f"{document.name} links to a missing file: {target}"
    outside = [path for path in re.findall(r"`([^`\s]*\.\./[^`\s]*)`", text) if not path.startswith("http")]
    assert not outside, f"{document.name} names paths outside the repository: {outside}"


def test_the_readme_points_to_the_contract_in_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    assert "](docs/API.md)" in text, "the README links the contract, docs/API.md"
    assert (ROOT / "docs" / "API.md").is_file()


def test_quick_start_says_to_stop_the_service_before_the_tests() -> None:
    """The test suite runs the quick start's own service on port 8000: a service left running makes it skip."""
    section = quick_start()
    tests_command = sh_blocks()[1].strip()
    before = section[section.index("Run the tests") : section.index(tests_command)]
    assert "Ctrl+C" in before and "port 8000" in before, before
