"""The web dashboard, end to end: Debian's Chromium, driven by Playwright, against a real ``altdub serve``.

Signs in, imports a run through the upload form, exports it as mp3 and mp4, follows the progress
until SUCCESS, downloads both through the page's links and probes them; exports masters of two
languages (mkv, mxf) with the default track chosen; checks that failures are shown in the page; shows an
export's webhook deliveries (a loopback receiver) and redelivers one, the workspace's storage and an export
the storage lifecycle removed; plays an hls export of three languages in the preview player and switches its
language mid-play (local storage, and S3: moto's server); previews single-file exports; saves a screenshot of
each main screen to ``test-artifacts/screenshots/``.

The browser is the system's (``apt-get install chromium``); Playwright never downloads one. Without
it the tests are skipped, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from altdub.media.probe import probe
from altdub.media.synth import make_tone, make_video
from tests.conftest import SOURCE_SECONDS, Media
from tests.e2e.conftest import Server, ServerFactory, import_run, wait_for_task
from tests.scaleout.conftest import S3Server, new_prefix, s3  # noqa: F401  (the moto server fixture)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("ALTDUB_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 90_000  # an export on a slow CI machine


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run; .ci/run installs them)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Server]:
    """A first start (no demo run) with an audio-only run already imported through the API."""
    factory = ServerFactory()
    started = factory(tmp_path_factory.mktemp("altdub-web"), demo=False)
    assert started.api_key, started.text
    response = import_run(
        started.base_url,
        started.api_key,
        {"source": media.audio_source, "dub_es-es": media.dub_wav},
        name="Podcast episode 12",
    )
    assert response.status_code == 201, response.text
    yield started
    factory.stop_all()


@pytest.fixture
def page(browser, server: Server, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    yield tab
    context.close()
    assert not problems, problems


def shot(page, name: str, *, full_page: bool = True, locator=None) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if locator is not None:
        locator.screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=full_page)
    return path


def sign_in(page, server: Server) -> None:
    page.goto(server.base_url + "/")
    page.get_by_label("API key").fill(server.api_key)
    page.get_by_label("API key").press("Enter")
    page.get_by_role("heading", name="Runs", level=1).wait_for()


def wait_for_success(page, fmt: str) -> object:
    task = page.locator(f'.task-list [data-format="{fmt}"]').first
    task.locator('[data-status="SUCCESS"]').wait_for()
    return task


def test_sign_in_import_export_and_download(page, server: Server, media: Media, tmp_path: Path):
    from playwright.sync_api import expect

    # --- sign in, with the keyboard alone
    page.goto(server.base_url + "/")
    expect(page).to_have_title("Sign in · altdub")
    expect(page.get_by_label("API key")).to_be_focused()  # focused on arrival
    shot(page, "01-sign-in")
    page.keyboard.type(server.api_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Runs", level=1)).to_be_visible()
    expect(page.locator(".run-card")).to_have_count(1)
    expect(page.locator(".run-card").first).to_contain_text("Audio only")

    # --- import a run through the form, the upload slowed so that its progress shows
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import a run").click()
    expect(page.get_by_role("heading", name="Import a run")).to_be_focused()
    page.get_by_label("Name (optional)").fill("Browser test run")
    expect(page.get_by_label("Source language")).to_have_value("en-us")
    page.get_by_label("Source file").set_input_files(media.video)
    page.locator("#dub1-language").select_option("es-es")
    page.locator("#dub1-dub").set_input_files(media.dub_wav)
    page.get_by_role("button", name="+ Add another language").click()
    expect(page.locator("#dub2-language")).to_be_focused()
    page.locator("#dub2-language").select_option("fr-fr")
    page.locator("#dub2-dub").set_input_files(media.dub_flac)
    shot(page, "03-import")

    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    total = sum(p.stat().st_size for p in (media.video, media.dub_wav, media.dub_flac))
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": max(total // 4, 50_000)},
    )
    page.get_by_role("button", name="Import run").click()
    progress = page.locator("#upload-progress")
    expect(progress).to_be_visible()
    page.wait_for_function("() => { const v = document.querySelector('#upload-progress')?.value; return v > 5; }")
    expect(page.get_by_role("button", name="Cancel upload")).to_be_visible()
    shot(page, "04-import-uploading")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    # --- the run's page: export as mp3 and as mp4, follow them to SUCCESS
    page.wait_for_url(re.compile(r"#/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", name="Browser test run", level=1)).to_be_visible()
    thumbnail = page.locator(".run-head .thumb img")
    expect(thumbnail).to_be_visible()
    assert thumbnail.evaluate("img => img.naturalWidth") == 320
    expect(page.get_by_label("Language", exact=True)).to_have_value("es-es")

    page.get_by_label("Format", exact=True).select_option("mp3")
    expect(page.get_by_label("Audio bitrate")).to_be_visible()
    expect(page.get_by_label("Add the original-language audio as a second track")).to_be_hidden()
    page.get_by_role("button", name="Start export").click()
    mp3_task = page.locator('.task-list [data-format="mp3"]').first
    expect(mp3_task).to_be_visible()

    page.get_by_label("Language", exact=True).select_option("fr-fr")
    page.get_by_label("Format", exact=True).select_option("mp4")
    expect(page.get_by_label("Add the original-language audio as a second track")).to_be_visible()
    page.get_by_label("Add the original-language audio as a second track").check()
    page.get_by_role("button", name="Start export").click()
    mp4_task = page.locator('.task-list [data-format="mp4"]').first
    expect(mp4_task).to_be_visible()
    shot(page, "05-export-progress")

    expect(mp3_task.locator('[data-status="SUCCESS"]')).to_be_visible(timeout=TIMEOUT_MS)
    expect(mp4_task.locator('[data-status="SUCCESS"]')).to_be_visible(timeout=TIMEOUT_MS)
    expect(mp4_task).to_contain_text("+ original audio")
    shot(page, "06-export-done")

    # --- download both through the page's links, and check what came
    downloads = {}
    for fmt, task in (("mp3", mp3_task), ("mp4", mp4_task)):
        with page.expect_download() as info:
            task.get_by_role("link", name="Download").click()
        download = info.value
        language = "es-es" if fmt == "mp3" else "fr-fr"
        assert download.suggested_filename == f"run-{run_id}_{language}.{fmt}"
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        downloads[fmt] = probe(target)
    mp3, mp4 = downloads["mp3"], downloads["mp4"]
    assert mp3.format_name == "mp3" and [s.codec for s in mp3.audio] == ["mp3"] and not mp3.video
    assert abs(mp3.duration - SOURCE_SECONDS) <= 0.05
    assert "mp4" in mp4.format_name and [s.codec for s in mp4.video] == ["h264"]
    assert [s.codec for s in mp4.audio] == ["aac", "aac"]  # the dub, then the original
    assert mp4.audio[0].language == "fre" and mp4.audio[0].default
    assert abs(mp4.duration - SOURCE_SECONDS) <= 0.05

    # --- past exports: status, size and loudness figures
    history = page.locator('[data-role="history"] tr')
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_have_attribute("data-format", "mp4")  # newest first
    expect(history.nth(1)).to_have_attribute("data-format", "mp3")
    for row in (history.nth(0), history.nth(1)):
        expect(row).to_have_attribute("data-status", "SUCCESS")
        expect(row.locator('td[data-label="Size"]')).to_have_text(re.compile(r"^\d+(\.\d)? (KB|MB)$"))

    # a loudness-normalised export shows its measured figures (a one-language format: the language select is back)
    page.get_by_label("Format", exact=True).select_option("m4a")
    expect(page.get_by_label("Language", exact=True)).to_have_value("fr-fr")  # the mp4's language, kept
    page.get_by_label("Language", exact=True).select_option("es-es")
    page.get_by_label("Loudness").select_option("streaming")
    page.get_by_role("button", name="Start export").click()
    expect(page.locator('.task-list [data-format="m4a"] [data-status="SUCCESS"]')).to_be_visible(timeout=TIMEOUT_MS)
    m4a_row = page.locator('[data-role="history"] tr[data-format="m4a"]')
    expect(m4a_row).to_have_attribute("data-status", "SUCCESS")
    expect(m4a_row.locator('td[data-label="Loudness"]')).to_contain_text("LUFS")
    expect(m4a_row.locator('td[data-label="Loudness"]')).to_contain_text("dBTP")
    shot(page, "07-history", locator=page.locator('[data-role="history-section"]'))
    shot(page, "08-run")

    # the same export again is ready at once
    page.get_by_role("button", name="Start export").click()
    expect(page.locator(".task-list li").first).to_contain_text("already existed")

    # --- back to the list: both runs, with languages, durations and a thumbnail
    page.get_by_role("link", name="Runs", exact=True).first.click()
    cards = page.locator(".run-card")
    expect(cards).to_have_count(2)
    expect(cards.first).to_contain_text("Browser test run")
    expect(cards.first).to_contain_text("Spanish (Spain)")
    expect(cards.first).to_contain_text("French (France)")
    expect(cards.first).to_contain_text("0:04")
    expect(cards.first.locator(".thumb img")).to_be_visible()
    shot(page, "02-runs")


def test_a_master_of_two_languages(page, server: Server, media: Media, tmp_path: Path):
    """Issue 12: a master format offers every language of the run (checkboxes, in import order) and a default track."""
    import httpx
    from playwright.sync_api import expect

    files = {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac}
    response = import_run(server.base_url, server.api_key, files, name="Two-language master")
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    sign_in(page, server)
    page.goto(f"{server.base_url}/#/runs/{run_id}")
    expect(page.get_by_role("heading", name="Two-language master", level=1)).to_be_visible()

    # an audio format takes one language: a select; a master takes several: checkboxes, the first checked
    page.get_by_label("Format", exact=True).select_option("mp3")
    expect(page.get_by_label("Language", exact=True)).to_be_visible()
    languages = page.get_by_role("group", name="Languages")
    expect(languages).to_be_hidden()
    page.get_by_label("Format", exact=True).select_option("mkv")
    expect(page.get_by_label("Language", exact=True)).to_be_hidden()
    expect(languages).to_be_visible()
    spanish, french = (
        languages.get_by_label("Spanish (Spain) (es-es)"),
        languages.get_by_label("French (France) (fr-fr)"),
    )
    expect(spanish).to_be_checked()
    expect(french).not_to_be_checked()
    default = page.get_by_label("Default track")
    expect(default).to_have_value("es-es")
    assert default.locator("option").all_inner_texts() == ["Spanish (Spain) (es-es)"]

    # nothing checked: the form says so before asking the service
    spanish.uncheck()
    page.get_by_role("button", name="Start export").click()
    expect(page.locator('[data-role="export-alert"]')).to_contain_text("Languages: Check at least one language.")
    expect(page.locator("#export-languages")).to_have_attribute("aria-invalid", "true")

    spanish.check()
    expect(page.locator("#export-languages-error")).to_have_count(0)  # answered: the mark goes
    expect(page.locator("#export-languages")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-role="export-alert"]')).to_be_hidden()
    french.check()
    expect(page.get_by_label("Add the original-language audio after the dubbed tracks")).to_be_visible()
    assert default.locator("option").all_inner_texts() == ["Spanish (Spain) (es-es)", "French (France) (fr-fr)"]
    default.select_option("fr-fr")
    shot(page, "16-export-master", locator=page.locator('[data-role="export-form"]'))
    page.get_by_role("button", name="Start export").click()
    task = wait_for_success(page, "mkv")
    expect(task.locator(".task-title")).to_have_text("MKV · Spanish (Spain), French (France) (default)")

    row = page.locator('[data-role="history"] tr[data-format="mkv"]')
    expect(row).to_have_attribute("data-status", "SUCCESS")
    cell = row.locator('td[data-label="Languages"]')
    expect(cell.locator("li")).to_have_text(["es-es", "fr-fr default"])
    url = row.get_by_role("link", name="Download").get_attribute("href")
    download = httpx.get(url, timeout=30)
    assert download.status_code == 200, download.text
    master = tmp_path / "master.mkv"
    master.write_bytes(download.content)
    info = probe(master)
    assert [s.codec for s in info.video] == ["h264"]
    assert [(a.language, a.default) for a in info.audio] == [("spa", False), ("fre", True)]

    # MXF: the same languages (kept from mkv), and its track sheet shown with the export
    page.get_by_label("Format", exact=True).select_option("mxf")
    expect(french).to_be_checked()
    expect(default).to_have_value("fr-fr")
    page.get_by_label("Raster").select_option("source")
    page.get_by_role("button", name="Start export").click()
    wait_for_success(page, "mxf")
    row = page.locator('[data-role="history"] tr[data-format="mxf"]')
    expect(row).to_have_attribute("data-status", "SUCCESS")
    sheet = row.locator(".track-sheet")
    expect(sheet.locator("summary")).to_have_text("Track sheet (4 tracks)")
    sheet.locator("summary").click()
    expect(sheet.locator("li")).to_have_text(
        ["A1 Spanish (Spain) L", "A2 Spanish (Spain) R", "A3 French (France) L", "A4 French (France) R"]
    )
    shot(page, "17-master-history", locator=page.locator('[data-role="history-section"]'))

    # back to one language: the default track is the language chosen
    page.get_by_label("Format", exact=True).select_option("wav")
    expect(page.get_by_label("Language", exact=True)).to_have_value("fr-fr")


def test_failures_are_shown_in_the_page(page, server: Server, media: Media):
    from playwright.sync_api import expect

    # a bad key at sign-in
    page.goto(server.base_url + "/")
    page.get_by_label("API key").fill("altdub_this-is-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert").first
    expect(alert).to_contain_text("The API key was refused: Invalid or revoked API key")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#api-key-error")).to_have_text("This key is unknown or revoked.")
    shot(page, "09-sign-in-error")

    # a dub whose length differs from the source's (the service's 422, beside the field)
    sign_in(page, server)
    page.goto(server.base_url + "/#/import")
    page.get_by_label("Source file").set_input_files(media.video)
    page.locator("#dub1-language").select_option("de-de")
    page.locator("#dub1-dub").set_input_files(media.dub_too_short)
    page.get_by_role("button", name="Import run").click()
    alert = page.locator('[data-role="alert"]')
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("The service did not accept this request")
    expect(alert).to_contain_text("Dubbed mix (German (Germany))")
    expect(alert).to_contain_text("more than the 2 % allowed")
    expect(page.locator("#dub1-dub")).to_have_attribute("aria-invalid", "true")
    expect(alert).to_be_focused()
    shot(page, "10-import-error")

    # the form's own checks: a missing dub file and language
    page.goto(server.base_url + "/#/runs")
    page.goto(server.base_url + "/#/import")
    page.get_by_role("button", name="Import run").click()
    expect(page.locator('[data-role="alert"]')).to_contain_text("Please correct the marked fields")
    expect(page.locator("#dub1-language-error")).to_have_text("Choose the language of this dub.")

    # an option the format cannot take (the service's 422, beside the field)
    page.goto(server.base_url + "/#/runs")
    page.locator(".run-card", has_text="Podcast episode 12").get_by_role(
        "link", name="Podcast episode 12", exact=True
    ).click()
    expect(page.get_by_role("heading", name="Podcast episode 12", level=1)).to_be_visible()
    expect(page.locator(".run-head .thumb")).to_contain_text("Audio only")
    # an audio-only run offers no video format
    assert page.locator('#export-format option[value="mp4"]').is_disabled()
    expect(page.get_by_text("This run has no video, so video formats are not offered.")).to_be_visible()
    expect(page.locator("#opt-stem-hint")).to_have_text(
        "The run has no voice stem in this language and no background stem."
    )
    page.get_by_label("Format", exact=True).select_option("mp3")
    # mp3 is not offered 96 kHz (GET /formats); a page with an older list would send it: the service refuses
    assert page.locator('#opt-rate option[value="96000"]').count() == 0
    page.locator("#opt-rate").evaluate("select => select.append(new Option('96 kHz', '96000'))")
    page.get_by_label("Sample rate").select_option("96000")
    page.get_by_role("button", name="Start export").click()
    export_alert = page.locator('[data-role="export-alert"]')
    expect(export_alert).to_contain_text("Sample rate: expected one of 22050, 44100, 48000")
    expect(page.get_by_label("Sample rate")).to_have_attribute("aria-invalid", "true")
    shot(page, "11-export-error")

    # an unknown run
    page.goto(server.base_url + "/#/runs/999999")
    expect(page.locator('[data-role="alert"]')).to_contain_text("Not found: run not found")

    # a key revoked while signed in: back to the sign-in page, saying why
    page.evaluate("sessionStorage.setItem('altdub.apiKey', 'altdub_revoked-meanwhile')")
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert").first).to_contain_text("refused")


def test_readable_on_a_phone(browser, server: Server):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, server)
        expect(page.locator(".run-card").first).to_be_visible()
        shot(page, "12-phone-runs")
        page.locator(".run-card").first.get_by_role("link", name="Export").click()
        expect(page.get_by_role("button", name="Start export")).to_be_visible()
        shot(page, "13-phone-run")
        page.goto(server.base_url + "/#/import")
        expect(page.get_by_role("button", name="Import run")).to_be_visible()
        shot(page, "14-phone-import")
        for route in ("#/runs", "#/import"):
            page.goto(f"{server.base_url}/{route}")
            page.get_by_role("heading", level=1).wait_for()
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{route} scrolls sideways by {overflow} px on a phone"
    finally:
        context.close()


def test_untrusted_run_names_are_shown_isolated_and_as_text(page, server: Server, media: Media):
    """Issue 11: a name mixing right-to-left text, a direction mark and markup is shown as text, in its own
    isolated element (<bdi>), so it cannot reorder the page around it; plain-text places wrap it in FSI/PDI."""
    from playwright.sync_api import expect

    name = "\u05e9\u05dc\u05d5\u05dd\u200f <img src=x onerror=window.pwned=1> (12)"
    response = import_run(server.base_url, server.api_key, {"dub_es-es": media.dub_wav}, name=name)
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    sign_in(page, server)
    card = page.locator(f'.run-card[data-run-id="{run_id}"]')
    shown = card.locator(".run-name bdi")
    expect(shown).to_have_count(1)
    assert shown.evaluate("el => el.textContent") == name
    assert shown.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
    assert card.locator("img").count() == 0  # the markup stayed text

    card.get_by_role("link", name="Export").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading.locator("bdi")).to_have_text(name)
    assert page.title() == f"\u2068{name}\u2069 · altdub"
    assert page.evaluate("window.pwned") is None


def test_api_docs_render_with_the_network_closed(page, server: Server):
    """Issue 12: /docs shows every operation of the schema with nothing reachable but the service itself."""
    import httpx
    from playwright.sync_api import expect

    elsewhere: list[str] = []

    def only_the_service(route) -> None:
        if route.request.url.startswith(server.base_url + "/"):
            route.continue_()
        else:  # what a machine without internet access would get
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_the_service)
    schema = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    operations = [(method.upper(), path) for path, item in schema["paths"].items() for method in item]
    page.goto(server.base_url + "/docs")
    blocks = page.locator(".opblock")
    expect(blocks.first).to_be_visible()
    expect(blocks).to_have_count(len(operations))
    export = page.locator(".opblock-post", has=page.locator('[data-path="/dub-alt-format/{run_id}/{language}"]'))
    expect(export).to_be_visible()
    shot(page, "15-api-docs-offline")
    assert not elsewhere, f"/docs asked for other origins: {elsewhere}"


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on loopback: records each POST's body and answers 200."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _succeeded_events(receiver: http.server.ThreadingHTTPServer) -> list[dict[str, object]]:
    return [b for b in receiver.bodies if b["type"] == "export.succeeded"]  # type: ignore[attr-defined]


def test_webhook_deliveries_storage_usage_and_a_removed_export(
    browser, media: Media, receiver: http.server.ThreadingHTTPServer, tmp_path_factory: pytest.TempPathFactory
):
    """Issue 16: an export's webhook deliveries (delivered, then redelivered from the page: a second try), the
    workspace's storage, and an export the lifecycle removed (its message, no download link)."""
    import httpx
    from playwright.sync_api import expect

    from altdub.config import Settings
    from altdub.service import lifecycle
    from altdub.service.context import build_context
    from tests.service.lifecycle_checks import GB, with_clock

    factory = ServerFactory()
    try:
        server = factory(tmp_path_factory.mktemp("altdub-hooks"), env={"ALTDUB_WEBHOOK_ALLOW_PRIVATE": "true"})
        assert server.api_key, server.text
        key = server.api_key
        response = import_run(server.base_url, key, {"dub_es-es": media.dub_wav}, name="Hooked episode")
        assert response.status_code == 201, response.text
        run_id = response.json()["run_id"]
        callback = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/altdub"
        tasks = {}
        for fmt, body in (("wav", {}), ("mp3", {"callback_url": callback})):  # the wav first: the least recently used
            answer = httpx.post(
                f"{server.base_url}/dub-alt-format/{run_id}/es-es",
                headers={"x-api-key": key},
                json={"output_format": fmt, **body},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            tasks[fmt] = answer.json()["task_id"]
            assert wait_for_task(server.base_url, key, tasks[fmt], timeout=TIMEOUT_MS / 1000)["status"] == "SUCCESS"
        deadline = time.monotonic() + 30
        while not _succeeded_events(receiver) and time.monotonic() < deadline:
            time.sleep(0.1)
        (event,) = _succeeded_events(receiver)
        assert event["task_id"] == tasks["mp3"]

        # Another process applies a budget that only the wav's removal meets (its clock past the URLs' lifetime).
        sweeper = build_context(Settings(data_dir=server.data_dir), migrate=False)
        try:
            with_clock(sweeper).at(hours=2)
            listed = httpx.get(f"{server.base_url}/runs/{run_id}/exports", headers={"x-api-key": key}).json()
            wav_size = next(e["size"] for e in listed if e["task_id"] == tasks["wav"])
            sweeper.settings.storage_budget_gb = (lifecycle.stored_bytes(sweeper) - wav_size // 2) / GB
            assert [r.task_id for r in lifecycle.sweep(sweeper)] == [tasks["wav"]]
        finally:
            sweeper.engine.dispose()

        context = browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        try:
            sign_in(page, server)
            storage = page.locator('[data-role="storage"]')
            expect(storage).to_be_visible()
            expect(storage.get_by_role("heading", name="Storage")).to_be_visible()
            expect(storage.locator('[data-role="inputs"]')).to_have_text(re.compile(r"^\d+(\.\d)? (KB|MB)$"))
            expect(storage.locator('[data-role="exports"]')).to_have_text(re.compile(r"^\d+(\.\d)? (KB|MB)$"))
            expect(storage).to_contain_text("1 export kept")
            expect(storage.locator('[data-role="removed"]')).to_have_text("1 export")
            expect(storage).to_contain_text("Exports are kept until their run is deleted.")
            shot(page, "18-storage-usage", locator=storage)

            page.goto(f"{server.base_url}/#/runs/{run_id}")
            expect(page.get_by_role("heading", name="Hooked episode", level=1)).to_be_visible()
            wav_row = page.locator(f'[data-role="history"] tr[data-task="{tasks["wav"]}"]')
            expect(wav_row).to_have_attribute("data-status", "SUCCESS")
            expect(wav_row.locator('[data-role="removed"]')).to_contain_text("removed by the storage lifecycle")
            expect(wav_row.get_by_role("link", name="Download")).to_have_count(0)

            mp3_row = page.locator(f'[data-role="history"] tr[data-task="{tasks["mp3"]}"]')
            expect(mp3_row.get_by_role("link", name="Download")).to_be_visible()
            deliveries = mp3_row.locator('[data-role="deliveries"]')
            deliveries.locator("summary").click()
            succeeded = deliveries.locator('.delivery[data-type="export.succeeded"]')
            expect(succeeded).to_have_attribute("data-event", str(event["event_id"]))
            expect(succeeded.locator(".badge")).to_have_text(re.compile("Delivered"))
            expect(succeeded).to_contain_text(callback)
            tries = succeeded.locator(".attempts li")
            expect(tries).to_have_count(1)
            expect(tries.first).to_contain_text("HTTP 200")
            expect(tries.first).to_contain_text(" ms")

            succeeded.get_by_role("button", name="Redeliver").click()
            expect(tries).to_have_count(2)
            expect(tries.nth(1)).to_contain_text("HTTP 200")
            expect(succeeded.locator(".badge")).to_have_text(re.compile("Delivered"))
            shot(page, "19-webhook-deliveries", locator=page.locator('[data-role="history-section"]'))
            again = _succeeded_events(receiver)
            assert [e["event_id"] for e in again] == [event["event_id"]] * 2  # the same event, sent twice
            assert again[1]["output_url"], again[1]  # a fresh URL of the export still kept
        finally:
            context.close()
        assert not problems, problems
    finally:
        factory.stop_all()


PACKAGE_SECONDS = 16  # three 6 s segments: a switch mid-play lands in a later segment
TONES = {"es-es": 440, "fr-fr": 660, "de-de": 880}  # a distinct tone per dub
NAMES = ["Spanish (Spain)", "French (France)", "German (Germany)"]
SUBTITLES = {"es-es": "Hola, mundo", "de-de": "Hallo, Welt"}


# The media element's sound routed through a Web Audio analyser (and on to the output), kept on the element.
LISTEN = """v => { const context = new AudioContext(); const analyser = context.createAnalyser();
analyser.fftSize = 8192; context.createMediaElementSource(v).connect(analyser); analyser.connect(context.destination);
v.analyser = analyser; return context.state; }"""
# True when the loudest frequency heard is within three FFT bins (16 Hz at 44.1 kHz) of ``hz``.
HEARS = """hz => { const a = document.querySelector('[data-role=player] video').analyser;
const data = new Float32Array(a.frequencyBinCount); a.getFloatFrequencyData(data);
let best = 0; for (let i = 1; i < data.length; i++) if (data[i] > data[best]) best = i;
const bin = a.context.sampleRate / a.fftSize; return data[best] > -80 && Math.abs(best * bin - hz) <= 3 * bin; }"""


def _wait_for_tone(page, hz: int) -> None:
    page.wait_for_function(HEARS, arg=hz)


def _player_time(page) -> float:
    return page.locator('[data-role="player"] video').evaluate("v => v.currentTime")


def _package_run(base_url: str, api_key: str, folder: Path, *, subtitles: bool) -> int:
    """A run of a 16 s H.264 video dubbed into Spanish, French and German (distinct tones), imported over HTTP."""
    video = make_video(folder / "film.mp4", PACKAGE_SECONDS)  # H.264, a keyframe every second
    assert probe(video).video[0].codec == "h264"
    files: dict[str, Path] = {"source": video}
    for code, hz in TONES.items():
        files[f"dub_{code}"] = make_tone(folder / f"{code}.wav", PACKAGE_SECONDS, tone_hz=hz)
    for code, line in SUBTITLES.items() if subtitles else ():  # French has no transcript
        transcript = folder / f"{code}.srt"
        transcript.write_text(f"1\n00:00:00,500 --> 00:00:15,000\n{line}\n", encoding="utf-8")
        files[f"transcript_{code}"] = transcript
    response = import_run(base_url, api_key, files, name="Three-language package")
    assert response.status_code == 201, response.text
    return response.json()["run_id"]


def _watch_segments(page) -> list[str]:
    """The URLs of the CMAF segments the page asks for (a redirect's target too), as they are asked."""
    segments: list[str] = []
    page.on("request", lambda request: segments.append(request.url) if ".m4s" in request.url else None)
    return segments


def _plays_and_switches(page, segments: list[str], screenshot: str) -> None:
    """The preview just opened plays the package in French (the default), then in German once chosen."""
    from playwright.sync_api import expect

    player = page.locator('[data-role="player"] video')
    expect(player).to_be_visible()
    page.wait_for_function("() => document.querySelector('[data-role=player] video').currentTime > 1.5")
    menu = page.get_by_label("Audio language")
    expect(menu.locator("option")).to_have_text(NAMES)
    expect(menu).to_have_value("1")  # French, the playlist's DEFAULT=YES
    assert menu.evaluate("select => select.selectedOptions[0].textContent") == "French (France)"
    assert player.evaluate("v => v.hls.audioTrack") == 1
    assert player.evaluate("v => v.hls.audioTracks.map(t => t.lang)") == ["es-ES", "fr-FR", "de-DE"]
    shot(page, screenshot, locator=page.locator('[data-role="preview-section"]'))
    assert any("/chunk-2-" in url for url in segments), "French (the second rendition) was not fetched"

    # what is heard: the player's sound through an analyser (Web Audio), French's 660 Hz tone
    assert player.evaluate(LISTEN) == "running"
    _wait_for_tone(page, TONES["fr-fr"])
    # switch to German mid-play: the track changes, its segments are fetched, and the picture keeps going
    before = _player_time(page)
    menu.select_option(label="German (Germany)")
    page.wait_for_function(
        "before => { const v = document.querySelector('[data-role=player] video');"
        " return v.hls.audioTrack === 2 && v.currentTime > before + 2 && !v.paused; }",
        arg=before,
    )
    expect(menu).to_have_value("2")
    assert player.evaluate("v => v.hls.audioTracks[v.hls.audioTrack].name") == "German (Germany)"
    assert any("/chunk-3-" in url for url in segments), "German (the third rendition) was not fetched"
    _wait_for_tone(page, TONES["de-de"])  # and now German is heard
    assert player.evaluate("v => v.error") is None


def test_an_hls_package_plays_and_switches_language(page, server: Server, tmp_path: Path):
    """Issue 13: an hls export of three languages plays in the dashboard's preview (hls.js); its language menu
    lists every rendition by name with the default selected; switching language mid-play keeps playing."""
    from playwright.sync_api import expect

    run_id = _package_run(server.base_url, server.api_key, tmp_path, subtitles=True)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    segments = _watch_segments(page)
    sign_in(page, server)
    page.goto(f"{server.base_url}/#/runs/{run_id}")
    expect(page.get_by_role("heading", name="Three-language package", level=1)).to_be_visible()

    # hls takes several languages: the master picker, every language checked, French the default
    page.get_by_label("Format", exact=True).select_option("hls")
    languages = page.get_by_role("group", name="Languages")
    expect(languages).to_be_visible()
    for name, code in zip(NAMES, TONES, strict=True):
        languages.get_by_label(f"{name} ({code})").check()
    page.get_by_label("Default track").select_option("fr-fr")
    expect(page.locator('#opt-channels option[value=""]')).to_have_text("Default (Stereo)")
    page.get_by_label("Add each language's transcript as subtitles").check()
    page.get_by_role("button", name="Start export").click()
    task = wait_for_success(page, "hls")
    expect(task.locator(".task-title")).to_have_text(
        "HLS · Spanish (Spain), French (France) (default), German (Germany)"
    )
    zip_link = task.get_by_role("link", name="as a zip")
    assert zip_link.get_attribute("href").endswith("/package.zip")

    # the preview: hls.js starts the package, in French; then German
    task.get_by_role("button", name="Preview").click()
    _plays_and_switches(page, segments, "20-preview-hls")

    # subtitles: off at first, one per transcript by name; German's cue shown once chosen
    subtitles = page.get_by_label("Subtitles", exact=True)
    expect(subtitles.locator("option")).to_have_text(["Off", "Spanish (Spain)", "German (Germany)"])
    expect(subtitles).to_have_value("-1")
    subtitles.select_option(label="German (Germany)")
    page.wait_for_function(
        "() => { const v = document.querySelector('[data-role=player] video');"
        " return v.hls.subtitleTrack === 1 && [...v.textTracks].some(t => t.mode === 'showing'"
        " && [...(t.cues || [])].some(c => c.text === 'Hallo, Welt')); }"
    )
    shot(page, "21-preview-hls-switched", locator=page.locator('[data-role="preview-section"]'))
    assert not [line for line in console if "Content Security Policy" in line], console

    page.get_by_role("button", name="Close preview").click()
    expect(page.locator('[data-role="preview-section"]')).to_be_hidden()


@pytest.fixture(scope="module")
def s3_server(
    tmp_path_factory: pytest.TempPathFactory,
    s3: S3Server,  # noqa: F811
) -> Iterator[Server]:
    """``altdub serve`` storing in the moto bucket; the bucket answers CORS, as a player on the page needs."""
    s3.client().put_bucket_cors(
        Bucket=s3.bucket,
        CORSConfiguration={
            "CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["*"]}]
        },
    )
    factory = ServerFactory()
    env = {**s3.env, "ALTDUB_STORAGE_URL": s3.storage_url(new_prefix("web"))}
    started = factory(tmp_path_factory.mktemp("altdub-web-s3"), demo=False, env=env)
    assert started.api_key, started.text
    yield started
    factory.stop_all()


def test_an_hls_package_in_s3_plays_and_switches_language(page, s3_server: Server, s3: S3Server, tmp_path: Path):  # noqa: F811
    """Issue 13: the same playback with S3 storage: the playlists come from the service, the segments from the
    bucket (redirects), which the page's policy allows."""
    import httpx

    server = s3_server
    assert server.api_key
    run_id = _package_run(server.base_url, server.api_key, tmp_path, subtitles=False)
    body = {"output_format": "hls", "languages": "all", "default_language": "fr-fr"}
    answer = httpx.post(
        f"{server.base_url}/runs/{run_id}/exports", headers={"x-api-key": server.api_key}, json=body, timeout=60
    )
    assert answer.status_code == 200, answer.text
    segments = _watch_segments(page)
    sign_in(page, server)
    page.goto(f"{server.base_url}/#/runs/{run_id}")
    row = page.locator('[data-role="history"] tr[data-format="hls"][data-status="SUCCESS"]')
    row.wait_for()
    row.get_by_role("button", name="Preview").click()
    _plays_and_switches(page, segments, "22-preview-hls-s3")
    assert any(url.startswith(s3.endpoint + "/") for url in segments), "no segment came from the bucket"


def test_single_file_exports_get_an_audio_or_video_preview(page, server: Server, media: Media):
    """Issue 13: an mp3 plays in an <audio>, an mp4 in a <video>; an mkv (which browsers do not play) has no preview."""
    from playwright.sync_api import expect

    files = {"source": media.video, "dub_es-es": media.dub_wav}
    response = import_run(server.base_url, server.api_key, files, name="One-file previews")
    assert response.status_code == 201, response.text
    sign_in(page, server)
    page.goto(f"{server.base_url}/#/runs/{response.json()['run_id']}")
    expect(page.get_by_role("heading", name="One-file previews", level=1)).to_be_visible()
    for fmt, element in (("mp3", "audio"), ("mp4", "video")):
        page.get_by_label("Format", exact=True).select_option(fmt)
        page.get_by_role("button", name="Start export").click()
        task = wait_for_success(page, fmt)
        task.get_by_role("button", name="Preview").click()
        player = page.locator(f'[data-role="player"] {element}')
        expect(player).to_be_visible()
        page.wait_for_function(f"() => document.querySelector('[data-role=player] {element}').currentTime > 0.5")
        assert player.evaluate("m => m.error") is None
        assert page.locator('[data-role="player"] > *').count() == 1
        expect(page.locator('[data-role="preview-tracks"]')).to_be_hidden()
    shot(page, "23-preview-mp4", locator=page.locator('[data-role="preview-section"]'))
    page.get_by_label("Format", exact=True).select_option("mkv")
    page.get_by_role("button", name="Start export").click()
    task = wait_for_success(page, "mkv")
    expect(task.get_by_role("link", name="Download")).to_be_visible()
    expect(task.get_by_role("button", name="Preview")).to_have_count(0)
