"""Spec §3 (signed download URLs): headers, Range, tampering, expiry, and keys that leave the storage root."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from altdub.storage.signing import URLSigner
from tests.api.conftest import raw_get
from tests.conftest import auth, export, make_run

FORBIDDEN = {"detail": "Signature invalid or expired"}
NOT_FOUND = {"detail": "Not found"}


def split(url: str) -> tuple[str, dict[str, str]]:
    """(decoded storage key, query) of a signed download URL."""
    parts = urlsplit(url)
    assert parts.path.startswith("/files/"), url
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return unquote(parts.path.removeprefix("/files/")), query


def build(key: str, query: dict[str, str]) -> str:
    return f"/files/{quote(key)}?{urlencode(query)}"


def signer_of(client) -> URLSigner:
    return client.app.state.context.storage.signer


def signed(client, key: str, filename: str = "x.bin", now: float | None = None) -> str:
    return build(key, signer_of(client).sign(key, filename, now=now))


@pytest.fixture
def mp3_export(client, api_key, media):
    """(run_id, signed URL) of a finished mp3 export of an audio-only run."""
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    status = export(client, api_key, run_id, "es-es", "mp3")
    assert status["status"] == "SUCCESS", status
    return run_id, status["output_url"]


@pytest.fixture
def secret(settings, client) -> str:
    """The contents of the data directory's secret.key, which no download may ever return."""
    value = (settings.resolved_data_dir / "secret.key").read_text().strip()
    assert len(value) > 20
    return value


# --- a good download -------------------------------------------------------------------------------------


def test_mp3_download_headers(client, mp3_export, settings):
    run_id, url = mp3_export
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["content-disposition"] == f'attachment; filename="run-{run_id}_es-es.mp3"'
    assert response.headers["etag"]
    key, _ = split(url)
    on_disk = (settings.resolved_data_dir / "files" / key).read_bytes()
    assert int(response.headers["content-length"]) == len(response.content) == len(on_disk)
    assert response.content == on_disk
    assert response.content[:3] == b"ID3"


def test_mp4_download_headers(client, api_key, media):
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    status = export(client, api_key, run_id, "es-es", "mp4")
    assert status["status"] == "SUCCESS", status
    response = client.get(status["output_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["content-disposition"] == f'attachment; filename="run-{run_id}_es-es.mp4"'
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["etag"]


def test_download_needs_no_api_key_and_ignores_one(client, mp3_export, other_key):
    _, url = mp3_export
    assert client.get(url).status_code == 200
    assert client.get(url, headers=auth(other_key)).status_code == 200


def test_url_expires_after_the_default_ttl(client, mp3_export):
    _, url = mp3_export
    _, query = split(url)
    assert set(query) == {"filename", "expires", "signature"}
    assert abs(int(query["expires"]) - (time.time() + 3600)) < 60


def test_etag_is_stable(client, mp3_export):
    _, url = mp3_export
    assert client.get(url).headers["etag"] == client.get(url).headers["etag"]


def test_range_request(client, mp3_export):
    _, url = mp3_export
    whole = client.get(url).content
    response = client.get(url, headers={"Range": "bytes=0-99"})
    assert response.status_code == 206
    assert len(response.content) == 100
    assert response.content == whole[:100]
    assert response.headers["content-length"] == "100"
    assert response.headers["content-range"] == f"bytes 0-99/{len(whole)}"

    tail = client.get(url, headers={"Range": "bytes=100-"})
    assert tail.status_code == 206
    assert tail.content == whole[100:]


# --- tampering and expiry --------------------------------------------------------------------------------


def _flip(value: str) -> str:
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def test_tampered_signature_is_403(client, mp3_export):
    _, url = mp3_export
    key, query = split(url)
    for signature in (_flip(query["signature"]), query["signature"].upper(), "", "0" * 64):
        response = client.get(build(key, {**query, "signature": signature}))
        assert response.status_code == 403, signature
        assert response.json() == FORBIDDEN


def test_changed_expires_is_403(client, mp3_export):
    _, url = mp3_export
    key, query = split(url)
    for expires in (str(int(query["expires"]) + 1), str(int(query["expires"]) + 10**6), "-1", "abc", ""):
        response = client.get(build(key, {**query, "expires": expires}))
        assert response.status_code == 403, expires
        assert response.json() == FORBIDDEN


@pytest.mark.parametrize("expires", ["\u00b2", "\u00b9\u2077\u2070\u2070", "\u2460"])
def test_expires_with_non_decimal_digits_is_403(client, mp3_export, expires):
    """Characters that str.isdigit() accepts but int() does not (superscripts, circled digits)."""
    _, url = mp3_export
    key, query = split(url)
    unchecked = TestClient(client.app, raise_server_exceptions=False)  # shares the running app's state
    response = unchecked.get(build(key, {**query, "expires": expires}))
    assert response.status_code == 403, (response.status_code, response.text)
    assert response.json() == FORBIDDEN


@pytest.mark.parametrize(
    ("name", "value"),
    [("signature", "0" * 200), ("expires", "9" * 30), ("filename", "a" * 300 + ".mp3")],
)
def test_overlong_tampered_values_are_403(client, mp3_export, name, value):
    """A tampered URL is a 403 whatever the length of the value changed."""
    _, url = mp3_export
    key, query = split(url)
    response = client.get(build(key, {**query, name: value}))
    assert response.status_code == 403, response.text
    assert response.json() == FORBIDDEN


def test_changed_filename_is_403(client, mp3_export):
    run_id, url = mp3_export
    key, query = split(url)
    for filename in (f"run-{run_id}_es-es.wav", "evil.html", query["filename"] + " "):
        response = client.get(build(key, {**query, "filename": filename}))
        assert response.status_code == 403, filename
        assert response.json() == FORBIDDEN


def test_changed_path_is_403(client, api_key, media, mp3_export):
    run_id, url = mp3_export
    key, query = split(url)
    # another existing file of the same workspace: the dub itself, and another export
    other = export(client, api_key, run_id, "es-es", "wav")
    other_key_path, _ = split(other["output_url"])
    for path in (other_key_path, key.replace(".mp3", ".wav"), key + "x", key.upper()):
        response = client.get(build(path, query))
        assert response.status_code == 403, path
        assert response.json() == FORBIDDEN


def test_expired_url_is_403(client, mp3_export):
    _, url = mp3_export
    key, query = split(url)
    signer = signer_of(client)
    past = signer.sign(key, query["filename"], now=time.time() - signer.ttl - 10)
    assert int(past["expires"]) < time.time()
    response = client.get(build(key, past))
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    # the same key signed now works: only the expiry made the difference
    assert client.get(build(key, signer.sign(key, query["filename"]))).status_code == 200


def test_missing_signature_is_refused_as_a_forged_one_is(client, mp3_export):
    """Any part of the signature missing, or the whole query: 403, as a wrong signature (spec §3), never 422."""
    _, url = mp3_export
    key, query = split(url)
    for missing in ("signature", "expires", "filename", "signature expires", "signature expires filename"):
        kept = {k: v for k, v in query.items() if k not in missing.split()}
        path = build(key, kept) if kept else f"/files/{quote(key)}"
        for method in ("GET", "HEAD"):
            response = client.request(method, path)
            assert response.status_code == 403, (missing, method, response.text)
            assert "ID3" not in response.text
            if method == "GET":
                assert response.json() == FORBIDDEN


# --- keys that leave the root ----------------------------------------------------------------------------

# Paths as a client may send them (percent-encoded), decoded by the server before routing.
ENCODED_TRAVERSALS = [
    "/files/%2e%2e/secret.key",
    "/files/%2E%2E/secret.key",
    "/files/w1/..%2f..%2fsecret.key",
    "/files/w1/%2e%2e%2f%2e%2e%2fsecret.key",
    "/files/%2Fetc%2Fpasswd",
    "/files//etc/passwd",
    "/files/..%5csecret.key",
]
# Decoded paths exactly as an HTTP server hands them to the app (no client-side normalisation).
RAW_TRAVERSALS = [
    "/files/../secret.key",
    "/files/../altdub.db",
    "/files/w1/../../secret.key",
    "/files/./../secret.key",
    "/files//etc/passwd",
]


@pytest.mark.parametrize("path", ENCODED_TRAVERSALS)
def test_encoded_traversal_is_refused(client, mp3_export, secret, path):
    _, url = mp3_export
    _, query = split(url)  # a genuine signature, for another key
    response = client.get(f"{path}?{urlencode(query)}")
    assert response.status_code in (403, 404), response.status_code
    assert secret not in response.text
    assert "root:" not in response.text


@pytest.mark.parametrize("path", RAW_TRAVERSALS)
def test_raw_traversal_is_refused(client, mp3_export, secret, path):
    _, url = mp3_export
    _, query = split(url)
    status, _, body = raw_get(client, path, urlencode(query))
    assert status in (403, 404), status
    assert secret.encode() not in body
    assert b"root:" not in body


@pytest.mark.parametrize(
    "key",
    [
        "../secret.key",
        "../altdub.db",
        "w1/../../secret.key",
        "./../secret.key",
        "..",
        ".",
        "",
        "/etc/passwd",
        "..\\secret.key",
    ],
)
def test_signed_key_outside_the_root_is_404(client, secret, key):
    query = signer_of(client).sign(key, "x.bin")
    status, _, body = raw_get(client, "/files/" + key, urlencode(query))
    assert status == 404, (key, status, body)
    assert secret.encode() not in body


def test_signed_absolute_path_of_the_secret_is_404(client, secret, settings):
    absolute = str(settings.resolved_data_dir / "secret.key")
    query = signer_of(client).sign(absolute, "secret.key")
    status, _, body = raw_get(client, "/files/" + absolute, urlencode(query))
    assert status == 404
    assert secret.encode() not in body
    # the same through the HTTP client, percent-encoded
    response = client.get(f"/files/{quote(absolute, safe='')}?{urlencode(query)}")
    assert response.status_code == 404
    assert secret not in response.text


def test_signed_directory_is_404(client, mp3_export):
    _, url = mp3_export
    key, _ = split(url)
    folder = key.rsplit("/", 1)[0]
    for directory in (folder, folder + "/", key.split("/", 1)[0]):
        response = client.get(signed(client, directory))
        assert response.status_code == 404, directory
        assert response.json() == NOT_FOUND


def test_signed_missing_file_is_404(client, mp3_export):
    _, url = mp3_export
    key, _ = split(url)
    response = client.get(signed(client, key + ".missing"))
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# --- data, never documents (issue 11) ----------------------------------------------------------------

DATA_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
}


def test_every_files_answer_is_sandboxed_data(client, mp3_export):
    _, url = mp3_export
    key, query = split(url)
    missing = signed(client, "runs/none/x.mp3", "x.mp3")
    for path, status in (
        (url, 200),
        (build(key, query | {"signature": "0" * 64}), 403),
        (missing, 404),
        (f"/files/{quote(key)}", 403),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        assert DATA_HEADERS.items() <= response.headers.items(), response.headers
        assert response.headers["content-disposition"].startswith("attachment")
    ranged = client.get(url, headers={"Range": "bytes=0-1"})
    assert ranged.status_code == 206
    assert DATA_HEADERS.items() <= ranged.headers.items()


@pytest.mark.parametrize("extension", ["html", "htm", "svg", "js", "mjs", "xml", "xhtml", "css", "pdf", "json"])
def test_a_signed_name_of_a_document_type_is_served_as_octet_stream(client, mp3_export, extension):
    """Even a URL signed for such a name (which the service never makes) is not a document."""
    _, url = mp3_export
    key, _ = split(url)
    response = client.get(signed(client, key, f"run-1_es-es.{extension}"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert DATA_HEADERS.items() <= response.headers.items()


@pytest.mark.parametrize(
    ("source", "expected"),
    [("dub_wav", ("wav", "audio/wav")), ("dub_flac", ("flac", "audio/flac")), ("audio_source", ("mp3", "audio/mpeg"))],
)
def test_a_dub_is_named_and_typed_by_its_probe_not_its_upload_name(client, api_key, media, tmp_path, source, expected):
    named = tmp_path / "dub.html"
    named.write_bytes(getattr(media, source).read_bytes())
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": named})
    audio_url = client.get(f"/dub-result/{run_id}", headers=auth(api_key)).json()["es-es"]["audio_url"]
    response = client.get(audio_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == expected[1]
    assert response.headers["content-disposition"] == f'attachment; filename="run-{run_id}_es-es.{expected[0]}"'


def test_s3_presigned_urls_fix_the_type_and_disposition_under_the_signature(monkeypatch, tmp_path):
    """The bucket answers with our type and as an attachment; SigV4 signs every query parameter."""
    from altdub.storage.s3 import S3Storage

    for name, value in {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    storage = S3Storage("bucket", "prefix", scratch=tmp_path, url_ttl=60)
    url = storage.signed_url(
        "runs/1/dub.html", filename="run-1_es-es.wav", content_type="audio/wav", base_url="http://ignored"
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["response-content-type"] == "audio/wav"
    assert query["response-content-disposition"] == 'attachment; filename="run-1_es-es.wav"'
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and len(query["X-Amz-Signature"]) == 64
