"""Issue 11, class 5: downloads are data, never documents; thumbnails are not shared across keys.

Through a real ``altdub serve``: dubs uploaded as ``dub.html``, ``dub.svg`` and ``dub.js`` (the
last an MP3 whose bytes are also a script) are served with the type of what probing found in them,
named with that type's extension, and with ``nosniff``, an attachment disposition and a sandboxing
CSP, on every answer of ``/files`` (200, 206, 403, 404) and for every URL the API hands out.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from altdub.media.probe import probe
from altdub.media.synth import make_tone, make_video
from altdub.storage.signing import URLSigner
from tests.e2e.conftest import Server, ServerFactory, auth, create_key, import_run_id, request_export
from tests.reliability.conftest import wait_task

pytestmark = pytest.mark.e2e

SECONDS = 4.0
SANDBOX = "default-src 'none'; sandbox"
SCRIPT_TAIL = b"*/window.altdubPolyglotRan = true;\n"
SRT = "1\n00:00:00,000 --> 00:00:01,000\nHola\n\n2\n00:00:01,000 --> 00:00:02,000\n<script>alert(1)</script>\n"


def polyglot_mp3(source: Path, target: Path) -> Path:
    """An MP3 (frames without an ID3 tag) inside a JavaScript comment, followed by a statement.

    A browser that ran it as a script would set ``window.altdubPolyglotRan``; FFmpeg finds an MP3.
    """
    data = source.read_bytes()
    if data[:3] == b"ID3":  # skip the tag: its header bytes would not parse as a comment's start
        data = data[10 + int.from_bytes(bytes(b & 0x7F for b in data[6:10]), "big") :]
    target.write_bytes(b"/*" + data.replace(b"*/", b"*.") + SCRIPT_TAIL)
    assert probe(target).format_name == "mp3"
    return target


@dataclass(frozen=True)
class Served:
    server: Server
    key: str
    runs: dict[str, int]  # uploaded dub name -> run id
    expected: dict[str, tuple[str, str]]  # uploaded dub name -> (content type, extension) from the probe
    video_run: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("downloads-media")
    source = make_tone(folder / "source.wav", SECONDS, tone_hz=330)
    dubs = {
        "dub.html": (make_tone(folder / "wav.wav", SECONDS), ("audio/wav", "wav")),
        "dub.svg": (make_tone(folder / "flac.flac", SECONDS, codec="flac"), ("audio/flac", "flac")),
        "dub.js": (
            polyglot_mp3(make_tone(folder / "mp3.mp3", SECONDS, codec="libmp3lame"), folder / "polyglot"),
            ("audio/mpeg", "mp3"),
        ),
    }
    transcript = folder / "subs.srt"
    transcript.write_text(SRT, encoding="utf-8")
    factory = ServerFactory()
    try:
        server = factory(tmp_path_factory.mktemp("downloads-data"))
        assert server.api_key
        runs: dict[str, int] = {}
        for name, (path, _) in dubs.items():
            named = folder / name
            shutil.copy(path, named)
            runs[name] = import_run_id(
                server.base_url,
                server.api_key,
                {"source": source, "dub_es-es": named, "transcript_es-es": transcript},
            )
        video = make_video(folder / "video.mp4", SECONDS)
        video_run = import_run_id(server.base_url, server.api_key, {"source": video, "dub_es-es": dubs["dub.html"][0]})
        yield Served(server, server.api_key, runs, {n: e for n, (_, e) in dubs.items()}, video_run)
    finally:
        factory.stop_all()


def assert_data_headers(response: httpx.Response) -> None:
    """What every answer of /files carries, whatever its status."""
    assert response.headers["x-content-type-options"] == "nosniff", response.headers
    assert response.headers["content-security-policy"] == SANDBOX, response.headers
    assert response.headers["content-disposition"].startswith("attachment"), response.headers


def check_download(url: str, content_type: str, extension: str) -> bytes:
    """200, 206 and 403 of a signed URL: the type and name from the probe, the data headers on each."""
    whole = httpx.get(url, timeout=30)
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-type"] == content_type
    assert_data_headers(whole)
    disposition = whole.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith(f'.{extension}"'), disposition

    part = httpx.get(url, headers={"Range": "bytes=0-9"}, timeout=30)
    assert part.status_code == 206
    assert part.content == whole.content[:10]
    assert part.headers["content-type"] == content_type
    assert_data_headers(part)

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for tampered in (
        {**query, "filename": query["filename"].rsplit(".", 1)[0] + ".html"},  # the name decides the type
        {**query, "signature": "0" * 64},
    ):
        forbidden = httpx.get(urlunsplit(parts._replace(query=urlencode(tampered))), timeout=30)
        assert forbidden.status_code == 403
        assert_data_headers(forbidden)
    return whole.content


@pytest.mark.parametrize("name", ["dub.html", "dub.svg", "dub.js"])
def test_an_uploaded_dub_is_served_with_the_type_probing_found(served: Served, name: str) -> None:
    base, key = served.server.base_url, served.key
    result = httpx.get(f"{base}/dub-result/{served.runs[name]}", headers=auth(key), timeout=30)
    assert result.status_code == 200, result.text
    audio_url = result.json()["es-es"]["audio_url"]
    content_type, extension = served.expected[name]
    body = check_download(audio_url, content_type, extension)
    if name == "dub.js":  # the very bytes uploaded: a script, served as audio that is never sniffed
        assert body.startswith(b"/*") and body.endswith(SCRIPT_TAIL)


@pytest.mark.parametrize("name", ["dub.html", "dub.js"])
def test_every_url_the_api_hands_out_is_served_as_data(served: Served, name: str) -> None:
    base, key, run_id = served.server.base_url, served.key, served.runs[name]
    answer = request_export(base, key, run_id, "mp3")
    assert answer.status_code == 200, answer.text
    status = wait_task(base, key, answer.json()["task_id"]) if "task_id" in answer.json() else answer.json()
    assert status.get("status", "SUCCESS") == "SUCCESS", status
    check_download(status["output_url"], "audio/mpeg", "mp3")

    for text_format, content_type in (
        ("srt", "application/x-subrip; charset=utf-8"),
        ("vtt", "text/vtt; charset=utf-8"),
        ("txt", "text/plain; charset=utf-8"),
    ):
        response = httpx.get(
            f"{base}/transcript/{run_id}/es-es",
            params={"format_type": text_format, "data_type": "file"},
            headers=auth(key),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        check_download(response.json()["transcript_url"], content_type, text_format)


def test_files_answers_that_find_nothing_carry_the_data_headers(served: Served) -> None:
    base = served.server.base_url
    secret = (served.server.data_dir / "secret.key").read_text().strip()
    missing = urlencode(URLSigner(secret, 3600).sign("runs/gone/dub.mp3", "run-1_es-es.mp3"))
    for path, status in (
        ("/files/runs/gone/dub.mp3?" + missing, 404),  # signed, but nothing is there
        ("/files/nothing/here.mp3?filename=a.mp3&expires=1&signature=00", 403),
        ("/files/x.mp3", 403),  # no signature at all: refused as a forged one is
    ):
        response = httpx.get(base + path, timeout=30)
        assert response.status_code == status, (path, response.text)
        assert_data_headers(response)


def test_a_thumbnail_is_revalidated_with_the_key_of_each_request(served: Served) -> None:
    base, key = served.server.base_url, served.key
    url = f"{base}/runs/{served.video_run}/thumbnail"
    first = httpx.get(url, headers=auth(key), timeout=60)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["cache-control"] == "private, no-cache"  # stored, but never reused without asking
    assert first.headers["vary"] == "x-api-key"
    assert first.headers["x-content-type-options"] == "nosniff"
    etag = first.headers["etag"]

    again = httpx.get(url, headers={**auth(key), "If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag

    # A browser revalidating its copy with another workspace's key, or with none, gets no picture.
    other_key = create_key(served.server.data_dir, "other")
    for headers in (auth(other_key), {}):
        refused = httpx.get(url, headers={**headers, "If-None-Match": etag}, timeout=30)
        assert refused.status_code in (401, 404) and refused.content != first.content
        assert "etag" not in refused.headers
