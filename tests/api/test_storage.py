"""GET /storage/usage: a workspace's bytes by kind, equal to the files it has on disk, and the lifecycle's settings."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from altdub.config import Settings
from altdub.service import lifecycle
from tests.api.conftest import files_root
from tests.conftest import Media, auth, make_run
from tests.service.lifecycle_checks import context_of, make_export, poll, removed, task_row, with_clock


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _files_under(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def test_usage_is_what_each_workspace_stores_on_disk(
    client: TestClient, api_key: str, other_key: str, media: Media, settings: Settings
) -> None:
    ctx = context_of(client)
    clock = with_clock(ctx)
    first_run = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    empty = client.get("/storage/usage", headers=auth(api_key)).json()
    assert (empty["exports_bytes"], empty["exports"], empty["removed_exports"]) == (0, 0, 0)
    assert empty["inputs_bytes"] > 0
    assert (empty["export_ttl_days"], empty["storage_budget_gb"]) == (None, None)

    mine = {fmt: make_export(client, api_key, first_run, fmt) for fmt in ("mp3", "wav")}
    second_run = make_run(client, other_key, {"dub_fr-fr": media.dub_flac})
    theirs = make_export(client, other_key, second_run, "flac", language="fr-fr")
    ctx.settings.export_ttl_days = 7
    ctx.settings.storage_budget_gb = 5
    clock.at(days=8)
    poll(client, api_key, mine["mp3"])  # used: kept; the wav is not
    poll(client, other_key, theirs)
    lifecycle.sweep(ctx)
    assert removed(ctx, mine) == {"wav"}

    root = files_root(settings)
    for key, tasks in ((api_key, mine), (other_key, {"flac": theirs})):
        workspace = root / f"w{task_row(ctx, next(iter(tasks.values()))).workspace_id}"
        usage = client.get("/storage/usage", headers=auth(key)).json()
        assert usage == {
            "inputs_bytes": _bytes_under(workspace / "runs"),
            "exports_bytes": _bytes_under(workspace / "exports"),
            "exports": _files_under(workspace / "exports"),
            "removed_exports": 1 if key == api_key else 0,
            "export_ttl_days": 7,
            "storage_budget_gb": 5,
        }, key
        assert usage["inputs_bytes"] > 0 and usage["exports"] == 1
    assert {p.name for p in root.iterdir()} == {f"w{task_row(ctx, t).workspace_id}" for t in (mine["mp3"], theirs)}


def test_usage_needs_a_key(client: TestClient) -> None:
    assert client.get("/storage/usage").status_code == 401
    assert client.get("/storage/usage", headers=auth("altdub_not-a-key")).status_code == 401
