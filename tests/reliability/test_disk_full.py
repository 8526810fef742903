"""A full disk: an import that does not fit is a 507 that keeps nothing, and the service goes on.

The data directory is a real 24 MiB tmpfs mounted for the test (root, as on CI); without the
right to mount, the test skips saying so, and fails under CI=true.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from tests.api.conftest import files_root, new_key, staging_root, stored_files
from tests.conftest import Media, auth, upload

DISK_MIB = 24


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a small tmpfs for the full-disk test: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture
def big_dub(tmp_path: Path) -> Path:
    """A valid 40 MiB WAV: too big for the disk, fine in every other way."""
    path = tmp_path / "long-dub.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=220", "-ac", "2",
                "-c:a", "pcm_s16le", file_arg(path)])  # fmt: skip
    return path


def test_an_import_that_does_not_fit_is_507_and_keeps_nothing(small_disk: Path, big_dub: Path, media: Media) -> None:
    settings = Settings(data_dir=small_disk / "data", create_demo=False, workers=1)
    with TestClient(create_app(settings)) as client:
        key = new_key(client, "full")
        response = upload(client, key, {"dub_es-es": big_dub})
        assert response.status_code == 507, response.text
        assert "no room left" in response.json()["detail"]
        assert stored_files(staging_root(settings)) == []  # the partial upload is gone
        assert stored_files(files_root(settings)) == []
        assert client.get("/runs", headers=auth(key)).json()["total"] == 0

        fits = upload(client, key, {"source": media.video, "dub_es-es": media.dub_wav})  # the room came back
        assert fits.status_code == 201, fits.text
        assert client.get("/runs", headers=auth(key)).json()["total"] == 1
