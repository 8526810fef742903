"""Spec §5 transcripts: import (SRT, WebVTT, JSON segments; validated, nothing stored on failure) and the
Camb-compatible reads GET /transcript/{run_id}/{language} and GET /dub-result/{run_id}."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pysubs2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from altdub.config import Settings
from altdub.db.models import Run, Transcript
from altdub.media.probe import probe
from tests.api.conftest import files_root, stored_files
from tests.conftest import Media, auth, export, make_run, upload, wait_for_task

FIELD = "transcript_es-es"

SEGMENTS = [
    {"start": 0.5, "end": 1.25, "text": "Hola, mundo.", "speaker": "Ana"},
    {"start": 1.5, "end": 2.75, "text": "¿Qué tal estás?", "speaker": "Luis"},
    {"start": 3.0, "end": 3.9, "text": "Muy bien, gracias.", "speaker": ""},
]
SRT = """1
00:00:00,500 --> 00:00:01,250
Hola, mundo.

2
00:00:01,500 --> 00:00:02,750
¿Qué tal estás?

3
00:00:03,000 --> 00:00:03,900
Muy bien,
gracias.
"""
VTT = """WEBVTT

00:00:00.500 --> 00:00:01.250
Hola, mundo.

00:00:01.500 --> 00:00:02.750
¿Qué tal estás?

00:00:03.000 --> 00:00:03.900
Muy bien,
gracias.
"""
# The same cues with WebVTT voice tags (subtitle tools write them into SRT too): the speakers of SEGMENTS.
VOICED_VTT = """WEBVTT

00:00:00.500 --> 00:00:01.250
<v Ana>Hola, mundo.</v>

00:00:01.500 --> 00:00:02.750
<v.lead Luis>¿Qué tal estás?

00:00:03.000 --> 00:00:03.900
Muy bien, gracias.
"""
VOICED_SRT = """1
00:00:00,500 --> 00:00:01,250
<v Ana>Hola, mundo.</v>

2
00:00:01,500 --> 00:00:02,750
<v Luis>¿Qué tal estás?</v>

3
00:00:03,000 --> 00:00:03,900
Muy bien, gracias.
"""
# What SRT and WebVTT import to: no speakers, line breaks kept.
SUBTITLE_SEGMENTS = [
    {"start": 0.5, "end": 1.25, "text": "Hola, mundo.", "speaker": ""},
    {"start": 1.5, "end": 2.75, "text": "¿Qué tal estás?", "speaker": ""},
    {"start": 3.0, "end": 3.9, "text": "Muy bien,\ngracias.", "speaker": ""},
]


def post_run(
    client: TestClient,
    key: str,
    files: dict[str, Path],
    transcripts: dict[str, bytes | str] | None = None,
    as_text: bool = False,
) -> Any:
    """POST /runs with media files and transcripts, as file parts or (as_text) plain form fields."""
    handles: dict[str, Any] = {name: (path.name, path.open("rb")) for name, path in files.items()}
    data = {"source_language": "en-us"}
    for name, content in (transcripts or {}).items():
        if as_text:
            data[name] = content if isinstance(content, str) else content.decode()
        else:
            raw = content.encode() if isinstance(content, str) else content
            handles[name] = (f"{name}.txt", raw, "application/octet-stream")
    try:
        return client.post("/runs", headers=auth(key), data=data, files=handles)
    finally:
        for handle in handles.values():
            if not isinstance(handle[1], bytes):
                handle[1].close()


def dub_result(client: TestClient, key: str, run_id: int) -> dict[str, Any]:
    response = client.get(f"/dub-result/{run_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def get_transcript(client: TestClient, key: str, run_id: int, language: str = "es-es", **params: str) -> Any:
    return client.get(f"/transcript/{run_id}/{language}", headers=auth(key), params=params)


def cues(text: str, kind: str) -> list[tuple[int, int, str]]:
    subs = pysubs2.SSAFile.from_string(text, format_=kind)
    return [(e.start, e.end, e.plaintext) for e in subs.events if not e.is_comment]


def expected_cues(segments: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """The cues a subtitle file of ``segments`` holds (the speaker, when there is one, before the text)."""
    return [
        (
            round(s["start"] * 1000),
            round(s["end"] * 1000),
            f"{s['speaker']}: {s['text']}" if s["speaker"] else s["text"],
        )
        for s in segments
    ]


@pytest.fixture
def base_files(media: Media) -> dict[str, Path]:
    return {"source": media.video, "dub_es-es": media.dub_wav}


@pytest.fixture
def json_run(client: TestClient, api_key: str, media: Media) -> int:
    """es-es and fr-fr dubs; a JSON es-es transcript with speakers; an SRT en-us (source) transcript."""
    response = post_run(
        client,
        api_key,
        {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac},
        {FIELD: json.dumps(SEGMENTS, ensure_ascii=False), "transcript_en-us": SRT},
    )
    assert response.status_code == 201, response.text
    return response.json()["run_id"]


# --- import -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_text", [False, True], ids=["file", "field"])
@pytest.mark.parametrize(
    ("content", "segments"),
    [(SRT, SUBTITLE_SEGMENTS), (VTT, SUBTITLE_SEGMENTS), (json.dumps(SEGMENTS, ensure_ascii=False), SEGMENTS)],
    ids=["srt", "vtt", "json"],
)
def test_import_transcript(client, api_key, base_files, content, segments, as_text) -> None:
    response = post_run(client, api_key, base_files, {FIELD: content}, as_text=as_text)
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    assert dub_result(client, api_key, run_id)["es-es"]["transcript"] == segments


@pytest.mark.parametrize("content", [VOICED_VTT, VOICED_SRT], ids=["vtt", "srt"])
def test_import_reads_speakers_from_voice_tags(client, api_key, base_files, content) -> None:
    response = post_run(client, api_key, base_files, {FIELD: content})
    assert response.status_code == 201, response.text
    assert dub_result(client, api_key, response.json()["run_id"])["es-es"]["transcript"] == SEGMENTS


def test_a_voice_tag_naming_no_showable_speaker_is_422(client, api_key, settings, base_files) -> None:
    hostile = VOICED_VTT.replace("<v Ana>", "<v \u202eanA>")
    response = post_run(client, api_key, base_files, {FIELD: hostile})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", FIELD], detail
    assert "cue 1: the speaker holds the bidirectional override" in detail["msg"], detail
    assert_nothing_stored(client, api_key, settings)


def test_import_json_transcript_with_bom_and_without_speakers(client, api_key, base_files) -> None:
    plain = [{"start": s["start"], "end": s["end"], "text": s["text"]} for s in SEGMENTS]
    raw = b"\xef\xbb\xbf" + json.dumps(plain).encode()
    response = post_run(client, api_key, base_files, {FIELD: raw})
    assert response.status_code == 201, response.text
    stored = dub_result(client, api_key, response.json()["run_id"])["es-es"]["transcript"]
    assert stored == [{**s, "speaker": ""} for s in plain]


def test_import_transcript_for_the_source_language(client, api_key, base_files) -> None:
    response = post_run(client, api_key, base_files, {"transcript_en-us": SRT})
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    body = get_transcript(client, api_key, run_id, "en-us", format_type="srt")
    assert body.status_code == 200, body.text
    assert cues(body.json()["transcript"], "srt") == expected_cues(SUBTITLE_SEGMENTS)


def _json(*segments: tuple[float, float, str]) -> str:
    return json.dumps([{"start": a, "end": b, "text": t, "speaker": ""} for a, b, t in segments])


INVALID = {
    "unordered": (_json((2.0, 2.5, "dos"), (0.5, 1.0, "uno")), "order"),
    "unordered_srt": (
        "1\n00:00:02,000 --> 00:00:02,500\ndos\n\n2\n00:00:00,500 --> 00:00:01,000\nuno\n",
        "order",
    ),
    "overlapping": (_json((0.5, 1.5, "uno"), (1.0, 2.0, "dos")), "overlap"),
    "overlapping_vtt": (
        "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nuno\n\n00:00:01.000 --> 00:00:02.000\ndos\n",
        "overlap",
    ),
    "past_the_media": (_json((0.5, 1.0, "uno"), (3.0, 5.0, "dos")), "past the media"),
    "starts_past_the_media": (_json((4.5, 5.0, "uno")), "past the media"),
    "empty_text": (_json((0.5, 1.0, "uno"), (1.5, 2.0, "   ")), "no text"),
    "end_before_start": (_json((2.0, 1.0, "uno")), "after start"),
    "end_equals_start": (_json((1.0, 1.0, "uno")), "after start"),
    "negative_start": (_json((-1.0, 1.0, "uno")), "start"),
    "no_cues": ("[]", "no cues"),
    "garbage_text": ("this is not a transcript at all\njust words\n", "expected SRT, WebVTT, or JSON"),
    "garbage_bytes": (bytes(range(128, 256)) * 4, "UTF-8"),
    "broken_json": ('[{"start": 0.5, "end": 1.0, "text": "uno"', "JSON"),
    "json_missing_end": ('[{"start": 0.5, "text": "uno"}]', "JSON"),
    "json_not_a_number": ('[{"start": "soon", "end": 1.0, "text": "uno"}]', "JSON"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_transcript_is_422_naming_the_field_and_reason(
    client, api_key, settings: Settings, base_files, case: str
) -> None:
    content, reason = INVALID[case]
    response = post_run(client, api_key, base_files, {FIELD: content})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", FIELD], error
    assert reason.lower() in error["msg"].lower(), error
    assert_nothing_stored(client, api_key, settings)


def test_invalid_transcript_as_text_field_is_422(client, api_key, settings, base_files) -> None:
    response = post_run(client, api_key, base_files, {FIELD: INVALID["overlapping"][0]}, as_text=True)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", FIELD], error
    assert "overlap" in error["msg"]
    assert_nothing_stored(client, api_key, settings)


@pytest.mark.parametrize("field", ["transcript_de-de", "transcript_fr-fr"])
def test_transcript_for_a_language_not_in_the_run_is_422(client, api_key, settings, base_files, field) -> None:
    """The run has an es-es dub and an en-us source: de-de and fr-fr belong to neither."""
    response = post_run(client, api_key, base_files, {field: SRT})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field], error
    assert field.removeprefix("transcript_") in error["msg"], error
    assert_nothing_stored(client, api_key, settings)


def test_transcript_for_an_unknown_language_is_422(client, api_key, settings, base_files) -> None:
    response = post_run(client, api_key, base_files, {"transcript_xx-yy": SRT})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "transcript_xx-yy"]
    assert_nothing_stored(client, api_key, settings)


def test_two_transcripts_for_one_language_are_422(client, api_key, settings, base_files) -> None:
    """dub_54 and dub_es-es name the same language; so do transcript_54 and transcript_es-es."""
    es_id = next(lang["id"] for lang in client.get("/target-languages").json() if lang["short_name"] == "es-es")
    response = post_run(client, api_key, base_files, {FIELD: SRT, f"transcript_{es_id}": VTT})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert_nothing_stored(client, api_key, settings)


def assert_nothing_stored(client: TestClient, key: str, settings: Settings) -> None:
    assert client.get("/runs", headers=auth(key)).json()["total"] == 0
    assert stored_files(files_root(settings)) == []
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(Run)) == 0
        assert session.scalar(select(func.count()).select_from(Transcript)) == 0


# --- GET /transcript ----------------------------------------------------------------------------------------


def test_transcript_txt_is_the_default(client, api_key, json_run) -> None:
    default = get_transcript(client, api_key, json_run)
    assert default.status_code == 200, default.text
    assert set(default.json()) == {"transcript"}
    explicit = get_transcript(client, api_key, json_run, format_type="txt", data_type="raw_data")
    assert explicit.json() == default.json()
    lines = [line for line in default.json()["transcript"].splitlines() if line.strip()]
    assert len(lines) == len(SEGMENTS)
    for line, segment in zip(lines, SEGMENTS, strict=True):
        assert segment["text"] in line, (line, segment)
        if segment["speaker"]:
            assert segment["speaker"] in line


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_transcript_as_subtitles(client, api_key, json_run, kind) -> None:
    response = get_transcript(client, api_key, json_run, format_type=kind, data_type="raw_data")
    assert response.status_code == 200, response.text
    text = response.json()["transcript"]
    if kind == "vtt":
        assert text.startswith("WEBVTT")
    assert cues(text, kind) == expected_cues(SEGMENTS)


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_imported_subtitles_read_back_unchanged(client, api_key, base_files, kind) -> None:
    response = post_run(client, api_key, base_files, {FIELD: SRT if kind == "srt" else VTT})
    assert response.status_code == 201, response.text
    body = get_transcript(client, api_key, response.json()["run_id"], format_type=kind)
    assert cues(body.json()["transcript"], kind) == cues(SRT if kind == "srt" else VTT, kind)


def test_transcript_by_language_id(client, api_key, json_run) -> None:
    es_id = next(lang["id"] for lang in client.get("/target-languages").json() if lang["short_name"] == "es-es")
    by_id = get_transcript(client, api_key, json_run, str(es_id), format_type="srt")
    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == get_transcript(client, api_key, json_run, "ES-ES", format_type="srt").json()


@pytest.mark.parametrize("kind", ["txt", "srt", "vtt"])
def test_transcript_file_downloads_the_same_text(client, api_key, json_run, kind) -> None:
    raw = get_transcript(client, api_key, json_run, format_type=kind).json()["transcript"]
    response = get_transcript(client, api_key, json_run, format_type=kind, data_type="file")
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"transcript_url"}
    download = client.get(response.json()["transcript_url"])
    assert download.status_code == 200, download.text
    assert download.content.decode("utf-8") == raw
    assert f'filename="run-{json_run}_es-es.{kind}"' in download.headers["content-disposition"]
    content_type = download.headers["content-type"]
    expected = "application/x-subrip" if kind == "srt" else "text/"  # SubRip's registered-in-practice type
    assert content_type.startswith(expected), f"{kind}: {content_type}"
    assert "charset=utf-8" in content_type.lower(), f"{kind}: {content_type}"


def test_transcript_file_url_is_signed(client, api_key, json_run) -> None:
    url = get_transcript(client, api_key, json_run, format_type="srt", data_type="file").json()["transcript_url"]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert set(query) >= {"expires", "signature"}, query
    signature = query["signature"][0]
    tampered = url.replace(f"signature={signature}", f"signature={signature[::-1]}")
    assert client.get(tampered).status_code == 403
    other = url.replace("_es-es.srt", "_es-es.txt")
    assert client.get(other).status_code == 403


@pytest.mark.parametrize(
    ("path", "who"),
    [("/transcript/999999/es-es", "first"), ("/transcript/{run}/es-es", "second")],
    ids=["unknown_run", "other_workspace"],
)
def test_transcript_of_unknown_or_foreign_run_is_404(client, api_key, other_key, json_run, path, who) -> None:
    key = api_key if who == "first" else other_key
    for data_type in ("raw_data", "file"):
        response = client.get(path.format(run=json_run), headers=auth(key), params={"data_type": data_type})
        assert response.status_code == 404, response.text
    unknown = client.get("/transcript/999999/es-es", headers=auth(api_key))
    assert response.json() == unknown.json(), "another workspace's run answers unlike a missing one"


@pytest.mark.parametrize("language", ["fr-fr", "de-de"], ids=["dub_without_transcript", "not_in_run"])
def test_transcript_of_a_language_without_one_is_404(client, api_key, json_run, language) -> None:
    for data_type in ("raw_data", "file"):
        response = get_transcript(client, api_key, json_run, language, data_type=data_type)
        assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"format_type": "docx"}, ["query", "format_type"]),
        ({"format_type": "SRT2"}, ["query", "format_type"]),
        ({"data_type": "blob"}, ["query", "data_type"]),
    ],
)
def test_transcript_bad_query_is_422(client, api_key, json_run, params, loc) -> None:
    response = get_transcript(client, api_key, json_run, **params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


def test_transcript_bad_language_is_422(client, api_key, json_run) -> None:
    response = get_transcript(client, api_key, json_run, "xx-yy")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "language"]


def test_transcript_needs_a_key(client, json_run) -> None:
    assert client.get(f"/transcript/{json_run}/es-es").status_code == 401
    assert client.get(f"/dub-result/{json_run}").status_code == 401


# --- GET /dub-result ----------------------------------------------------------------------------------------


def test_dub_result_per_language(client, api_key, json_run, media, tmp_path) -> None:
    body = dub_result(client, api_key, json_run)
    assert set(body) == {"es-es", "fr-fr"}
    for language, uploaded in (("es-es", media.dub_wav), ("fr-fr", media.dub_flac)):
        entry = body[language]
        assert set(entry) == {"audio_url", "video_url", "transcript"}, entry
        assert entry["video_url"] is None
        audio = client.get(entry["audio_url"])
        assert audio.status_code == 200, audio.text
        assert audio.content == uploaded.read_bytes(), f"{language}: audio_url is not the dub"
        assert audio.headers["content-type"].startswith("audio/")
    assert body["es-es"]["transcript"] == SEGMENTS
    assert body["fr-fr"]["transcript"] == []


def test_dub_result_transcript_segments_have_camb_fields(client, api_key, json_run) -> None:
    for segment in dub_result(client, api_key, json_run)["es-es"]["transcript"]:
        assert set(segment) == {"start", "end", "text", "speaker"}
        assert isinstance(segment["start"], float) and isinstance(segment["end"], float)
        assert isinstance(segment["text"], str) and isinstance(segment["speaker"], str)


def test_dub_result_video_url_after_an_mp4_export(client, api_key, json_run, tmp_path) -> None:
    assert dub_result(client, api_key, json_run)["es-es"]["video_url"] is None
    status = export(client, api_key, json_run, "es-es", "mp4")
    assert status["status"] == "SUCCESS", status
    body = dub_result(client, api_key, json_run)
    assert body["fr-fr"]["video_url"] is None
    url = body["es-es"]["video_url"]
    assert isinstance(url, str) and url
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    path = tmp_path / "video.mp4"
    path.write_bytes(response.content)
    info = probe(path)
    assert len(info.video) == 1 and [s.language for s in info.audio] == ["spa"]
    assert response.content == client.get(status["output_url"]).content


def test_dub_result_video_url_is_only_a_default_options_mp4(client, api_key, json_run) -> None:
    """An mp4 with other options (here its own bitrate, or the original track) is not "the" video."""
    for options in ({"audio_bitrate": "128k"}, {"include_original_audio": True}):
        answer = client.post(
            f"/dub-alt-format/{json_run}/es-es", headers=auth(api_key), json={"output_format": "mp4", **options}
        )
        assert answer.status_code == 200, answer.text
        status = wait_for_task(client, api_key, answer.json()["task_id"])
        assert status["status"] == "SUCCESS", status
    assert dub_result(client, api_key, json_run)["es-es"]["video_url"] is None


def test_dub_result_of_an_audio_only_run(client, api_key, media) -> None:
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    body = dub_result(client, api_key, run_id)
    assert body == {"es-es": {"audio_url": body["es-es"]["audio_url"], "video_url": None, "transcript": []}}


def test_dub_result_unknown_or_foreign_run_is_404(client, api_key, other_key, json_run) -> None:
    unknown = client.get("/dub-result/999999", headers=auth(api_key))
    foreign = client.get(f"/dub-result/{json_run}", headers=auth(other_key))
    assert unknown.status_code == foreign.status_code == 404
    assert unknown.json() == foreign.json()


def test_run_without_transcripts_reads_back_empty(client, api_key, base_files) -> None:
    """No transcript: empty segments in /dub-result, 404 from /transcript."""
    response = upload(client, api_key, base_files)
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    assert dub_result(client, api_key, run_id)["es-es"]["transcript"] == []
    assert get_transcript(client, api_key, run_id).status_code == 404
