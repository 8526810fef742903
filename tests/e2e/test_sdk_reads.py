"""The official camb-sdk, pointed at a real ``altdub serve``, reads transcripts and run results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pysubs2
import pytest
from camb.client import CambAI
from camb.core.api_error import ApiError
from camb.types.dubbing_result import DubbingResult

from altdub.media.probe import probe
from tests.e2e.conftest import Server, download, import_run, request_export, wait_for_task

pytestmark = pytest.mark.e2e

SEGMENTS = [
    {"start": 0.5, "end": 1.25, "text": "Hola, mundo.", "speaker": "Ana"},
    {"start": 1.5, "end": 2.75, "text": "¿Qué tal estás?", "speaker": "Luis"},
    {"start": 3.0, "end": 3.9, "text": "Muy bien, gracias.", "speaker": ""},
]


def expected_cues() -> list[tuple[int, int, str]]:
    return [
        (
            round(s["start"] * 1000),
            round(s["end"] * 1000),
            f"{s['speaker']}: {s['text']}" if s["speaker"] else s["text"],
        )
        for s in SEGMENTS
    ]


def cues(text: str, kind: str) -> list[tuple[int, int, str]]:
    subs = pysubs2.SSAFile.from_string(text, format_=kind)
    return [(e.start, e.end, e.plaintext) for e in subs.events if not e.is_comment]


@pytest.fixture(scope="module")
def run_id(altdub_server: Server, media, tmp_path_factory: pytest.TempPathFactory) -> int:
    transcript = tmp_path_factory.mktemp("sdk-reads") / "es.json"
    transcript.write_text(json.dumps(SEGMENTS, ensure_ascii=False), encoding="utf-8")
    response = import_run(
        altdub_server.base_url,
        altdub_server.api_key,
        {"source": media.video, "dub_es-es": media.dub_wav, "transcript_es-es": transcript},
    )
    assert response.status_code == 201, response.text
    return response.json()["run_id"]


@pytest.fixture(scope="module")
def sdk(altdub_server: Server) -> CambAI:
    return CambAI(base_url=altdub_server.base_url, api_key=altdub_server.api_key)


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_sdk_reads_the_transcript_as_subtitles(sdk: CambAI, run_id: int, kind: str) -> None:
    answer = sdk.dub.get_dubbed_run_transcript(run_id, "es-es", format_type=kind, data_type="raw_data")
    assert isinstance(answer, dict) and set(answer) == {"transcript"}, answer
    assert cues(answer["transcript"], kind) == expected_cues()


def test_sdk_reads_the_transcript_as_text(sdk: CambAI, run_id: int) -> None:
    answer = sdk.dub.get_dubbed_run_transcript(run_id, "es-es")
    lines = [line for line in answer["transcript"].splitlines() if line.strip()]
    assert len(lines) == len(SEGMENTS)
    assert all(s["text"] in line for s, line in zip(SEGMENTS, lines, strict=True))


def test_sdk_reads_the_transcript_file_url(sdk: CambAI, run_id: int, tmp_path: Path) -> None:
    raw = sdk.dub.get_dubbed_run_transcript(run_id, "es-es", format_type="srt", data_type="raw_data")
    answer = sdk.dub.get_dubbed_run_transcript(run_id, "es-es", format_type="srt", data_type="file")
    assert set(answer) == {"transcript_url"}, answer
    download(answer["transcript_url"], tmp_path / "es.srt")
    assert (tmp_path / "es.srt").read_text(encoding="utf-8") == raw["transcript"]


def test_sdk_transcript_of_unknown_run_raises(sdk: CambAI) -> None:
    with pytest.raises(ApiError) as caught:
        sdk.dub.get_dubbed_run_transcript(999_999, "es-es", format_type="srt", data_type="raw_data")
    assert caught.value.status_code == 404


def _results(answer: object) -> dict[str, DubbingResult]:
    assert isinstance(answer, dict), f"parsed as {type(answer).__name__}, not per language: {answer!r}"
    assert all(isinstance(v, DubbingResult) for v in answer.values()), answer
    return answer


def test_sdk_reads_the_run_info(sdk: CambAI, run_id: int, tmp_path: Path) -> None:
    results = _results(sdk.dub.get_dubbed_run_info(run_id))
    assert set(results) == {"es-es"}
    result = results["es-es"]
    assert [(t.start, t.end, t.text, t.speaker) for t in result.transcript] == [
        (s["start"], s["end"], s["text"], s["speaker"]) for s in SEGMENTS
    ]
    download(result.audio_url, tmp_path / "dub.wav")
    assert probe(tmp_path / "dub.wav").audio


def test_sdk_run_info_video_url_after_mp4_export(
    sdk: CambAI, altdub_server: Server, run_id: int, tmp_path: Path
) -> None:
    base_url, key = altdub_server.base_url, altdub_server.api_key
    assert key is not None
    answer = request_export(base_url, key, run_id, "mp4", timeout=10)
    assert answer.status_code == 200, answer.text
    if "task_id" in answer.json():
        status = wait_for_task(base_url, key, answer.json()["task_id"])
        assert status["status"] == "SUCCESS", status
    deadline = time.monotonic() + 10
    while (video_url := _results(sdk.dub.get_dubbed_run_info(run_id))["es-es"].video_url) is None:
        assert time.monotonic() < deadline, "video_url still null after a finished mp4 export"
        time.sleep(0.1)
    download(video_url, tmp_path / "video.mp4")
    info = probe(tmp_path / "video.mp4")
    assert len(info.video) == 1 and info.audio[0].language == "spa"


def test_sdk_run_info_of_unknown_run_raises(sdk: CambAI) -> None:
    with pytest.raises(ApiError) as caught:
        sdk.dub.get_dubbed_run_info(999_999)
    assert caught.value.status_code == 404
