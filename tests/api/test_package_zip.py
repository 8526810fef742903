"""Issue 13 item 2: ``<signed prefix>/package.zip``, a streaming package's whole folder as one streamed zip.

The zip's entries are compared byte for byte with the package's stored files, read independently
of the service (the data directory's files; the bucket's objects through boto3 for S3 storage).
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from tests.api.conftest import files_root, new_key
from tests.conftest import Media, auth, make_run, wait_for_task
from tests.scaleout.conftest import S3Server, aws_env, new_prefix, s3  # noqa: F401  (fixtures)

PACKAGE_PARTS = 4  # w<workspace>/exports/<run>/<task>


def package_export(client: TestClient, key: str, run_id: int, output_format: str = "hls") -> str:
    """A finished package of every language of the run: its output_url (the playlist or manifest)."""
    response = client.post(
        f"/runs/{run_id}/exports", headers=auth(key), json={"output_format": output_format, "languages": "all"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    if "output_url" not in body:
        body = wait_for_task(client, key, body["task_id"])
    assert body.get("output_url"), body
    return body["output_url"]


def zip_url(output_url: str) -> str:
    """The output_url's folder + package.zip: the same signed prefix."""
    return output_url.rsplit("/", 1)[0] + "/package.zip"


def storage_prefix(output_url: str) -> str:
    """The package's storage prefix, as the signed URL names it: the parts after /packages/<expires>/<sig>/."""
    path = output_url.split("/packages/", 1)[1].split("/")
    return "/".join(path[2 : 2 + PACKAGE_PARTS])


def fetch_zip(client: TestClient, url: str) -> tuple[Any, dict[str, bytes]]:
    response = client.get(url)
    assert response.status_code == 200, response.text[:300]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None  # every entry's CRC matches its bytes
    entries = {info.filename: archive.read(info) for info in archive.infolist()}
    assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    return response, entries


def check_headers(response: Any, filename: str) -> None:
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.fixture
def run_id(client: TestClient, api_key: str, media: Media) -> int:
    return make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac})


def test_the_zip_holds_every_file_of_the_package_byte_for_byte(
    client: TestClient, api_key: str, settings: Settings, run_id: int
) -> None:
    output_url = package_export(client, api_key, run_id)
    response, entries = fetch_zip(client, zip_url(output_url))
    check_headers(response, f"run-{run_id}_es-es+fr-fr_hls.zip")

    folder = files_root(settings) / storage_prefix(output_url)
    stored = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert sorted(entries) == sorted(stored)
    assert entries == stored
    assert {"master.m3u8", "manifest.mpd"} <= set(entries)
    assert sum(name.endswith(".m4s") for name in entries) >= 3 * 2  # init + segments: picture and two languages
    # the files the player fetches through the prefix are the same bytes
    assert client.get(output_url).content == entries["master.m3u8"]


def test_a_dash_package_zip_is_named_for_dash(client: TestClient, api_key: str, run_id: int) -> None:
    output_url = package_export(client, api_key, run_id, "dash")
    assert output_url.endswith("/manifest.mpd")
    response, entries = fetch_zip(client, zip_url(output_url))
    check_headers(response, f"run-{run_id}_es-es+fr-fr_dash.zip")
    assert entries["manifest.mpd"] == client.get(output_url).content


def test_a_tampered_or_expired_prefix_opens_no_zip(client: TestClient, api_key: str, run_id: int) -> None:
    output_url = package_export(client, api_key, run_id)
    url = zip_url(output_url)
    head, tail = url.split("/packages/", 1)
    expires, signature, rest = tail.split("/", 2)
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    other_task = rest.split("/")
    other_task[3] = "00000000-0000-0000-0000-000000000000"
    refused = {
        "signature": f"{head}/packages/{expires}/{flipped}/{rest}",
        "expiry": f"{head}/packages/{int(expires) + 1}/{signature}/{rest}",
        "expired": f"{head}/packages/{int(time.time()) - 10}/{signature}/{rest}",
        "another package": f"{head}/packages/{expires}/{signature}/{'/'.join(other_task)}",
    }
    for what, bad in refused.items():
        response = client.get(bad)
        assert response.status_code == 403, (what, response.text)
        assert response.headers["access-control-allow-origin"] == "*"
    # signed, but no package.zip deeper in the folder
    assert client.get(url.replace("/package.zip", "/sub/package.zip")).status_code == 404


@pytest.fixture
def s3_client(
    s3: S3Server,  # noqa: F811
    aws_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> Iterator[tuple[TestClient, str, str]]:
    """An in-process app (SQLite) storing in the moto bucket under a fresh prefix: client, key, prefix."""
    prefix = new_prefix("zip")
    settings = Settings(
        data_dir=tmp_path / "data",
        storage_url=s3.storage_url(prefix),
        create_demo=False,
        workers=2,
        task_time_limit=120,
    )
    with TestClient(create_app(settings)) as client:
        yield client, new_key(client, "s3"), prefix


def test_the_zip_of_a_package_in_s3_holds_its_objects_byte_for_byte(
    s3_client: tuple[TestClient, str, str],
    s3: S3Server,  # noqa: F811
    media: Media,
) -> None:
    client, key, prefix = s3_client
    run_id = make_run(client, key, {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac})
    output_url = package_export(client, key, run_id)
    response, entries = fetch_zip(client, zip_url(output_url))
    check_headers(response, f"run-{run_id}_es-es+fr-fr_hls.zip")

    folder = f"{prefix}/{storage_prefix(output_url)}/"
    bucket = s3.client()
    objects = {
        name.removeprefix(folder): bucket.get_object(Bucket=s3.bucket, Key=name)["Body"].read()
        for name in s3.keys(folder)
    }
    assert sorted(entries) == sorted(objects)
    assert entries == objects
    assert {"master.m3u8", "manifest.mpd"} <= set(entries)


def test_the_dashboard_may_play_what_the_bucket_serves(
    s3_client: tuple[TestClient, str, str],
    s3: S3Server,  # noqa: F811
) -> None:
    """With S3 storage, previews fetch downloads and segments from the bucket: the page's policy allows its origin."""
    client, _, _ = s3_client
    policy = dict(
        directive.strip().split(" ", 1) for directive in client.get("/").headers["content-security-policy"].split(";")
    )
    for directive in ("media-src", "connect-src"):
        assert s3.endpoint in policy[directive].split(), (directive, policy[directive])
    assert "blob:" in policy["media-src"].split()
    assert policy["script-src"] == "'self'"  # still only the page's own scripts
