"""POST /runs/{run_id}/exports (DELIVERIES.md §1): which languages, in which order, which default; one identity
with the Camb path; every refusal with the location it names; the listing and the download name of a master.

Identities are compared in an app without workers, where every task stays PENDING: the same export is the
same task_id. Files are compared in an app with workers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.languages import all_languages
from altdub.media.synth import make_tone
from tests.api.conftest import new_key
from tests.conftest import SOURCE_SECONDS, Media, auth, make_run, wait_for_task

IMPORT_ORDER = ["de-de", "fr-fr", "es-es"]  # the upload's field order: neither sorted by id (31, 76, 54) nor by name
SRT = "1\n00:00:00,500 --> 00:00:02,000\nHola.\n"
AUDIO_FORMATS = ["mp3", "aac", "m4a", "flac", "wav"]


@dataclass
class App:
    client: TestClient
    key: str
    runs: dict[str, int]

    def post(self, run: str | int, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        run_id = self.runs[run] if isinstance(run, str) else run
        return self.client.post(f"/runs/{run_id}/exports", headers=auth(key or self.key), json=body)

    def camb(self, run: str, language: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(f"/dub-alt-format/{self.runs[run]}/{language}", headers=auth(self.key), json=body)

    def task_id(self, run: str, **body: Any) -> str:
        """The task the native endpoint answers for ``body`` (the app has no workers: never a URL)."""
        response = self.post(run, body)
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"task_id"}, response.text
        return response.json()["task_id"]

    def finished(self, response: httpx.Response) -> dict[str, Any]:
        """The final status of the export ``response`` answered for (its URL at once, or its task's)."""
        assert response.status_code == 200, response.text
        body = response.json()
        if "output_url" in body:
            return {"status": "SUCCESS", "output_url": body["output_url"]}
        status = wait_for_task(self.client, self.key, body["task_id"])
        assert status["status"] == "SUCCESS", status
        return status


def _dubs(media: Media, languages: list[str]) -> dict[str, Path]:
    return {"source": media.video, **{f"dub_{language}": media.dub_wav for language in languages}}


def _runs(client: TestClient, key: str, media: Media, five: Path | None = None) -> dict[str, int]:
    runs = {
        "trio": make_run(client, key, _dubs(media, IMPORT_ORDER), **{"transcript_es-es": SRT}),
        "solo": make_run(client, key, _dubs(media, ["es-es"])),
    }
    if five is not None:
        files = _dubs(media, [*IMPORT_ORDER, "it-it"]) | {"dub_pt-br": five}
        runs["five"] = make_run(client, key, files)
    return runs


def _settings(tmp_path_factory: pytest.TempPathFactory, name: str) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp(name),
        create_demo=False,
        workers=2,
        task_time_limit=120,
        max_pending_tasks=10_000,  # dozens of PENDING tasks pile up in the idle app
    )


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[App]:
    """An app without workers."""
    with TestClient(create_app(_settings(tmp_path_factory, "idle"), workers=False)) as client:
        key = new_key(client, "first")
        yield App(client, key, _runs(client, key, media))


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[App]:
    """An app with workers, and a run of five languages."""
    five = make_tone(tmp_path_factory.mktemp("five") / "pt.wav", SOURCE_SECONDS, tone_hz=990)
    with TestClient(create_app(_settings(tmp_path_factory, "busy"))) as client:
        key = new_key(client, "first")
        yield App(client, key, _runs(client, key, media, five))


def assert_422(response: httpx.Response, loc: list[str]) -> str:
    """The one error's message, after checking it names ``loc``."""
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc, error
    assert error["msg"], error
    return error["msg"]


def download_name(app: App, url: str) -> str:
    """The file name the signed URL's download offers (Content-Disposition, RFC 6266 ``filename*``)."""
    response = app.client.get(url)
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    found = re.fullmatch(
        r"attachment; (?:filename\*=utf-8''(?P<encoded>\S+)|filename=\"(?P<plain>[^\"]+)\")", disposition
    )
    assert found is not None, disposition
    return unquote(found["encoded"]) if found["encoded"] else found["plain"]


# --- which languages --------------------------------------------------------------------------------------


def test_omitted_all_and_the_full_list_are_one_export(idle: App) -> None:
    omitted = idle.task_id("trio", output_format="mkv")
    assert idle.task_id("trio", output_format="mkv", languages="all") == omitted
    assert idle.task_id("trio", output_format="mkv", languages=IMPORT_ORDER) == omitted


def test_omitted_languages_are_every_dub_in_import_order(idle: App) -> None:
    task_id = idle.task_id("trio", output_format="mkv", languages="all")
    entries = idle.client.get(f"/runs/{idle.runs['trio']}/exports", headers=auth(idle.key)).json()
    (entry,) = [e for e in entries if e["task_id"] == task_id]
    assert entry["languages"] == IMPORT_ORDER
    assert entry["language"] == IMPORT_ORDER[0]  # the default: the first


def test_the_listing_shows_the_languages_in_track_order(idle: App) -> None:
    master = idle.task_id("trio", output_format="mov", languages=["es-es", "de-de"])
    single = idle.task_id("trio", output_format="mov", languages=["fr-fr"])
    entries = idle.client.get(f"/runs/{idle.runs['trio']}/exports", headers=auth(idle.key)).json()
    by_task = {e["task_id"]: e["languages"] for e in entries}
    assert by_task[master] == ["es-es", "de-de"]
    assert by_task[single] == ["fr-fr"]


def test_ids_short_names_and_case_are_one_spelling(idle: App) -> None:
    named = idle.task_id("trio", output_format="mp4", languages=["es-es", "fr-fr"])
    assert idle.task_id("trio", output_format="mp4", languages=[54, 76]) == named
    assert idle.task_id("trio", output_format="mp4", languages=["54", "fr-fr"]) == named
    assert idle.task_id("trio", output_format="mp4", languages=["ES-ES", " Fr-Fr"]) == named
    assert idle.task_id("trio", output_format="mp4", languages=[54, "FR-FR"], default_language="es-es") == named


def test_order_is_part_of_the_identity(idle: App) -> None:
    forward = idle.task_id("trio", output_format="mp4", languages=["es-es", "de-de"])
    backward = idle.task_id("trio", output_format="mp4", languages=["de-de", "es-es"])
    assert forward != backward


def test_the_default_language_is_part_of_the_identity(idle: App) -> None:
    first = idle.task_id("trio", output_format="mp4", languages=["fr-fr", "de-de"])
    second = idle.task_id("trio", output_format="mp4", languages=["fr-fr", "de-de"], default_language="de-de")
    assert first != second
    assert idle.task_id("trio", output_format="mp4", languages=["fr-fr", 31], default_language=31) == second


# --- one identity with the Camb path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "native",
    [
        {"languages": ["es-es"]},
        {"languages": [54]},
        {"languages": ["ES-ES"], "default_language": "54"},
    ],
)
def test_one_language_is_the_camb_paths_task(idle: App, native: dict[str, Any]) -> None:
    camb = idle.camb("trio", "es-es", {"output_format": "flac", "channels": 1})
    assert camb.status_code == 200, camb.text
    assert idle.task_id("trio", output_format="flac", channels=1, **native) == camb.json()["task_id"]


def test_a_one_dub_run_with_languages_omitted_is_the_camb_paths_task(idle: App) -> None:
    camb = idle.camb("solo", "es-es", {"output_format": "mkv"})
    assert camb.status_code == 200, camb.text
    assert idle.task_id("solo", output_format="mkv") == camb.json()["task_id"]


def test_the_camb_export_is_answered_at_once_by_the_native_path_with_the_same_file(busy: App) -> None:
    camb = busy.finished(busy.camb("trio", "fr-fr", {"output_format": "wav"}))
    native = busy.post("trio", {"output_format": "wav", "languages": ["fr-fr"]})
    assert native.status_code == 200, native.text
    assert set(native.json()) == {"output_url"}, native.text
    assert urlparse(native.json()["output_url"]).path == urlparse(camb["output_url"]).path  # one storage key
    assert busy.client.get(native.json()["output_url"]).content == busy.client.get(camb["output_url"]).content


def test_the_native_export_is_answered_at_once_by_the_camb_path_with_the_same_file(busy: App) -> None:
    native = busy.finished(busy.post("trio", {"output_format": "flac", "languages": [76]}))
    camb = busy.camb("trio", "fr-fr", {"output_format": "flac"})
    assert camb.status_code == 200, camb.text
    assert set(camb.json()) == {"output_url"}, camb.text
    assert urlparse(camb.json()["output_url"]).path == urlparse(native["output_url"]).path


# --- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("languages", [["xx-xx"], ["es-es", "klingon"], [9999], ["es-es", 0]])
def test_an_unknown_language_is_a_422_naming_languages(idle: App, languages: list[Any]) -> None:
    msg = assert_422(idle.post("trio", {"output_format": "mkv", "languages": languages}), ["body", "languages"])
    assert "unknown language" in msg


def test_an_unknown_language_on_the_camb_path_names_the_path(idle: App) -> None:
    assert_422(idle.camb("trio", "xx-xx", {"output_format": "mkv"}), ["path", "language"])


@pytest.mark.parametrize("languages", [["es-es", "es-es"], ["es-es", 54], ["ES-ES", "fr-fr", "es-es"]])
def test_a_language_listed_twice_is_a_422(idle: App, languages: list[Any]) -> None:
    msg = assert_422(idle.post("trio", {"output_format": "mkv", "languages": languages}), ["body", "languages"])
    assert "listed twice" in msg


def test_an_empty_list_is_a_422(idle: App) -> None:
    assert_422(idle.post("trio", {"output_format": "mkv", "languages": []}), ["body", "languages"])


@pytest.mark.parametrize("languages", [["it-it"], ["es-es", "it-it"]])
def test_a_language_the_run_has_no_dub_for_is_a_404(idle: App, languages: list[str]) -> None:
    response = idle.post("trio", {"output_format": "mkv", "languages": languages})
    assert response.status_code == 404, response.text
    assert "it-it" in response.text


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"languages": ["es-es", "fr-fr"], "default_language": "de-de"}, "not among"),
        ({"languages": ["es-es"], "default_language": "fr-fr"}, "not among"),
        ({"default_language": "it-it"}, "not among"),  # languages omitted: the run's, and it-it is not one
        ({"languages": ["es-es"], "default_language": "xx-xx"}, "unknown language"),
    ],
)
def test_a_default_language_not_among_them_is_a_422(idle: App, body: dict[str, Any], why: str) -> None:
    msg = assert_422(idle.post("trio", {"output_format": "mkv", **body}), ["body", "default_language"])
    assert why in msg


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
@pytest.mark.parametrize("languages", [["es-es", "fr-fr"], "all", None])
def test_several_languages_in_an_audio_format_is_a_422_naming_languages(
    idle: App, output_format: str, languages: Any
) -> None:
    body: dict[str, Any] = {"output_format": output_format}
    if languages is not None:
        body["languages"] = languages
    msg = assert_422(idle.post("trio", body), ["body", "languages"])
    assert f"{output_format} carries one language" in msg


def test_soft_subtitles_with_no_transcript_for_any_language_asked_is_a_422(idle: App) -> None:
    body = {"output_format": "mkv", "languages": ["fr-fr", "de-de"], "subtitles": "soft"}
    assert "no transcript" in assert_422(idle.post("trio", body), ["body", "subtitles"])


def test_soft_subtitles_with_one_transcript_among_the_languages_is_taken(idle: App) -> None:
    idle.task_id("trio", output_format="mkv", languages=["fr-fr", "es-es"], subtitles="soft")


@pytest.mark.parametrize(
    "languages", [[True], [1.5], [["es-es"]], [{"id": 54}], [None], "es-es", 54, True, {"es-es": 1}]
)
def test_a_malformed_languages_value_is_a_422_not_a_500(idle: App, languages: Any) -> None:
    response = idle.post("trio", {"output_format": "mkv", "languages": languages})
    assert response.status_code == 422, response.text
    assert all(error["loc"][:2] == ["body", "languages"] for error in response.json()["detail"]), response.text


@pytest.mark.parametrize("default_language", [True, 1.5, ["es-es"], {"id": 54}])
def test_a_malformed_default_language_is_a_422_not_a_500(idle: App, default_language: Any) -> None:
    response = idle.post("trio", {"output_format": "mkv", "default_language": default_language})
    assert response.status_code == 422, response.text
    assert all(e["loc"][:2] == ["body", "default_language"] for e in response.json()["detail"]), response.text


def test_more_languages_than_exist_is_a_422(idle: App) -> None:
    response = idle.post("trio", {"output_format": "mkv", "languages": list(range(1, 150))})
    assert response.status_code == 422, response.text
    assert all(error["loc"][:2] == ["body", "languages"] for error in response.json()["detail"]), response.text
    every = [language.id for language in all_languages()]  # all 148: a fair ask
    answer = idle.post("trio", {"output_format": "mkv", "languages": every})
    assert answer.status_code == 404, answer.text  # most of them the run has no dub for


def test_an_unknown_run_is_a_404(idle: App) -> None:
    response = idle.post(999_999, {"output_format": "mkv", "languages": ["es-es"]})
    assert response.status_code == 404, response.text


def test_another_workspaces_run_is_a_404(idle: App) -> None:
    stranger = new_key(idle.client, "second")
    response = idle.post("trio", {"output_format": "mkv", "languages": ["es-es"]}, key=stranger)
    assert response.status_code == 404, response.text
    assert idle.post("trio", {"output_format": "mkv"}, key=stranger).status_code == 404


# --- download names ----------------------------------------------------------------------------------------


def test_a_master_downloads_named_by_its_languages(busy: App) -> None:
    status = busy.finished(busy.post("trio", {"output_format": "mkv", "languages": ["es-es", "fr-fr", "de-de"]}))
    assert download_name(busy, status["output_url"]) == f"run-{busy.runs['trio']}_es-es+fr-fr+de-de.mkv"


def test_a_master_of_five_languages_downloads_named_by_their_count(busy: App) -> None:
    status = busy.finished(busy.post("five", {"output_format": "mkv"}))
    assert download_name(busy, status["output_url"]) == f"run-{busy.runs['five']}_5-languages.mkv"


def test_a_one_language_export_downloads_named_by_its_language(busy: App) -> None:
    status = busy.finished(busy.post("trio", {"output_format": "mkv", "languages": ["de-de"]}))
    assert download_name(busy, status["output_url"]) == f"run-{busy.runs['trio']}_de-de.mkv"
