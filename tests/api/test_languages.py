"""Spec §2: the 148 language ids, their short_names and names, and language lookup by id or short_name."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import pytest

from tests.api.conftest import new_key
from tests.conftest import auth, make_run, upload

SHARED_CSV = Path("/work/shared/data/languages.csv")
EXPECTED_IDS = [*range(1, 137), *range(139, 151)]


def _packaged_csv_text() -> str:
    return resources.files("altdub").joinpath("data/languages.csv").read_text(encoding="utf-8")


def _rows(text: str) -> dict[int, str]:
    return {int(r["id"]): r["short_name"] for r in csv.DictReader(text.splitlines())}


@pytest.fixture(scope="module")
def csv_languages() -> dict[int, str]:
    return _rows(_packaged_csv_text())


def test_packaged_csv_is_the_shared_one():
    if not SHARED_CSV.exists():
        pytest.skip(f"{SHARED_CSV} is not present in this checkout")
    assert _rows(_packaged_csv_text()) == _rows(SHARED_CSV.read_text(encoding="utf-8"))


def test_csv_has_the_148_ids(csv_languages):
    assert sorted(csv_languages) == EXPECTED_IDS
    assert len(csv_languages) == 148


@pytest.mark.parametrize("path", ["/source-languages", "/target-languages"])
def test_language_lists(client, path, csv_languages):
    response = client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert len(body) == 148
    assert [item["id"] for item in body] == EXPECTED_IDS
    for item in body:
        assert set(item) == {"id", "language", "short_name"}
        assert isinstance(item["language"], str) and item["language"]
    assert {item["id"]: item["short_name"] for item in body} == csv_languages
    assert 137 not in {item["id"] for item in body}
    assert 138 not in {item["id"] for item in body}


def test_source_and_target_lists_agree(client):
    assert client.get("/source-languages").json() == client.get("/target-languages").json()


def test_english_united_states(client):
    body = client.get("/target-languages").json()
    assert body[0] == {"id": 1, "language": "English (United States)", "short_name": "en-us"}


def test_spanish_spain(client):
    by_id = {item["id"]: item for item in client.get("/target-languages").json()}
    assert by_id[54] == {"id": 54, "language": "Spanish (Spain)", "short_name": "es-es"}


@pytest.fixture
def paused_run(idle_client):
    """A run (es-es dub) in an app without workers, so every export stays PENDING."""
    key = new_key(idle_client, "langs")
    return idle_client, key


def test_export_language_by_id_or_short_name_any_case(paused_run, media):
    client, key = paused_run
    run_id = make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    task_ids = set()
    for language in ("54", "es-es", "ES-ES", "Es-Es"):
        response = client.post(f"/dub-alt-format/{run_id}/{language}", headers=auth(key), json={"output_format": "mp3"})
        assert response.status_code == 200, (language, response.text)
        assert set(response.json()) == {"task_id"}
        task_ids.add(response.json()["task_id"])
    assert len(task_ids) == 1, "the same language named differently must be the same export"


@pytest.mark.parametrize("language", ["137", "138", "0", "151", "xx-yy", "es", "spanish", "-1", "54.0"])
def test_export_unknown_language_is_422(paused_run, media, language):
    client, key = paused_run
    run_id = make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    response = client.post(f"/dub-alt-format/{run_id}/{language}", headers=auth(key), json={"output_format": "mp3"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert len(detail) == 1
    assert detail[0]["loc"] == ["path", "language"]
    assert language in detail[0]["msg"]


def test_unknown_language_is_422_even_for_unknown_run(client, api_key):
    response = client.post("/dub-alt-format/999999/xx-yy", headers=auth(api_key), json={"output_format": "mp3"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "language"]


@pytest.mark.parametrize("source_language", ["1", "en-us", "EN-US"])
def test_import_source_language_by_id_or_short_name(client, api_key, media, source_language):
    response = upload(
        client,
        api_key,
        {"source": media.audio_source, "dub_54": media.dub_wav},
        source_language=source_language,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source_language"] == {"id": 1, "language": "English (United States)", "short_name": "en-us"}
    assert body["languages"] == [{"id": 54, "language": "Spanish (Spain)", "short_name": "es-es"}]
