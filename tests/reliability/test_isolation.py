"""Issue 5, isolation and signing.

- A matrix: a second workspace's key tries every operation of the app's own OpenAPI schema that
  takes a run_id, task_id or language, on the first workspace's run, task and transcript, with every
  enumerated query value and output format. Each answer is a 404 identical to the one for an id
  that does not exist, and neither body nor headers carry anything of the first workspace.
- Signed URLs over real HTTP (uvicorn's own path decoding): another workspace's signature, a changed
  path, expiry or signature, an expired URL, and path traversal (``..``, encoded and double-encoded
  slashes and dots, absolute paths, symlinks out of the root), even with a genuine signature for the
  escaping key: 403 or 404, and never a byte of the canary files placed outside the storage root.
"""

from __future__ import annotations

import http.client
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from altdub.db.models import Run
from altdub.db.session import make_engine, make_sessionmaker, session_scope
from altdub.service.keys import create_key
from altdub.storage.signing import URLSigner
from tests.conftest import auth, export, make_run
from tests.e2e.conftest import Server, ServerFactory, import_run_id, request_export, wait_for_task

IDS = {"run_id", "task_id", "language"}
MISSING_RUN = 987654


@dataclass(frozen=True)
class FirstWorkspace:
    run_id: int
    task_id: str
    name: str
    secrets: tuple[str, ...]  # strings of the first workspace that must never reach the second


@pytest.fixture
def first(client: TestClient, api_key: str, media) -> FirstWorkspace:
    """A run of the first workspace with a video, a dub, a voice stem and a transcript, and a finished export."""
    name = f"Confidential pilot {uuid.uuid4().hex[:8]}"
    transcript = '[{"start": 0.5, "end": 1.5, "text": "Hola, el plan secreto", "speaker": "Ana"}]'
    run_id = make_run(
        client,
        api_key,
        {"source": media.video, "dub_es-es": media.dub_wav, "voice_es-es": media.dub_flac},
        name=name,
        **{"transcript_es-es": transcript},
    )
    done = export(client, api_key, run_id, "es-es", "mp3")
    assert done["status"] == "SUCCESS", done
    answer = client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(api_key), json={"output_format": "flac"})
    task_id = answer.json()["task_id"]
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        prefix = session.get(Run, run_id).storage_prefix
    url = urlsplit(done["output_url"])
    secrets = (
        name,
        media.video.name,
        media.dub_wav.name,
        media.dub_flac.name,
        "plan secreto",
        "Ana",
        prefix,
        prefix.split("/")[2],  # the run's storage folder
        url.path,
        parse_qs(url.query)["signature"][0],
        api_key[:12],
        "/files/",
    )
    return FirstWorkspace(run_id, task_id, name, secrets)


def operations(app: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) of every operation taking a run_id, task_id or language."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            if names & IDS:
                assert names <= IDS, f"{method} {path}: a path parameter the matrix does not know"
                found.append((method.upper(), path, operation))
    return found


def _enum(schema: dict[str, Any]) -> list[Any] | None:
    for candidate in [schema, *schema.get("anyOf", [])]:
        if "enum" in candidate:
            return candidate["enum"]
        if "const" in candidate:
            return [candidate["const"]]
    return None


def variants(operation: dict[str, Any], openapi: dict[str, Any], run_id: int) -> Iterator[tuple[dict, Any]]:
    """(query, json body) combinations: every enumerated query value, and every output format."""
    choices: list[list[tuple[str, Any]]] = []
    for param in operation.get("parameters", []):
        if param["in"] != "query":
            continue
        values = _enum(param.get("schema", {}))
        if values is not None:
            choices.append([(param["name"], v) for v in values])
        elif param["name"] == "run_id":  # the task status' optional run filter: absent, or the real run
            choices.append([("run_id", None), ("run_id", run_id)])
    bodies: list[Any] = [None]
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        schema = content["application/json"]["schema"]
        if "$ref" in schema:
            schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        formats = _enum(schema["properties"]["output_format"])
        assert formats, "the export body's output_format is not an enum"
        bodies = [{"output_format": f} for f in formats] + [
            {"output_format": "mp3", "stem": "voice"},
            {"output_format": "mp4", "subtitles": "soft", "include_original_audio": True},
        ]
    for combo in itertools.product(*choices):
        query = {k: v for k, v in combo if v is not None}
        for body in bodies:
            yield query, body


def fill(template: str, run_id: int | str, task_id: str, language: str) -> str:
    return template.format(run_id=run_id, task_id=task_id, language=language)


def strip_date(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "date"}


def test_second_workspace_gets_404_everywhere_and_learns_nothing(
    client: TestClient, api_key: str, other_key: str, first: FirstWorkspace
) -> None:
    app = client.app
    openapi = app.openapi()
    ops = operations(app)
    covered = {(m, p) for m, p, _ in ops}
    expected = {
        ("GET", "/runs/{run_id}"),
        ("DELETE", "/runs/{run_id}"),
        ("POST", "/dub-alt-format/{run_id}/{language}"),
        ("GET", "/dub-alt-format/{task_id}"),
        ("GET", "/transcript/{run_id}/{language}"),
        ("GET", "/dub-result/{run_id}"),
    }
    assert expected <= covered, f"the schema lost operations the matrix must try: {expected - covered}"
    ops.sort(key=lambda op: op[0] == "DELETE")  # deletions last: the owner's controls need the run

    tried = 0
    for method, template, operation in ops:
        for language in ("es-es", "54", "ES-ES", "en-us"):
            if "{language}" not in template and language != "es-es":
                continue
            for query, body in variants(operation, openapi, first.run_id):
                url = fill(template, first.run_id, first.task_id, language)
                if method != "DELETE":  # the owner's control: the request itself is good (and warms any cache)
                    mine = client.request(method, url, params=query, json=body, headers=auth(api_key))
                    assert mine.status_code < 400 or (
                        mine.status_code == 404 and language == "en-us"  # the source language has no dub
                    ), f"control {method} {url} {query} {body}: {mine.status_code} {mine.text[:300]}"
                theirs = client.request(method, url, params=query, json=body, headers=auth(other_key))
                missing_url = fill(template, MISSING_RUN, str(uuid.uuid4()), language)
                missing_query = {**query, "run_id": MISSING_RUN} if "run_id" in query else query
                missing = client.request(method, missing_url, params=missing_query, json=body, headers=auth(other_key))
                where = f"{method} {url} {query} {body}"
                assert theirs.status_code == 404, f"{where}: {theirs.status_code} {theirs.text[:300]}"
                assert theirs.json() == missing.json(), f"{where}: answered unlike a missing id: {theirs.text}"
                assert strip_date(theirs.headers) == strip_date(missing.headers), where
                exposed = theirs.text + " " + " ".join(f"{k}: {v}" for k, v in theirs.headers.items())
                for secret in first.secrets:
                    assert secret not in exposed, f"{where}: the answer carries {secret!r}"
                if first.task_id not in url:
                    assert first.task_id not in exposed, f"{where}: the answer names the first workspace's task"
                tried += 1
    assert tried >= 60, tried
    print(f"isolation matrix: {tried} requests of the second workspace over {len(ops)} operations, all 404")

    # Lists and every other read of the second workspace show nothing of the first.
    for path, item in openapi["paths"].items():
        if "get" in item and "{" not in path and path not in ("/docs", "/openapi.json"):
            response = client.get(path, headers=auth(other_key))
            for secret in first.secrets:
                assert secret not in response.text, f"GET {path} shows {secret!r} to the second workspace"
    assert client.get("/runs", headers=auth(other_key)).json()["total"] == 0

    # The deletions changed nothing: the owner still has the run, its transcript and its exports.
    assert client.get(f"/runs/{first.run_id}", headers=auth(api_key)).json()["name"] == first.name
    again = client.post(f"/dub-alt-format/{first.run_id}/es-es", headers=auth(api_key), json={"output_format": "mp3"})
    assert set(again.json()) == {"output_url"}
    assert client.get(again.json()["output_url"]).status_code == 200


# --- signed URLs over real HTTP --------------------------------------------------------------------------

CANARY = "CANARY-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Signed:
    server: Server
    secret: str  # the server's own, read from its data dir: lets the tests forge the worst case
    signer: URLSigner
    first_url: str
    second_url: str


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, media) -> Iterator[Signed]:
    root = tmp_path_factory.mktemp("signing")
    data_dir = root / "data"
    (root / "canary-beside-data.txt").write_text(CANARY)
    factory = ServerFactory()
    server = factory(data_dir)
    try:
        first_key = server.api_key
        assert first_key
        (data_dir / "canary.txt").write_text(CANARY)  # inside the data dir, outside the storage root
        engine = make_engine(f"sqlite:///{data_dir / 'altdub.db'}")
        with session_scope(make_sessionmaker(engine)) as session:
            second_key, _ = create_key(session, "intruder")
        engine.dispose()
        urls = []
        for key in (first_key, second_key):
            run_id = import_run_id(server.base_url, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
            answer = request_export(server.base_url, key, run_id, "mp3", timeout=10)
            final = wait_for_task(server.base_url, key, answer.json()["task_id"])
            assert final["status"] == "SUCCESS", final
            urls.append(final["output_url"])
        # symlinks inside the storage root that point out of it
        files = data_dir / "files"
        (files / "w2" / "link-to-canary.txt").symlink_to(data_dir / "canary.txt")
        (files / "w2" / "link-to-data").symlink_to(data_dir, target_is_directory=True)
        secret = (data_dir / "secret.key").read_text().strip()
        yield Signed(server, secret, URLSigner(secret, 3600), urls[0], urls[1])
    finally:
        factory.stop_all()


def raw_get(server: Server, target: str) -> tuple[int, str]:
    """GET the request target byte for byte, as an attacker's client would send it (no normalisation)."""
    host, port = urlsplit(server.base_url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode("latin-1")
    finally:
        connection.close()


def parts(url: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(url)
    return unquote(split.path.removeprefix("/files/")), {k: v[0] for k, v in parse_qs(split.query).items()}


def assert_refused(status: int, body: str, what: str) -> None:
    assert status in (403, 404), f"{what}: {status} {body[:200]}"
    assert CANARY not in body, f"{what}: read a file outside the storage root"
    assert "root:x:0:0" not in body, f"{what}: read /etc/passwd"


def test_signature_is_bound_to_its_workspace_file(signed: Signed) -> None:
    """The second workspace holds a genuine URL of its own; no part of it opens the first's file."""
    first_key, first_query = parts(signed.first_url)
    second_key, second_query = parts(signed.second_url)
    assert first_key.startswith("w1/") and second_key.startswith("w2/")
    attempts = {
        "second's signature on the first's path": (first_key, second_query),
        "second's signature, first's filename, on the first's path": (
            first_key,
            {**second_query, "filename": first_query["filename"]},
        ),
        "first's URL with the second's signature": (first_key, {**first_query, "signature": second_query["signature"]}),
        "first's signature on the second's path": (second_key, first_query),
    }
    for what, (key, query) in attempts.items():
        status, body = raw_get(signed.server, f"/files/{quote(key)}?{urlencode(query)}")
        assert status == 403, f"{what}: {status} {body[:200]}"
    for url in (signed.first_url, signed.second_url):  # and both genuine URLs still work
        assert httpx.get(url, timeout=10).status_code == 200


def test_tampered_and_expired_urls_over_http(signed: Signed) -> None:
    key, query = parts(signed.first_url)
    expired = signed.signer.sign(key, query["filename"], now=time.time() - 3600 - 5)
    changed = {
        "expired": expired,
        "expiry moved": {**query, "expires": str(int(query["expires"]) + 1)},
        "expiry far future": {**query, "expires": "99999999999"},
        "signature flipped": {**query, "signature": query["signature"][::-1]},
        "signature truncated": {**query, "signature": query["signature"][:32]},
        "filename changed": {**query, "filename": "x.html"},
    }
    for what, tampered in changed.items():
        status, body = raw_get(signed.server, f"/files/{quote(key)}?{urlencode(tampered)}")
        assert status == 403, f"{what}: {status} {body[:200]}"
    for what, path in {
        "path changed": key.replace(".mp3", ".wav"),
        "path extended": key + "/x",
        "other run folder": key.replace("w1/", "w2/"),
    }.items():
        status, body = raw_get(signed.server, f"/files/{quote(path)}?{urlencode(query)}")
        assert status == 403, f"{what}: {status} {body[:200]}"


# Request targets as sent on the wire; the server decodes them (uvicorn) before routing.
TRAVERSALS = [
    "/files/../secret.key",
    "/files/../canary.txt",
    "/files/../../canary-beside-data.txt",
    "/files/%2e%2e/canary.txt",
    "/files/%2E%2E%2Fcanary.txt",
    "/files/..%2fcanary.txt",
    "/files/.%2e/canary.txt",
    "/files/w1/..%2f..%2fcanary.txt",
    "/files/w1/exports/%2e%2e%2f%2e%2e%2f%2e%2e%2fcanary.txt",
    "/files/%252e%252e%252fcanary.txt",
    "/files/..%5ccanary.txt",
    "/files/%c0%ae%c0%ae/canary.txt",
    "/files/..%00/canary.txt",
    "/files//etc/passwd",
    "/files/%2fetc%2fpasswd",
    "/files/%2F%2Fetc/passwd",
    "/files/w2/link-to-canary.txt",
    "/files/w2/link-to-data/canary.txt",
    "/files/w2/link-to-data/secret.key",
    "/files/w2/link-to-data/altdub.db",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_leaves_the_storage_root(signed: Signed, target: str) -> None:
    """Each path twice: with a genuine URL's query (signed for another key), and with a signature forged
    with the server's own secret for exactly the key the server will see. Neither reads outside."""
    _, query = parts(signed.first_url)
    status, body = raw_get(signed.server, f"{target}?{urlencode(query)}")
    assert_refused(status, body, f"{target} with another key's signature")
    for key in {unquote(target.removeprefix("/files/")), unquote(unquote(target.removeprefix("/files/")))}:
        forged = signed.signer.sign(key, "x.txt")
        status, body = raw_get(signed.server, f"{target}?{urlencode(forged)}")
        assert_refused(status, body, f"{target} signed for {key!r}")
        assert signed.secret not in body
    # absolute paths, signed as such
    for absolute in (str(signed.server.data_dir / "canary.txt"), "/etc/passwd"):
        forged = signed.signer.sign(absolute, "x.txt")
        status, body = raw_get(signed.server, f"/files/{quote(absolute)}?{urlencode(forged)}")
        assert_refused(status, body, f"absolute {absolute}")
    assert httpx.get(f"{signed.server.base_url}/healthz", timeout=5).status_code == 200
