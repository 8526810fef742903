"""The QC report in the dashboard (issue 15), in Debian's Chromium against a real ``altdub serve``.

A failing export (a clipped dub, delivered as it is in WAV) and a passing one (the same dub normalised
to Apple Podcasts' -16 LUFS, which takes it off full scale) get their pass/fail badges in the run's
exports; the "QC report" button opens the report's page in a new tab
(fetched with the key, shown from a blob: URL under the dashboard's policy), whose plots load and
whose screenshot (desktop and phone, saved with the test artifacts) is not blank.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from PIL import Image, ImageStat

from altdub.media.synth import make_tone
from tests.api.test_qc_reports import _clipped_dub
from tests.e2e.conftest import Server, import_run_id, wait_for_task
from tests.web.test_dashboard import PHONE, TIMEOUT_MS, browser, page, server, shot, sign_in  # noqa: F401  (fixtures)

SECONDS = 10.0
SRT = "1\n00:00:00,500 --> 00:00:09,500\nUna frase larga, larga, larga.\n"


def _export(started: Server, run_id: int, body: dict[str, object]) -> str:
    headers = {"x-api-key": started.api_key or ""}
    answer = httpx.post(f"{started.base_url}/runs/{run_id}/exports", headers=headers, json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task_id"]
    assert wait_for_task(started.base_url, started.api_key or "", task_id, timeout=120)["status"] == "SUCCESS"
    return task_id


def _not_blank(path: Path) -> None:
    """Many colours, and real contrast: a page with its text, table and plots, not an empty or flat one."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 200, f"{path.name}: only {len(colours)} colours"
        spread = ImageStat.Stat(rgb.convert("L")).stddev[0]
        assert spread > 20, f"{path.name}: grey levels spread {spread:.1f}"


def _plots_loaded(report_page, count: int) -> None:
    images = report_page.locator("figure img")
    assert images.count() == count
    for i in range(count):
        loaded = images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
        assert loaded, f"plot {i} did not load"


def test_badges_and_the_report_page(page, server: Server, tmp_path: Path):  # noqa: F811
    from playwright.sync_api import expect

    transcript = tmp_path / "es.srt"
    transcript.write_text(SRT, encoding="utf-8")
    source = make_tone(tmp_path / "source.wav", SECONDS, tone_hz=300)
    run_id = import_run_id(
        server.base_url,
        server.api_key or "",
        {"source": source, "dub_es-es": _clipped_dub(tmp_path / "dub.wav", SECONDS), "transcript_es-es": transcript},
        name="QC <b>report</b> run",
    )
    failing = _export(server, run_id, {"output_format": "wav"})
    normalised = _export(server, run_id, {"output_format": "m4a", "loudness": "apple_podcasts"})
    reports = {
        task: httpx.get(
            f"{server.base_url}/runs/{run_id}/exports/{task}/qc", headers={"x-api-key": server.api_key or ""}
        ).json()
        for task in (failing, normalised)
    }
    assert not reports[failing]["passed"] and reports[normalised]["passed"], reports
    assert "clipping" in {c["name"] for c in reports[failing]["checks"] if not c["passed"]}

    sign_in(page, server)
    page.goto(f"{server.base_url}/#/runs/{run_id}")
    rows = page.locator('[data-role="history"] tr')
    expect(rows).to_have_count(2)
    for task, report in reports.items():
        row = page.locator(f'[data-role="history"] tr[data-task="{task}"]')
        badge = row.locator("[data-qc]")
        expect(badge).to_have_attribute("data-qc", "passed" if report["passed"] else "failed")
        for check in report["checks"]:
            if not check["passed"]:
                expect(badge).to_contain_text(check["name"])
    shot(page, "24-qc-badges", locator=page.locator('[data-role="history-section"]'))

    report_page = _open_report(page, failing)
    expect(report_page).to_have_title("QC report: Failed")
    expect(report_page.locator("p.subject")).to_have_text(f"Run {run_id}, export {failing}")
    # the run's name is in the track-tags check, shown as the text it is
    expect(report_page.locator('tr[data-check="track_tags"]')).to_contain_text("QC <b>report</b> run")
    assert report_page.locator("table b").count() == 0
    expect(report_page.locator("header.verdict")).to_have_attribute("data-passed", "false")
    expect(report_page.locator('tr[data-check="clipping"]')).to_have_class("fail")
    assert report_page.locator("table.checks tbody tr").first.get_attribute("class") == "fail"  # failing first
    _plots_loaded(report_page, len(reports[failing]["tracks"]))
    # the inline stylesheet applied under the dashboard's policy: the verdict's border is the failing red
    border = report_page.locator("header.verdict").evaluate("e => getComputedStyle(e).borderLeftColor")
    assert border == "rgb(207, 34, 46)", border
    _not_blank(shot(report_page, "25-qc-report"))

    report_page.set_viewport_size(PHONE)
    overflow = report_page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the report scrolls sideways by {overflow} px on a phone"
    width = report_page.locator("figure img").first.evaluate("img => img.getBoundingClientRect().width")
    assert width < PHONE["width"], width  # the plot scaled down to the screen
    _not_blank(shot(report_page, "26-qc-report-phone"))
    report_page.close()

    # the passing report, normalised to a preset: the target band and the ceiling in its plot
    report_page = _open_report(page, normalised)
    expect(report_page).to_have_title("QC report: Passed · apple_podcasts")
    expect(report_page.locator("header.verdict")).to_have_attribute("data-passed", "true")
    assert report_page.locator("table.checks tbody tr.fail").count() == 0
    _plots_loaded(report_page, len(reports[normalised]["tracks"]))
    _not_blank(shot(report_page, "27-qc-report-preset"))
    report_page.close()


def _open_report(page, task_id: str):  # noqa: F811
    """Click the export's QC report button; the tab it opens, once the page is in it."""
    row = page.locator(f'[data-role="history"] tr[data-task="{task_id}"]')
    with page.context.expect_page() as opened:
        row.get_by_role("button", name="QC report").click()
    report_page = opened.value
    report_page.wait_for_url("blob:**", timeout=TIMEOUT_MS)  # from about:blank, once the page is fetched
    report_page.wait_for_load_state("load")
    return report_page


def test_the_screenshot_check_tells_a_blank_page(tmp_path: Path):
    """The pixel check above fails on a blank page (so a passing run means something)."""
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), "white").save(blank)
    try:
        _not_blank(blank)
    except AssertionError:
        return
    raise AssertionError("a blank image passed the check")
