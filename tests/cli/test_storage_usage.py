"""``altdub storage usage``: every workspace's inputs and exports, kept and removed, and the lifecycle's settings.

The data directory is filled in process (a TestClient app, real conversions); the command runs as a subprocess
on it, as an operator would run it beside the server.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.service import lifecycle
from tests.api.conftest import new_key
from tests.cli.test_cli import altdub, ok
from tests.conftest import Media, make_run
from tests.service.lifecycle_checks import context_of, make_export, poll, removed, task_row, with_clock


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def _shows(text: str, count: int) -> bool:
    """Whether ``text`` prints ``count`` bytes: ``123 B``, or one decimal in decimal units (``989.2 kB``)."""
    assert re.fullmatch(r"\d+ B|\d+\.\d (kB|MB|GB)", text), text
    number, unit = text.split(" ")
    return abs(float(number) * UNITS[unit] - count) <= UNITS[unit] * 0.05


def test_storage_usage_prints_every_workspace(tmp_path: Path, media: Media) -> None:
    settings = Settings(data_dir=tmp_path / "data", create_demo=False, workers=2, task_time_limit=120)
    with TestClient(create_app(settings)) as client:
        ctx = context_of(client)
        clock = with_clock(ctx)
        acme, globex = new_key(client, "acme"), new_key(client, "globex")
        run = make_run(client, acme, {"source": media.video, "dub_es-es": media.dub_wav})
        tasks = {fmt: make_export(client, acme, run, fmt) for fmt in ("wav", "flac", "mp3")}
        make_run(client, globex, {"dub_fr-fr": media.dub_flac})
        ctx.settings.export_ttl_days = 30
        clock.at(days=31)
        poll(client, acme, tasks["mp3"])
        lifecycle.sweep(ctx)
        assert removed(ctx, tasks) == {"wav", "flac"}
        acme_dir = settings.data_dir / "files" / f"w{task_row(ctx, tasks['mp3']).workspace_id}"

    result = ok(altdub("storage", "usage", data_dir=settings.data_dir, ALTDUB_EXPORT_TTL_DAYS="30"))
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["workspace", "inputs", "exports", "kept", "removed"]
    rows = {cells[0]: cells[1:] for cells in (line.split("\t") for line in lines[1:-1])}
    assert list(rows) == ["acme", "globex"]

    inputs, exports, kept, gone = rows["acme"]
    assert _shows(inputs, _bytes_under(acme_dir / "runs"))
    assert _shows(exports, _bytes_under(acme_dir / "exports"))
    assert (kept, gone) == ("1", "2")
    assert rows["globex"][1:] == ["0 B", "0", "0"]
    total, rest = lines[-1].removeprefix("total ").split("; ", 1)
    assert _shows(total, _bytes_under(settings.data_dir / "files"))
    assert rest == "budget none; exports kept unused for at most 30 days"
