"""``altdub qc`` and the verdict ``altdub export`` prints, run as subprocesses against a real server.

The dub is clipped (driven past full scale) and delivered as WAV, so its report fails ``clipping``
while the export succeeds; normalised to a preset, the same dub passes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from altdub.media.synth import make_tone
from tests.api.test_qc_page import Page
from tests.api.test_qc_reports import _clipped_dub
from tests.cli.test_cli import altdub, ok, server  # noqa: F401  (the module's server fixture)
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SECONDS = 4.0


@pytest.fixture(scope="module")
def clipped_run(server: Server, tmp_path_factory: pytest.TempPathFactory) -> int:  # noqa: F811
    directory = tmp_path_factory.mktemp("qc-cli")
    dub = _clipped_dub(directory / "dub.wav", SECONDS)
    source = make_tone(directory / "source.wav", SECONDS, tone_hz=300)
    result = ok(
        altdub(
            "runs", "import", "--url", server.base_url, "--api-key", server.api_key or "",
            "--source", str(source), "--source-language", "en-us", "--dub", f"es-es={dub}",
            cwd=directory,
        )
    )  # fmt: skip
    return int(re.fullmatch(r"run (\d+): es-es", result.stdout.strip()).group(1))  # type: ignore[union-attr]


def _env(server: Server) -> dict[str, str]:  # noqa: F811
    return {"ALTDUB_URL": server.base_url, "ALTDUB_API_KEY": server.api_key or ""}


def test_export_prints_the_verdict_and_the_failing_checks(server: Server, clipped_run: int, tmp_path: Path) -> None:  # noqa: F811
    result = ok(altdub("export", str(clipped_run), "es-es", "wav", "--wait", cwd=tmp_path, **_env(server)))
    url = result.stdout.strip()
    assert url.startswith(f"{server.base_url}/files/"), result.stdout  # stdout: the URL alone, as before
    assert re.search(r"^QC FAILED: \d+ of \d+ checks failed\.$", result.stderr, re.M), result.stderr
    assert re.search(r"^  FAIL Clipping \[Track 1 \(es-es\)\]: expected .+, measured .+$", result.stderr, re.M)
    task_id = re.search(rf"the whole report: altdub qc {clipped_run} (\S+)$", result.stderr, re.M).group(1)  # type: ignore[union-attr]

    # the export exists now: answered with its URL alone, its report found all the same
    again = ok(altdub("export", str(clipped_run), "es-es", "wav", cwd=tmp_path, **_env(server)))
    assert again.stdout.strip().startswith(f"{server.base_url}/files/")
    assert f"the whole report: altdub qc {clipped_run} {task_id}" in again.stderr
    assert "FAIL Clipping" in again.stderr

    # normalised to a preset, the same dub is off full scale and passes
    passed = ok(
        altdub("export", str(clipped_run), "es-es", "m4a", "--loudness", "apple_podcasts", "--wait",
               cwd=tmp_path, **_env(server))
    )  # fmt: skip
    assert re.search(r"^QC PASSED: All \d+ checks passed\.$", passed.stderr, re.M), passed.stderr
    assert "FAIL" not in passed.stderr


def _task_of(server: Server, run_id: int, output_format: str) -> str:  # noqa: F811
    exports = httpx.get(f"{server.base_url}/runs/{run_id}/exports", headers={"x-api-key": server.api_key or ""})
    return next(e["task_id"] for e in exports.json() if e["output_format"] == output_format)


def test_qc_prints_the_report(server: Server, clipped_run: int, tmp_path: Path) -> None:  # noqa: F811
    ok(altdub("export", str(clipped_run), "es-es", "wav", "--wait", cwd=tmp_path, **_env(server)))
    task_id = _task_of(server, clipped_run, "wav")
    data = httpx.get(
        f"{server.base_url}/runs/{clipped_run}/exports/{task_id}/qc", headers={"x-api-key": server.api_key or ""}
    ).json()

    lines = ok(altdub("qc", str(clipped_run), task_id, cwd=tmp_path, **_env(server))).stdout.splitlines()
    failed = [c for c in data["checks"] if not c["passed"]]
    assert lines[0] == f"QC FAILED: {len(failed)} of {len(data['checks'])} checks failed."
    assert lines[1].startswith("preset: none; target: none")
    checks = lines[lines.index("checks:") + 1 : lines.index("checks:") + 1 + len(data["checks"])]
    assert [line.split()[0] for line in checks] == ["FAIL"] * len(failed) + ["ok"] * (len(checks) - len(failed))
    assert any(line.startswith("  FAIL Clipping") for line in checks)
    (track,) = data["tracks"]
    assert f"Track 1 (es-es): {track['title']} (default, dub)" in lines
    assert f"  true peak {track['true_peak']:.1f} dBTP; loudness range {track['lra']:.1f} LU; " in "\n".join(lines)

    as_json = ok(altdub("qc", str(clipped_run), task_id, "--json", cwd=tmp_path, **_env(server)))
    assert json.loads(as_json.stdout) == data

    page = tmp_path / "report.html"
    saved = ok(altdub("qc", str(clipped_run), task_id, "--html", str(page), cwd=tmp_path, **_env(server)))
    assert saved.stdout.splitlines()[0] == lines[0] and f"saved {page}" in saved.stderr
    parsed = Page(page.read_text(encoding="utf-8"))
    assert len(parsed.svgs()) == 1 and parsed.rows[0]["data-check"] == failed[0]["name"]
    assert not (tmp_path / "report.html.part").exists()


def test_qc_of_an_unknown_task_says_why(server: Server, clipped_run: int, tmp_path: Path) -> None:  # noqa: F811
    result = altdub("qc", str(clipped_run), "no-such-task", cwd=tmp_path, **_env(server))
    assert result.returncode == 1
    assert result.stderr.startswith("error: HTTP 404:"), result.stderr
    assert "Traceback" not in result.stderr
