"""Issue 11, class 4: the server's memory is bounded by its configuration, not by what a client sends.

Each test reads the resident size of a real ``altdub serve`` before and after an attack (padded
option strings, oversized bodies, endless headers) and bounds the growth; the timing tests check
that idle and stalled half-requests are closed while a slow upload that keeps moving goes through.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.synth import make_tone
from altdub.service.context import IdentityCache
from tests.e2e.conftest import Server, ServerFactory, auth, import_run_id, wait_for_task

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
GROWTH_LIMIT = 32 * MIB
SECONDS = 2.0


def rss(server: Server) -> int:
    return psutil.Process(server.process.pid).memory_info().rss


def host_port(server: Server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``timeout``)."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone(tmp_path_factory.mktemp("memory-media") / "tone.wav", SECONDS)


@pytest.fixture
def server(servers: ServerFactory, tmp_path: Path) -> Iterator[Server]:
    """A server with short header and body timeouts, so that the timing tests take seconds."""
    env = {"ALTDUB_HEADER_TIMEOUT": "1", "ALTDUB_BODY_IDLE_TIMEOUT": "1", "ALTDUB_WORKERS": "1"}
    yield servers(tmp_path / "data", env=env)


def test_identity_cache_is_bounded_in_bytes() -> None:
    cache = IdentityCache(max_bytes=64 * 1024)
    for number in range(20_000):
        cache.put(number.to_bytes(32, "big"), f"{number:064x}")
        assert cache.size_bytes <= 64 * 1024
    assert 100 < len(cache) < 20_000
    assert cache.get((19_999).to_bytes(32, "big")) == f"{19_999:064x}"  # the newest stay
    assert cache.get((0).to_bytes(32, "big")) is None  # the oldest went


def test_padded_option_strings_are_not_kept(servers: ServerFactory, tmp_path: Path, tone: Path) -> None:
    """100 exports asked with 2 MiB of padding each (a body limit raised to let them in) keep no padding."""
    server = servers(tmp_path / "data", env={"ALTDUB_MAX_JSON_BYTES": str(3 * MIB), "ALTDUB_WORKERS": "1"})
    assert server.api_key
    run_id = import_run_id(server.base_url, server.api_key, {"source": tone, "dub_es-es": tone})
    url = f"{server.base_url}/dub-alt-format/{run_id}/es-es"

    def ask(client: httpx.Client, padding: int) -> None:
        body = json.dumps({"output_format": "mp3", "audio_bitrate": "128k" + " " * padding})
        response = client.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text[:300]

    with httpx.Client(headers=auth(server.api_key), timeout=60) as client:
        for number in range(5):  # warm up: first-use allocations are not growth
            ask(client, 2 * MIB + number)
        before = rss(server)
        for number in range(100):  # each a different request: a different cache key
            ask(client, 2 * MIB + 100 + number)
        after = rss(server)
    assert after - before < GROWTH_LIMIT, f"resident size grew by {(after - before) / MIB:.0f} MiB"


def test_oversized_bodies_are_refused_before_they_are_read(server: Server, tone: Path) -> None:
    assert server.api_key
    url = f"{server.base_url}/dub-alt-format/1/es-es"
    headers = {**auth(server.api_key), "content-type": "application/json"}

    # Declared too large: answered at once, before a byte of the body is sent.
    with socket.create_connection(host_port(server)) as sock:
        sock.sendall(
            b"POST /dub-alt-format/1/es-es HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1073741824\r\n\r\n"
        )
        answer = read_until_closed(sock, timeout=5)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"65536 byte limit" in answer

    def chunked(total: int) -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"output_format": "mp3", "audio_bitrate": "128k'
        for _ in range(total // MIB):
            yield b" " * MIB

    with httpx.Client(timeout=60) as client:
        response = client.post(url, content=chunked(8 * MIB), headers=headers)
        assert response.status_code == 413, response.text
        assert response.json() == {"detail": "request body is larger than the 65536 byte limit"}
        before = rss(server)
        for _ in range(30):
            assert client.post(url, content=chunked(8 * MIB), headers=headers).status_code == 413
            assert client.post(url, content=b"[" * (MIB + 1), headers=headers).status_code == 413
        after = rss(server)
    assert after - before < GROWTH_LIMIT, f"resident size grew by {(after - before) / MIB:.0f} MiB"

    # Under the limit, a body is read as before; an import's upload (MiBs) has its own limit.
    run_id = import_run_id(server.base_url, server.api_key, {"source": tone, "dub_es-es": tone})
    assert tone.stat().st_size > 4 * 65536  # each file of the import is well over the JSON limit
    within = json.dumps({"output_format": "mp3", "audio_bitrate": "128k" + " " * 60_000})
    response = httpx.post(f"{server.base_url}/dub-alt-format/{run_id}/es-es", content=within, headers=headers)
    assert response.status_code == 200, response.text


def _endless_headers(server: Server, line: bytes, results: list[bytes]) -> None:
    """Header lines until the server refuses; what it answered."""
    with socket.create_connection(host_port(server)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(64 * MIB // len(line)):
                sock.sendall(line)
        except OSError:  # closed by the server: its answer was sent before
            pass
        try:
            results.append(read_until_closed(sock, timeout=5))
        except OSError:  # reset before the answer could be read back
            results.append(b"reset")


def test_endless_headers_are_refused_and_not_kept(server: Server) -> None:
    before = rss(server)
    results: list[bytes] = []
    lines = [b"X-Pad: " + b"a" * 1000 + b"\r\n"] * 6 + [b"a" * 8192]  # many lines; one line without end
    threads = [threading.Thread(target=_endless_headers, args=(server, line, results)) for line in lines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    after = rss(server)
    assert len(results) == len(lines)
    assert any(r.startswith(b"HTTP/1.1 431 ") for r in results), results
    assert all(r.startswith(b"HTTP/1.1 431 ") or r == b"reset" for r in results), results
    assert after - before < GROWTH_LIMIT, f"resident size grew by {(after - before) / MIB:.0f} MiB"
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200


def test_idle_and_slow_half_requests_are_closed(server: Server) -> None:
    """A header timeout of 1 s: silence, half a request, and headers dribbled a byte at a time."""
    started = time.monotonic()
    with socket.create_connection(host_port(server)) as silent:
        assert read_until_closed(silent, timeout=5) == b""
    assert time.monotonic() - started < 4

    with socket.create_connection(host_port(server)) as half:
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert read_until_closed(half, timeout=5).startswith(b"HTTP/1.1 408 ")

    started = time.monotonic()
    with socket.create_connection(host_port(server)) as dribble:
        answer = b""
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                dribble.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass
        answer = read_until_closed(dribble, timeout=5)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.monotonic() - started < 4  # bytes kept coming: the limit is on the whole header time


def test_a_stalled_body_is_closed(server: Server) -> None:
    assert server.api_key
    with socket.create_connection(host_port(server)) as sock:
        sock.sendall(
            b"POST /dub-alt-format/1/es-es HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"x-api-key: {server.api_key}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"output_format"'
        )
        started = time.monotonic()
        assert read_until_closed(sock, timeout=5) == b""  # no answer: the request never came whole
        assert time.monotonic() - started < 4
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200


def test_a_slow_upload_that_keeps_moving_goes_through(server: Server, tone: Path) -> None:
    """An import sent over 3 s in pieces 0.25 s apart, with a 1 s body timeout: it is not cut."""
    assert server.api_key
    prepared = httpx.Request(
        "POST",
        f"{server.base_url}/runs",
        data={"source_language": "en-us"},
        files={"source": ("a.wav", tone.read_bytes()), "dub_es-es": ("b.wav", tone.read_bytes())},
    )
    body = prepared.read()
    pieces = 12
    size = len(body) // pieces + 1

    def slowly() -> Iterator[bytes]:
        for offset in range(0, len(body), size):
            time.sleep(0.25)
            yield body[offset : offset + size]

    started = time.monotonic()
    response = httpx.post(
        f"{server.base_url}/runs",
        content=slowly(),
        headers={**auth(server.api_key), "content-type": prepared.headers["content-type"]},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    assert time.monotonic() - started > 2.5  # longer than both timeouts together


def test_connections_beyond_the_limit_are_answered_503(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers(tmp_path / "data", env={"ALTDUB_MAX_CONNECTIONS": "4"})
    held = [socket.create_connection(host_port(server)) for _ in range(4)]
    try:
        time.sleep(0.2)
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200


def test_a_package_zip_is_streamed_not_built(servers: ServerFactory, tmp_path: Path) -> None:
    """Issue 13: package.zip of a package of ~100 MB goes out while the server's resident size stays put.

    The source is lossless noise (incompressible, so the package is as large as the source); the zip
    is read in small chunks over real HTTP while the server's RSS is sampled: a zip built whole, in
    memory, would raise it by the package's size.
    """
    server = servers(tmp_path / "data", env={"ALTDUB_WORKERS": "1"})
    assert server.api_key
    seconds = 10
    source = tmp_path / "noise.mp4"
    run_ffmpeg([
        "-f", "lavfi", "-i", f"color=gray:size=640x360:rate=25:d={seconds},noise=alls=100:allf=t+u",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-g", "25",
        "-c:a", "aac", "-shortest", file_arg(source),
    ])  # fmt: skip
    dub = make_tone(tmp_path / "dub.wav", seconds, tone_hz=550)
    run_id = import_run_id(server.base_url, server.api_key, {"source": source, "dub_es-es": dub})
    answer = httpx.post(
        f"{server.base_url}/runs/{run_id}/exports",
        headers=auth(server.api_key),
        json={"output_format": "hls", "languages": ["es-es"]},
        timeout=60,
    ).json()
    output_url = (
        answer.get("output_url") or wait_for_task(server.base_url, server.api_key, answer["task_id"], 120)["output_url"]
    )
    assert isinstance(output_url, str)
    url = output_url.rsplit("/", 1)[0] + "/package.zip"

    with httpx.Client(timeout=60) as client:
        client.get(output_url).raise_for_status()  # warm up the package routes
        before = peak = rss(server)
        target = tmp_path / "package.zip"
        with client.stream("GET", url) as response, target.open("wb") as fh:
            assert response.status_code == 200
            length = int(response.headers["content-length"])
            for chunk in response.iter_raw(256 * 1024):
                fh.write(chunk)
                peak = max(peak, rss(server))
    assert target.stat().st_size == length
    assert length > 3 * GROWTH_LIMIT, f"the package is too small to show anything: {length / MIB:.0f} MiB"
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        assert {"master.m3u8", "manifest.mpd"} <= set(archive.namelist())
    assert peak - before < GROWTH_LIMIT, (
        f"resident size grew by {(peak - before) / MIB:.0f} MiB for a zip of {length / MIB:.0f} MiB"
    )
