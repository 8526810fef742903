"""LocalStorage.delete_prefix on real files: one object, a folder of them, nothing at all."""

from __future__ import annotations

from pathlib import Path

from altdub.storage.local import LocalStorage


def test_delete_prefix_removes_an_object_a_folder_or_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files", secret="s", url_ttl=60)
    for key in ("w1/runs/a/source.wav", "w1/runs/a/dub_54.wav", "w1/exports/1/t.mp3", "w1/exports/1/u.mp3"):
        source = tmp_path / "staged"
        source.write_bytes(b"x")
        storage.put_file(key, source)
    storage.delete_prefix("w1/exports/1/t.mp3")  # one object
    assert not storage.exists("w1/exports/1/t.mp3") and storage.exists("w1/exports/1/u.mp3")
    storage.delete_prefix("w1/runs/a/")  # a folder, as delete_run passes it
    assert storage.children("w1/runs/") == []
    storage.delete_prefix("w1/runs/a/")  # gone already: a second DELETE racing the first
    storage.delete_prefix("w1/exports/1")  # a folder named without its slash
    assert storage.children("w1/exports/") == [] and not storage.exists("w1/exports/1/u.mp3")
