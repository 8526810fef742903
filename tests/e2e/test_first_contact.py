"""What a new user meets first, through a real ``altdub serve`` over HTTP (issue 12, item 6).

- ``/docs`` works without internet: the page and every file it loads come from this origin.
- A file refused at import is named as its sender named it (field and file name), never by the
  server's scratch path (``…/tmp/…/upload-…/part-3``).
- JSON sent without ``Content-Type: application/json`` is a 422 that says to send it.
- ``HEAD`` on downloads and health checks answers as ``GET`` would, without the body.
- A download URL missing any part of its signature is a 403, as a forged one is.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx
import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from tests.conftest import Media
from tests.e2e.conftest import Server, ServerFactory, auth, import_run, import_run_id, request_export, wait_for_task

VENDOR = Path(__file__).resolve().parents[2] / "altdub" / "web" / "vendor" / "swagger-ui"
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
DOWNLOAD_HEADERS = ("x-content-type-options", "content-security-policy", "content-disposition")


@dataclass(frozen=True)
class Served:
    server: Server
    key: str
    run_id: int
    mp3_url: str  # a signed download URL of a finished export


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Served]:
    factory = ServerFactory()
    server = factory(tmp_path_factory.mktemp("altdub-first-contact"), demo=False)
    assert server.api_key, server.text
    run_id = import_run_id(server.base_url, server.api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    answer = request_export(server.base_url, server.api_key, run_id, "mp3").json()
    status = wait_for_task(server.base_url, server.api_key, answer["task_id"]) if "task_id" in answer else answer
    assert status.get("output_url"), status
    yield Served(server, server.api_key, run_id, str(status["output_url"]))
    factory.stop_all()


# --- /docs without internet -----------------------------------------------------------------------------


def test_docs_load_only_same_origin_files_that_answer_with_their_type(served: Served) -> None:
    base = served.server.base_url
    page = httpx.get(f"{base}/docs", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    referenced = set(re.findall(r'(?:src|href)="([^"]+)"', page.text)) | set(
        re.findall(r"url: '([^']+)'", page.text)  # the OpenAPI document the page's script loads
    )
    assert len(referenced) == 4, referenced  # the script, the stylesheet, the icon, /openapi.json
    assert not re.search(r"https?://|//cdn", page.text), "the page names another origin"
    for url in referenced:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = httpx.get(urljoin(base, url), timeout=30)
        assert asset.status_code == 200, (url, asset.status_code)
        suffix = Path(urlsplit(url).path).suffix
        assert asset.headers["content-type"].split(";")[0] == ASSET_TYPES[suffix], (url, asset.headers)
        if url.startswith("/web/vendor/"):  # the package's files, as static files are served: never sniffed
            assert asset.content == (VENDOR / Path(url).name).read_bytes(), url
            assert asset.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{base}/redoc", timeout=30).status_code == 404  # ReDoc would need a CDN: not offered


def test_vendored_swagger_ui_is_the_release_its_readme_names() -> None:
    """The README beside the files gives each one's checksum: the files are the release, unmodified."""
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"\| `([^`]+)` \| `package/[^`]+` \| `([0-9a-f]{64})` \|", readme))
    assert set(listed) == {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
    for name, digest in listed.items():
        data = (VENDOR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        assert len(data) < 2 * 1024 * 1024, name
    assert "Apache License" in (VENDOR / "LICENSE").read_text(encoding="utf-8")


# --- import errors name what the user sent --------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, media: Media) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-files")
    garbage = d / "holiday clip.mp4"
    garbage.write_bytes(media.garbage.read_bytes())
    empty = d / "empty take.wav"
    empty.write_bytes(b"")
    notes = d / "notes.mp3"
    notes.write_text("not media\n" * 200)
    whole = d / "whole.mp4"  # index at the end: cut, it has no index at all
    run_ffmpeg(["-i", file_arg(media.video), "-c", "copy", file_arg(whole)])
    cut = d / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    missing_header = d / "headless.wav"
    missing_header.write_bytes(media.dub_wav.read_bytes()[200:])
    return {"garbage": garbage, "empty": empty, "notes": notes, "cut": cut, "headless": missing_header}


# (files sent, the field refused, what its message must say)
IMPORT_CASES = {
    "random-bytes-as-source": (
        lambda b, m: {"source": b["garbage"], "dub_es-es": m.dub_wav},
        "source",
        '"holiday clip.mp4" is not a media file FFmpeg can read (invalid data found when processing input)',
    ),
    "text-as-dub": (
        lambda b, m: {"source": m.audio_source, "dub_es-es": b["notes"]},
        "dub_es-es",
        '"notes.mp3" is not a media file FFmpeg can read',
    ),
    "empty-dub": (
        lambda b, m: {"source": m.audio_source, "dub_fr-fr": b["empty"]},
        "dub_fr-fr",
        '"empty take.wav" is empty',
    ),
    "truncated-mp4": (
        lambda b, m: {"source": b["cut"], "dub_es-es": m.dub_wav},
        "source",
        '"cut.mp4" is not a media file FFmpeg can read',
    ),
    "wav-without-header-as-background": (
        lambda b, m: {"source": m.audio_source, "dub_es-es": m.dub_wav, "background": b["headless"]},
        "background",
        '"headless.wav"',
    ),
    "video-without-audio": (
        lambda b, m: {"source": m.silent_video, "dub_es-es": m.dub_wav},
        "source",
        '"silent.mp4" has no audio stream',
    ),
}


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_import_errors_name_the_field_and_file_never_a_server_path(
    served: Served, bad_files: dict[str, Path], media: Media, case: str
) -> None:
    build, field, says = IMPORT_CASES[case]
    response = import_run(served.server.base_url, served.key, build(bad_files, media))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field], error
    assert says in error["msg"], error
    for leak in (str(served.server.data_dir), "/tmp/", "part-", "upload-", "Errno"):
        assert leak not in response.text, (leak, response.text)


# --- JSON without its content type ----------------------------------------------------------------------

TYPE_HINT = "the body must be JSON sent with Content-Type: application/json"


@pytest.mark.parametrize(
    ("content_type", "sent_as"),
    [
        (None, "it was sent without a Content-Type"),
        ("text/plain", "it was sent as 'text/plain'"),
        ("application/x-www-form-urlencoded", "it was sent as 'application/x-www-form-urlencoded'"),  # curl -d
        ("text/json", "it was sent as 'text/json'"),
    ],
    ids=["none", "text-plain", "curl-d", "text-json"],
)
def test_json_sent_as_another_type_is_a_422_saying_to_send_application_json(
    served: Served, content_type: str | None, sent_as: str
) -> None:
    headers = auth(served.key) | ({"content-type": content_type} if content_type else {})
    url = f"{served.server.base_url}/dub-alt-format/{served.run_id}/es-es"
    request = httpx.Request("POST", url, content=b'{"output_format": "wav"}', headers=headers)
    assert request.headers.get("content-type") == content_type  # httpx adds none to raw content
    with httpx.Client(timeout=30) as client:
        response = client.send(request)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["header", "content-type"], error
    assert error["msg"] == f"{TYPE_HINT} ({sent_as})", error


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"])
def test_json_with_a_json_content_type_is_accepted(served: Served, content_type: str) -> None:
    response = httpx.post(
        f"{served.server.base_url}/dub-alt-format/{served.run_id}/es-es",
        content=b'{"output_format": "mp3"}',
        headers={**auth(served.key), "content-type": content_type},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) <= {"output_url", "task_id"}


# --- HEAD answered as GET, without a body ---------------------------------------------------------------


def raw_request(base_url: str, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, every byte after the headers) of one request on its own connection, read to its close."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, rest


def same_answer_without_body(base_url: str, target: str) -> tuple[int, dict[str, str]]:
    """HEAD and GET of ``target``: the same status and headers (but the date), HEAD without its body."""
    get_status, get_headers, get_body = raw_request(base_url, "GET", target)
    head_status, head_headers, head_body = raw_request(base_url, "HEAD", target)
    assert head_status == get_status, (target, head_status, get_status)
    assert head_body == b"", (target, head_body[:200])
    assert int(get_headers["content-length"]) == len(get_body) > 0
    for headers in (get_headers, head_headers):
        headers.pop("date", None)
    assert head_headers == get_headers, target
    return head_status, head_headers


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_on_health_answers_as_get(served: Served, path: str) -> None:
    status, headers = same_answer_without_body(served.server.base_url, path)
    assert status == 200 and headers["content-type"] == "application/json"


def test_head_on_a_download_answers_as_get(served: Served) -> None:
    parts = urlsplit(served.mp3_url)
    target = f"{parts.path}?{parts.query}"
    status, headers = same_answer_without_body(served.server.base_url, target)
    assert status == 200
    assert headers["content-type"] == "audio/mpeg"
    assert headers["content-disposition"].startswith('attachment; filename="run-')
    assert headers["etag"] and headers["accept-ranges"] == "bytes"
    assert headers["x-content-type-options"] == "nosniff"


# --- a download URL missing its signature ---------------------------------------------------------------


@pytest.mark.parametrize(
    "drop", [("signature",), ("expires",), ("filename",), ("filename", "expires", "signature")], ids="-".join
)
def test_a_download_url_missing_a_signature_part_is_a_403_as_a_forged_one_is(
    served: Served, drop: tuple[str, ...]
) -> None:
    parts = urlsplit(served.mp3_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in drop]
    forged = [(k, "0" * 64 if k == "signature" else v) for k, v in parse_qsl(parts.query)]
    for kept in (query, forged):
        target = parts.path + (f"?{urlencode(kept)}" if kept else "")
        status, headers = same_answer_without_body(served.server.base_url, target)
        assert status == 403, (target, status)
        assert all(name in headers for name in DOWNLOAD_HEADERS), headers
        assert headers["content-type"] == "application/json"
        body = httpx.get(served.server.base_url + target, timeout=30).json()
        assert body == {"detail": "Signature invalid or expired"}
