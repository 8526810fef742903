"""Issue 11, classes 1 and 2: hostile requests sent to a real ``altdub serve`` over HTTP; never a 5xx.

- JSON bodies with non-finite numbers, numbers too long to read, nesting too deep, lone surrogates,
  control characters, bytes that are not UTF-8: a 422 naming the field (or the body);
- multipart bodies with a boundary RFC 2046 does not allow, parts without a name, text that is not
  UTF-8, a body cut before its closing boundary: a 422 naming ``header.content-type`` or the body;
- export requests, reads and deletes racing a ``DELETE`` of their run: 200, 204 or 404, and every
  connection answered;
- run names and transcripts with control characters (or, in names, bidi overrides): a 422 naming
  the field; every name and transcript accepted exports, its title read back intact.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
import pytest

from altdub.media.synth import make_tone, make_video
from tests.e2e.conftest import Server, ServerFactory, auth, import_run, import_run_id
from tests.reliability.conftest import files_under, request_export, wait_task

pytestmark = pytest.mark.e2e

SECONDS = 2.0
OPTION_FIELDS = ["audio_bitrate", "sample_rate", "channels", "loudness", "stem", "include_original_audio", "subtitles"]
TRANSCRIPT = '[{"start": 0.1, "end": 1.0, "text": "hola", "speaker": "Ana"}]'
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@dataclass(frozen=True)
class Target:
    server: Server
    key: str
    video: Path
    dub: Path
    run_id: int  # a video run with a transcript, for the export requests


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    directory = tmp_path_factory.mktemp("hostile-requests")
    video = make_video(directory / "video.mp4", SECONDS)
    dub = make_tone(directory / "dub.wav", SECONDS, tone_hz=550)
    factory = ServerFactory()
    try:
        # The delete races queue hundreds of exports in one workspace: above the pending limit (its 429 is
        # tests/reliability/test_fairness.py's), so that each answer shows only the race. Bodies of up to
        # 1 MiB are read (the default 64 KiB limit's 413 is tests/reliability/test_memory.py's), so that
        # 100,000-deep nesting and 100 k strings reach the decoder and the validation they attack.
        env = {"ALTDUB_WORKERS": "1", "ALTDUB_MAX_PENDING_TASKS": "10000", "ALTDUB_MAX_JSON_BYTES": str(1024 * 1024)}
        server = factory(directory / "data", env=env)
        assert server.api_key
        run_id = import_run_id(
            server.base_url, server.api_key, {"source": video, "dub_es-es": dub}, **{"transcript_es-es": TRANSCRIPT}
        )
        yield Target(server, server.api_key, video, dub, run_id)
    finally:
        factory.stop_all()


def post_json(target: Target, raw: bytes | str, run_id: int | None = None, language: str = "es-es") -> httpx.Response:
    """An export request whose body is sent byte for byte as given (not re-encoded by a JSON library)."""
    body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return httpx.post(
        f"{target.server.base_url}/dub-alt-format/{run_id or target.run_id}/{language}",
        content=body,
        headers={**auth(target.key), "content-type": "application/json"},
        timeout=30,
    )


def error_locs(response: httpx.Response) -> list[list[Any]]:
    """The ``loc`` of each error of a 422 of FastAPI's shape (after checking that shape)."""
    assert response.status_code == 422, f"{response.status_code}: {response.text[:500]}"
    detail = response.json()["detail"]
    assert detail and all({"loc", "msg", "type"} <= set(error) for error in detail), response.text[:500]
    return [error["loc"] for error in detail]


# --- class 1: JSON bodies ---------------------------------------------------------------------------


def test_non_finite_numbers_in_an_export_body_are_a_422_naming_the_field(target: Target) -> None:
    """NaN, Infinity, -Infinity, 1e400 and -1e400 (read as infinities) in every field of the body."""
    cases = 0
    for number in NON_FINITE:
        for field in ["output_format", *OPTION_FIELDS, "unknown_key"]:
            body = {"output_format": '"mp3"'} | {field: number}
            raw = "{" + ",".join(f'"{k}":{v}' for k, v in body.items()) + "}"
            response = post_json(target, raw)
            assert ["body", field] in error_locs(response), f"{raw}: {response.text}"
            cases += 1
        assert error_locs(post_json(target, number)) == [["body"]]  # the whole body a number
        assert error_locs(post_json(target, f"[{number}]")) == [["body"]]  # a list of it
        cases += 2
    assert cases == 5 * 11


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"output_format":"mp3","sample_rate":' + "9" * 5000 + "}", "unreadable number"),
        ('{"output_format":"mp3","x":' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ("[" * 100_000, "nested too deeply"),
        (b'{"output_format":"mp3\xff\xfe"}', "not UTF-8"),
        ('{"output_format":"mp3"', "Expecting"),
        ("", None),  # no body at all: the required body is missing
    ],
    ids=["5000-digit-int", "deep-nesting", "unclosed-deep-nesting", "not-utf8", "truncated", "empty"],
)
def test_json_that_cannot_be_decoded_is_a_422_naming_the_body(target: Target, raw: str | bytes, reason: str) -> None:
    response = post_json(target, raw)
    locs = error_locs(response)
    assert all(loc[0] == "body" for loc in locs), response.text[:500]
    if reason:
        assert reason in response.text, response.text[:500]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"output_format":"\\ud800"}', "output_format"),  # a lone surrogate: valid JSON, not UTF-8 text
        ('{"output_format":"mp3","audio_bitrate":"\\udfff128k"}', "audio_bitrate"),
        ('{"output_format":"mp3","\\ud800":1}', None),
        ('{"output_format":"mp3","audio_bitrate":"128k\\u0000"}', "audio_bitrate"),
        ('{"output_format":"mp3","audio_bitrate":"\\u001b[31m128k"}', "audio_bitrate"),
        ('{"output_format":"mp3","loudness":"\\u202eebu_r128"}', "loudness"),
        ('{"output_format":"mp3","audio_bitrate":"' + "9" * 100_000 + 'k"}', "audio_bitrate"),
        ('{"output_format":"mp3","sample_rate":' + "9" * 60 + "}", "sample_rate"),
        ('{"output_format":"mp3","channels":-' + "9" * 60 + "}", "channels"),
        ('{"output_format":"mp3","sample_rate":1e308}', "sample_rate"),
    ],
    ids=[
        "surrogate-format",
        "surrogate-bitrate",
        "surrogate-key",
        "nul",
        "escape",
        "bidi-override",
        "100k-string",
        "60-digit-int",
        "60-digit-negative",
        "1e308",
    ],
)
def test_odd_values_in_an_export_body_are_a_422_naming_the_field(target: Target, raw: str, field: str | None) -> None:
    locs = error_locs(post_json(target, raw))
    assert all(loc[0] == "body" for loc in locs)
    if field:
        assert ["body", field] in locs, locs


@pytest.mark.parametrize(
    ("content_type", "raw", "loc"),
    [
        ("text/plain", b"\xff\xfe", ["header", "content-type"]),
        ("application/octet-stream", b"\x00\xff", ["header", "content-type"]),
        ("application/x-www-form-urlencoded", b"output_format=%ff", ["header", "content-type"]),
        ("application/vnd.altdub+json", b"NaN", ["body"]),
        ("application/json; charset=latin-1", b'{"output_format":"mp3\xe9"}', ["body"]),
    ],
    ids=["text-not-utf8", "octets", "form", "json-suffix-nan", "latin1-json"],
)
def test_bodies_that_are_not_json_are_a_422_naming_the_body_or_its_type(
    target: Target, content_type: str, raw: bytes, loc: list[str]
) -> None:
    """Before the fix, the 422 echoing non-UTF-8 bytes (or NaN) could not be encoded: a 500.

    A body of another declared type is refused for its type (send application/json), whatever it holds.
    """
    response = httpx.post(
        f"{target.server.base_url}/dub-alt-format/{target.run_id}/es-es",
        content=raw,
        headers={**auth(target.key), "content-type": content_type},
        timeout=30,
    )
    assert all(found[: len(loc)] == loc for found in error_locs(response)), response.text


@pytest.mark.parametrize(
    "language",
    ["%00", "es%00es", "%ED%A0%80", "%E2%80%AEes-es", "x" * 10_000, "9" * 400, "-1"],
    ids=["nul", "nul-inside", "surrogate-bytes", "bidi-override", "10k-chars", "400-digits", "negative"],
)
def test_hostile_languages_in_the_path_are_a_4xx(target: Target, language: str) -> None:
    response = post_json(target, '{"output_format":"mp3"}', language=language)
    assert response.status_code in (404, 422), response.text[:500]
    if response.status_code == 422:
        assert ["path", "language"] in error_locs(response)


# --- class 1: multipart bodies ----------------------------------------------------------------------


def raw_request(server: Server, key: str, content_type: bytes, body: bytes) -> tuple[int, bytes]:
    """POST /runs over a plain socket, headers byte for byte (HTTP clients refuse to send some of them)."""
    address = urlsplit(server.base_url)
    head = (
        b"POST /runs HTTP/1.1\r\nHost: " + address.netloc.encode() + b"\r\nx-api-key: " + key.encode() + b"\r\n"
        b"Content-Type: " + content_type + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def form(boundary: bytes, *parts: bytes, end: bool = True) -> bytes:
    """A multipart body of ``parts`` (each: headers, blank line, content)."""
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary + b"--\r\n" if end else b"")


def field(name: bytes, value: bytes, extra: bytes = b"") -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"' + extra + b"\r\n\r\n" + value


LANGUAGE = field(b"source_language", b"en-us")
MULTIPART_CASES = {
    # name: (Content-Type, body, the loc the 422 must name)
    "boundary-257": (b"multipart/form-data; boundary=" + b"a" * 257, form(b"a" * 257, LANGUAGE), "header"),
    "boundary-1000": (b"multipart/form-data; boundary=" + b"b" * 1000, b"--" + b"b" * 1000, "header"),
    "boundary-71": (b"multipart/form-data; boundary=" + b"c" * 71, form(b"c" * 71, LANGUAGE), "header"),
    "boundary-star": (b"multipart/form-data; boundary=ab*cd", form(b"ab*cd", LANGUAGE), "header"),
    "boundary-tab": (b'multipart/form-data; boundary="ab\tcd"', form(b"ab\tcd", LANGUAGE), "header"),
    "boundary-latin1": (b"multipart/form-data; boundary=\xe9t\xe9", form(b"\xe9t\xe9", LANGUAGE), "header"),
    "boundary-trailing-space": (b'multipart/form-data; boundary="ab "', form(b"ab ", LANGUAGE), "header"),
    "boundary-empty": (b'multipart/form-data; boundary=""', form(b"", LANGUAGE), "header"),
    "no-boundary": (b"multipart/form-data", form(b"ab", LANGUAGE), "header"),
    "not-multipart": (b"application/json", b'{"source_language": "en-us"}', "header"),
    "no-content-disposition": (b"multipart/form-data; boundary=ab", form(b"ab", b"X-Junk: 1\r\n\r\nv"), "body"),
    "no-name": (b"multipart/form-data; boundary=ab", form(b"ab", b"Content-Disposition: form-data\r\n\r\nv"), "body"),
    "name-100k": (b"multipart/form-data; boundary=ab", form(b"ab", field(b"n" * 100_000, b"v")), "body"),
    "headers-100k": (b"multipart/form-data; boundary=ab", form(b"ab", b"X: " + b"x" * 100_000 + b"\r\n\r\nv"), "body"),
    "name-nul": (b"multipart/form-data; boundary=ab", form(b"ab", LANGUAGE, field(b"name\x00", b"v")), "body"),
    "text-latin1": (b"multipart/form-data; boundary=ab", form(b"ab", LANGUAGE, field(b"name", b"caf\xe9")), "body"),
    "text-surrogate": (
        b"multipart/form-data; boundary=ab",
        form(b"ab", LANGUAGE, field(b"name", "x\ud800".encode("utf-8", "surrogatepass"))),
        "body",
    ),
    "charset-junk": (
        b"multipart/form-data; boundary=ab; charset=nonsense",
        form(b"ab", LANGUAGE, field(b"name", b"\xff", b"\r\nContent-Type: text/plain; charset=klingon")),
        "body",
    ),
    "no-closing-boundary": (b"multipart/form-data; boundary=ab", form(b"ab", LANGUAGE, end=False), "body"),
    "garbage": (b"multipart/form-data; boundary=ab", b"\x00" * 1000, "body"),
    "empty": (b"multipart/form-data; boundary=ab", b"", "body"),
}


@pytest.mark.parametrize("control", [b"\x00", b"\x01", b"\x7f", b"\r"], ids=["nul", "soh", "del", "cr"])
def test_control_characters_in_the_content_type_are_refused_by_the_http_parser(target: Target, control: bytes) -> None:
    """Before the app: the server's HTTP parser answers 400 to a header line HTTP does not allow."""
    content_type = b"multipart/form-data; boundary=ab" + control + b"cd"
    status, answer = raw_request(target.server, target.key, content_type, form(b"ab" + control + b"cd", LANGUAGE))
    assert status == 400, answer[:500]


@pytest.mark.parametrize("case", list(MULTIPART_CASES))
def test_malformed_multipart_is_a_422_naming_the_header_or_the_body(target: Target, case: str) -> None:
    content_type, body, where = MULTIPART_CASES[case]
    status, answer = raw_request(target.server, target.key, content_type, body)
    assert status == 422, f"{status}: {answer[:500]!r}"
    locs = [error["loc"] for error in json.loads(answer)["detail"]]
    expected = ["header", "content-type"] if where == "header" else ["body"]
    assert all(loc[: len(expected)] == expected for loc in locs), locs
    assert files_under(target.server.data_dir / "tmp") == []  # nothing staged is kept


def test_a_file_name_with_control_characters_is_stored_cleaned(target: Target) -> None:
    """The name a file part carries is untrusted: control characters never reach the run's records."""
    boundary = b"x7q"
    dub = target.dub.read_bytes()
    body = form(
        boundary,
        LANGUAGE,
        field(b"dub_es-es", dub, b'; filename="dub\x00\x1b[31m\xe2\x80\xae.wav"\r\nContent-Type: audio/wav'),
    )
    status, answer = raw_request(target.server, target.key, b"multipart/form-data; boundary=" + boundary, body)
    assert status == 201, answer[:500]
    run = json.loads(answer)
    assert all(c.isprintable() for c in run["name"] + run["files"][0]["original_name"]), run


# --- class 1: races with a DELETE of the run -------------------------------------------------------


def _hammer(
    server: Server, key: str, requests: list[tuple[str, str, dict[str, Any] | None]], threads: int
) -> Counter[str]:
    """Send ``requests`` from ``threads`` keep-alive connections; count each answer's status (or error)."""
    answers: Counter[str] = Counter()
    lock = threading.Lock()
    queue = iter(requests)

    def client() -> None:
        with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=30) as http:
            while True:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                method, path, body = item
                try:
                    status = str(http.request(method, path, json=body).status_code)
                except httpx.HTTPError as exc:  # a dropped connection: what a 500 did here before
                    status = type(exc).__name__
                with lock:
                    answers[status] += 1

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


def race_deletes(
    server: Server, key: str, files: dict[str, Path], tasks_of: Callable[[int], int], rounds: int = 4
) -> None:
    """Each round: 8 connections send distinct export requests (each creates a task) and every read of a new
    run, while 3 DELETEs of the run race each other. Every answer must be a 200, 204 or 404; nothing of the
    run may be left (no task inserted after it was gone, no file written into its folder)."""
    totals: Counter[str] = Counter()
    run_folders = server.data_dir / "files" / "w1" / "runs"
    for round_number in range(rounds):
        kept = files_under(run_folders)
        run_id = import_run_id(server.base_url, key, files, **{"transcript_es-es": TRANSCRIPT})
        exports = [
            ("POST", f"/dub-alt-format/{run_id}/es-es", {"output_format": "mp3", "audio_bitrate": f"{kbps}k"})
            for kbps in range(32, 321)
        ]
        reads = [
            ("GET", f"/runs/{run_id}", None),
            ("GET", f"/dub-result/{run_id}", None),
            ("GET", f"/runs/{run_id}/exports", None),
            ("GET", f"/runs/{run_id}/thumbnail", None),
            ("GET", f"/transcript/{run_id}/es-es?data_type=file", None),
        ]
        requests = [request for i, export in enumerate(exports) for request in (export, reads[i % len(reads)])]
        deletes: list[int] = []
        url = f"{server.base_url}/runs/{run_id}"
        deleters = [threading.Thread(target=_delete, args=(url, key, deletes)) for _ in range(3)]
        hammer = threading.Thread(target=lambda batch=requests: totals.update(_hammer(server, key, batch, threads=8)))
        hammer.start()
        time.sleep(0.2 + 0.2 * round_number)  # the DELETE lands early, then later, in the stream
        for deleter in deleters:
            deleter.start()
        for deleter in deleters:
            deleter.join()
        hammer.join()
        assert 204 in deletes and set(deletes) <= {204, 404}, deletes
        assert tasks_of(run_id) == 0  # none inserted after the run was gone
        assert files_under(run_folders) == kept, "a read wrote into the deleted run's folder"
    assert set(totals) <= {"200", "404"}, totals  # no 5xx, no dropped connection
    assert totals["200"] and totals["404"], totals  # the DELETE did land mid-stream


def _delete(url: str, key: str, statuses: list[int]) -> None:
    statuses.append(httpx.delete(url, headers=auth(key), timeout=30).status_code)


def test_exports_and_reads_racing_a_delete_of_their_run_are_200_or_404(target: Target) -> None:
    """SQLite (embedded). Before the fix: 500s (a foreign-key failure on the task insert) and dropped
    connections; a thumbnail read answered 500. tests/scaleout/test_delete_races.py runs it on PostgreSQL."""

    def tasks_of(run_id: int) -> int:
        with closing(sqlite3.connect(target.server.data_dir / "altdub.db")) as db:
            return db.execute("SELECT count(*) FROM export_tasks WHERE run_id = ?", (run_id,)).fetchone()[0]

    race_deletes(target.server, target.key, {"source": target.video, "dub_es-es": target.dub}, tasks_of)


# --- class 2: names and transcripts ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a\x00b", "a\x01b", "\x1b[31mred", "tab\there", "two\nlines", "del\x7f", "c1\x85nel", "invoice\u202etxt.exe",
     "\u2066isolate\u2069", "x" * 501],
    ids=["nul", "soh", "escape", "tab", "newline", "del", "c1-nel", "rlo", "isolate", "501-chars"],
)  # fmt: skip
def test_names_with_control_or_bidi_override_characters_are_a_422(target: Target, name: str) -> None:
    response = import_run(target.server.base_url, target.key, {"dub_es-es": target.dub}, name=name)
    assert error_locs(response) == [["body", "name"]], response.text


def _title(path: Path) -> str:
    with av.open(str(path)) as container:
        return container.metadata.get("title") or container.metadata.get("TITLE") or ""


@pytest.mark.parametrize(
    "name",
    [
        "فيلم\u200f (٢) \u200eHD",  # Arabic with RLM/LRM marks
        "emoji 🎬 \"quoted\" 'single' ;=:#\\ $HOME `id` %s {}",
        "é" * 500,  # the longest name, every character two bytes
    ],
    ids=["arabic-marks", "quotes-and-shell", "500-chars"],
)
def test_every_accepted_name_exports_with_its_title(target: Target, tmp_path: Path, name: str) -> None:
    server = target.server
    run_id = import_run_id(server.base_url, target.key, {"dub_es-es": target.dub}, name=name)
    assert httpx.get(f"{server.base_url}/runs/{run_id}", headers=auth(target.key)).json()["name"] == name
    task_id = request_export(server.base_url, target.key, run_id, {"output_format": "flac"})
    status = wait_task(server.base_url, target.key, task_id)
    assert status["status"] == "SUCCESS", status
    output = tmp_path / "out.flac"
    output.write_bytes(httpx.get(status["output_url"], timeout=30).content)
    assert _title(output) == f"{name} (Spanish (Spain))"


@pytest.mark.parametrize(
    "transcript",
    [
        '[{"start": 0.1, "end": 1.0, "text": "nul\\u0000"}]',
        '[{"start": 0.1, "end": 1.0, "text": "\\u001b[2Jclear"}]',
        '[{"start": 0.1, "end": 1.0, "text": "half \\ud800"}]',
        '[{"start": 0.1, "end": 1.0, "text": "c1 \\u009b"}]',
        '[{"start": 0.1, "end": 1.0, "text": "ok", "speaker": "\\u202eAna"}]',
        '[{"start": 0.1, "end": 1.0, "text": "ok", "speaker": "Ana\\nBob"}]',
        "1\n00:00:00,100 --> 00:00:01,000\nbell\x07\n",
    ],
    ids=["text-nul", "text-escape", "text-surrogate", "text-c1", "speaker-rlo", "speaker-newline", "srt-bell"],
)
def test_transcripts_with_control_characters_are_a_422_naming_the_field(target: Target, transcript: str) -> None:
    response = import_run(
        target.server.base_url, target.key, {"dub_es-es": target.dub}, **{"transcript_es-es": transcript}
    )
    assert error_locs(response) == [["body", "transcript_es-es"]], response.text
    assert "cue 1" in response.text


def test_transcript_text_keeps_tabs_line_breaks_and_bidi_controls_and_exports(target: Target, tmp_path: Path) -> None:
    """Right-to-left subtitles use embeddings and marks: they are kept, and the subtitle export carries them."""
    hello = "\u0645\u0631\u062d\u0628\u0627"  # Arabic: marhaban
    text = f"\u202b{hello} (Hello)!\u202c\n\t{hello}\u200f 2"
    transcript = json.dumps([{"start": 0.1, "end": 1.0, "text": text, "speaker": "\u0623\u0646\u0627\u200f"}])
    server = target.server
    run_id = import_run_id(
        server.base_url,
        target.key,
        {"source": target.video, "dub_es-es": target.dub},
        **{"transcript_es-es": transcript},
    )
    result = httpx.get(f"{server.base_url}/dub-result/{run_id}", headers=auth(target.key)).json()
    assert result["es-es"]["transcript"][0]["text"] == text
    task_id = request_export(server.base_url, target.key, run_id, {"output_format": "mkv", "subtitles": "soft"})
    status = wait_task(server.base_url, target.key, task_id)
    assert status["status"] == "SUCCESS", status
    output = tmp_path / "out.mkv"
    output.write_bytes(httpx.get(status["output_url"], timeout=30).content)
    with av.open(str(output)) as container:
        assert len(container.streams.subtitles) == 1
        cues = [
            sub.ass.decode() for packet in container.demux(container.streams.subtitles[0]) for sub in packet.decode()
        ]
    assert any(hello in cue for cue in cues), cues
