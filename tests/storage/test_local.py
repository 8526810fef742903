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


def _folder(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir()
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def test_put_folder_publishes_a_whole_folder_and_a_second_publication_replaces_it(tmp_path: Path) -> None:
    """A task run again after a crash publishes its package under the same prefix as the first attempt did."""
    storage = LocalStorage(tmp_path / "files", secret="s", url_ttl=60)
    first = _folder(tmp_path / "first", {"master.m3u8": b"one", "chunk-0-00001.m4s": b"1", "old.m4s": b"x"})
    assert storage.put_folder("w1/exports/1/task/", first) == 5
    assert not first.exists()
    second = _folder(tmp_path / "second", {"master.m3u8": b"two", "chunk-0-00001.m4s": b"22"})
    assert storage.put_folder("w1/exports/1/task/", second) == 5
    assert sorted(storage.children("w1/exports/1/task/")) == ["w1/exports/1/task/chunk-0-00001.m4s",
                                                              "w1/exports/1/task/master.m3u8"]  # fmt: skip
    with storage.local_copy("w1/exports/1/task/master.m3u8") as path:
        assert path.read_bytes() == b"two"
    assert storage.children("w1/exports/1/") == ["w1/exports/1/task/"]  # nothing partial or replaced is left
