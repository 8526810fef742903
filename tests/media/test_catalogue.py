"""Every reader of the format catalogue agrees with it (media/catalogue.py).

The options resolver takes exactly the values the catalogue lists per format and refuses every other
with an OptionError naming the option; the OpenAPI enums, ``GET /formats`` (in process and from a real
``altdub serve``), ``altdub export --help`` (with the formats that take several languages) and the dashboard's
selects (Chromium) show the same values.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from altdub.media import catalogue
from altdub.media.catalogue import CATALOGUE, LOUDNESS_TARGETS, Format
from altdub.media.formats import DOWNLOAD_TYPES
from altdub.media.options import OptionError, resolve_options
from altdub.media.probe import StreamInfo
from tests.conftest import Media
from tests.e2e.conftest import ALTDUB, Server, ServerFactory, clean_env, import_run

OPTION_KEYS = (
    "audio_bitrate", "sample_rate", "channels", "loudness", "stem",
    "include_original_audio", "subtitles", "start_timecode", "raster",
)  # fmt: skip
# Values no format takes, beside every value some format takes: each format must refuse what it does not list.
OUTSIDERS: dict[str, tuple[Any, ...]] = {
    "audio_bitrate": ("31k", "513k", "128", "128kb", "k", ""),
    "sample_rate": (8000, 16000, 88200, 192000, 0, "48000"),
    "channels": (0, 3, 4, 8, "2"),
    "loudness": ("loud", "EBU_R128", ""),
    "stem": ("drums", "Mix", ""),
    "include_original_audio": ("yes",),
    "subtitles": ("hard", "Soft", ""),
    "raster": ("Broadcast", "1920x1080", ""),
    "start_timecode": ("1:00:00:00", "01:00:00", "01:60:00:00", "01:00:00.00", "01:00:00;00 ", "", 3600),
}
# A dub whose own rate no format offers, so "the dub's own rate" adds nothing to the lists.
DUB = StreamInfo(index=0, kind="audio", codec="pcm_s16le", duration=4.0, sample_rate=37800, channels=2)


def _every_value_of(key: str) -> tuple[Any, ...]:
    listed = catalogue.union([tuple(f.options()[key]["values"]) for f in CATALOGUE.values() if key in f.options()])
    return listed + OUTSIDERS[key]


def _allowed(fmt: Format, key: str) -> list[Any]:
    spec = fmt.options().get(key)
    if spec is None:
        return []
    if key == "audio_bitrate":
        low, high = fmt.bitrate_kbps or (0, 0)
        return [f"{k}k" for k in range(low, high + 1)]
    return spec["values"]


# --- the resolver ---------------------------------------------------------------------------------------


def test_downloads_are_served_with_the_catalogue_types() -> None:
    assert {f.extension: f.content_type for f in CATALOGUE.values()}.items() <= DOWNLOAD_TYPES.items()


@pytest.mark.parametrize("output_format", list(CATALOGUE))
def test_resolver_takes_every_listed_value(output_format: str) -> None:
    fmt = CATALOGUE[output_format]
    for key in fmt.options():
        for value in _allowed(fmt, key):
            resolved = resolve_options(output_format, {key: value}, DUB).as_dict()[key]
            expected = int(value[:-1]) * 1000 if key == "audio_bitrate" else value
            assert resolved == expected, (output_format, key, value, resolved)


@pytest.mark.parametrize("output_format", list(CATALOGUE))
def test_resolver_refuses_every_other_value_naming_the_key(output_format: str) -> None:
    fmt = CATALOGUE[output_format]
    tried = 0
    for key in OPTION_KEYS:
        allowed = _allowed(fmt, key)
        candidates = [*_every_value_of(key), *(("soft", True, "128k") if key not in fmt.options() else ())]
        for value in candidates:
            if value in allowed or (key not in fmt.options() and value in (False, "none")):
                continue
            with pytest.raises(OptionError) as caught:
                resolve_options(output_format, {key: value}, DUB)
            assert caught.value.key == key, (output_format, key, value)
            assert caught.value.message, (output_format, key, value)
            tried += 1
    assert tried >= 25, tried


def test_mxf_is_48k_only_and_mp3_has_no_96k_nor_5_1() -> None:
    """The facts the dashboard used to get wrong, said plainly."""
    assert CATALOGUE["mxf"].options()["sample_rate"]["values"] == [48000]
    assert 96000 not in CATALOGUE["mp3"].options()["sample_rate"]["values"]
    assert 6 not in CATALOGUE["mp3"].options()["channels"]["values"]
    assert [f.name for f in CATALOGUE.values() if f.multiple_languages] == ["mp4", "mov", "mkv", "mxf", "hls", "dash"]
    assert catalogue.formats_with("subtitles") == ["mp4", "mov", "mkv", "hls", "dash"]
    for package in ("hls", "dash"):  # a stereo AAC rendition per language; a package has no timecode track
        options = CATALOGUE[package].options()
        assert (options["channels"]["values"], options["sample_rate"]["values"]) == ([2], [48000, 44100])
        assert "start_timecode" not in options and "raster" not in options
    assert catalogue.formats_with("include_original_audio") == [f.name for f in CATALOGUE.values() if f.is_video]


# --- the API: OpenAPI and GET /formats ---------------------------------------------------------------------


def _enum(schema: dict[str, Any]) -> list[Any]:
    for candidate in [schema, *schema.get("anyOf", [])]:
        if "enum" in candidate:
            return candidate["enum"]
    raise AssertionError(f"no enum in {schema}")


def _expected_formats() -> dict[str, Any]:
    """GET /formats as the catalogue says it, in JSON's terms."""
    formats = []
    for f in CATALOGUE.values():
        options = {key: {"min": None, "max": None, "pattern": None} | spec for key, spec in f.options().items()}
        formats.append(
            {
                "name": f.name,
                "label": f.label,
                "note": f.note,
                "extension": f.extension,
                "content_type": f.content_type,
                "muxer": f.muxer,
                "audio_codecs": list(f.audio_codecs),
                "is_video": f.is_video,
                "multiple_languages": f.multiple_languages,
                "package_entry": f.package_entry,
                "options": options,
            }
        )
    targets = [
        {
            "name": t.name,
            "label": t.label,
            "integrated": t.integrated,
            "true_peak": t.true_peak,
            "tolerance": t.tolerance,
            "dialogue_gated": t.dialogue_gated,
            "lra": t.lra,
        }
        for t in LOUDNESS_TARGETS.values()
    ]
    return {"formats": formats, "loudness_targets": targets}


def test_openapi_enums_are_the_catalogue(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["ExportRequest"]["properties"]
    assert _enum(request["output_format"]) == list(CATALOGUE)
    assert _enum(request["channels"]) == list(catalogue.union([f.channels for f in CATALOGUE.values()]))
    assert _enum(request["loudness"]) == list(LOUDNESS_TARGETS)
    assert _enum(request["stem"]) == list(catalogue.STEMS)
    assert _enum(request["subtitles"]) == list(catalogue.SUBTITLE_MODES)
    for fmt in CATALOGUE.values():  # the descriptions name each format's narrower lists
        if fmt.sample_rates != catalogue.SAMPLE_RATES:
            assert f"{fmt.name}: " in request["sample_rate"]["description"], fmt.name
    assert "get" in schema["paths"]["/formats"]


def test_get_formats_is_the_catalogue(client: TestClient) -> None:
    response = client.get("/formats")
    assert response.status_code == 200, response.text
    assert response.json() == _expected_formats()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Server]:
    """A real ``altdub serve`` with one video run (es-es dub)."""
    factory = ServerFactory()
    server = factory(tmp_path_factory.mktemp("altdub-catalogue"), demo=False)
    assert server.api_key, server.text
    response = import_run(server.base_url, server.api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    assert response.status_code == 201, response.text
    yield server
    factory.stop_all()


@pytest.mark.e2e
def test_a_served_process_answers_the_catalogue(served: Server) -> None:
    response = httpx.get(f"{served.base_url}/formats", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == _expected_formats()
    # and refuses, through HTTP, a value the catalogue does not list, naming the option
    headers = {"x-api-key": str(served.api_key)}
    run_id = httpx.get(f"{served.base_url}/runs", headers=headers, timeout=30).json()["items"][0]["run_id"]
    body = {"output_format": "mxf", "sample_rate": 44100}
    answer = httpx.post(f"{served.base_url}/dub-alt-format/{run_id}/es-es", json=body, headers=headers, timeout=30)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "sample_rate"], answer.text


# --- the CLI ---------------------------------------------------------------------------------------------


def test_cli_help_lists_every_format_and_value(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ALTDUB), "export", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(COLUMNS="400", TERM="dumb", NO_COLOR="1"),
        timeout=60,
        check=True,
    )
    text = " ".join(done.stdout.split())  # rich wraps and pads; the words stay in order
    assert ", ".join(CATALOGUE) in text, text
    for described in (
        catalogue.describe_sample_rates(),
        catalogue.describe_channels(),
        catalogue.describe_bitrates(),
        catalogue.describe_loudness(),
        catalogue.describe_subtitles(),
        catalogue.describe_start_timecode(),
        catalogue.describe_raster(),
        catalogue.describe_languages(),
    ):
        assert " ".join(described.split()) in text, described
    several = [f.name for f in CATALOGUE.values() if f.multiple_languages]
    assert f"need a format that takes them: {', '.join(several[:-1])} or {several[-1]}." in text, text


# --- the dashboard ---------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("output_format", ["mxf", "mp3", "mp4"])
def test_dashboard_selects_show_the_catalogue(served: Server, output_format: str) -> None:
    from tests.web.test_dashboard import CHROMIUM, CHROMIUM_ARGS, _unavailable, sign_in

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    fmt = CATALOGUE[output_format]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            sign_in(page, served)
            page.locator(".run-card").first.get_by_role("link", name="Export").click()
            formats = page.locator("#export-format option")
            formats.first.wait_for(state="attached")
            assert formats.evaluate_all("options => options.map(o => o.value)") == list(CATALOGUE)
            page.locator("#export-format").select_option(output_format)
            for key, select in (
                ("audio_bitrate", "#opt-bitrate"),
                ("sample_rate", "#opt-rate"),
                ("channels", "#opt-channels"),
                ("loudness", "#opt-loudness"),
                ("stem", "#opt-stem"),
                ("raster", "#opt-raster"),
            ):
                field = page.locator(f'[data-option="{key}"]')
                if key not in fmt.options():
                    assert field.is_hidden(), (output_format, key)
                    continue
                spec = fmt.options()[key]
                shown = page.locator(f"{select} option").evaluate_all("options => options.map(o => o.value)")
                assert shown[0] == "", shown  # the default
                # the stem and raster selects' first option is their default itself
                expected = [str(v) for v in spec["values"] if not (key in ("stem", "raster") and v == spec["default"])]
                assert shown[1:] == expected, (output_format, key, shown)
            for key in ("include_original_audio", "subtitles", "start_timecode"):
                visible = page.locator(f'[data-option="{key}"]').is_visible()
                assert visible == (key in fmt.options()), (output_format, key)
        finally:
            browser.close()
