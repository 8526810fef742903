"""Spec §3 options table: each invalid or inapplicable option is a 422 naming its key, and options are
canonicalised (a spelled-out default is the same export as an omitted one: one task, one file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask
from altdub.media.synth import make_tone
from tests.api.conftest import files_root, new_key, stored_files
from tests.conftest import SOURCE_SECONDS, Media, auth, make_run, wait_for_task

AUDIO_FORMATS = ["flac", "wav", "mp3", "aac", "m4a"]
VIDEO_FORMATS = ["mp4", "mov", "mkv", "mxf"]
ALL_FORMATS = AUDIO_FORMATS + VIDEO_FORMATS
TRANSCRIPT_SRT = "1\n00:00:00,500 --> 00:00:01,500\nHola.\n\n2\n00:00:02,000 --> 00:00:03,000\nAdiós.\n"


class Idle:
    """An app without workers (tasks stay PENDING) and its runs."""

    def __init__(self, client: TestClient, key: str, media: Media, directory: Path) -> None:
        self.client, self.key, self.media = client, key, media
        voice = make_tone(directory / "voice.wav", SOURCE_SECONDS, tone_hz=1250)
        background = make_tone(directory / "background.wav", SOURCE_SECONDS, tone_hz=170)
        es = directory / "es.srt"
        es.write_text(TRANSCRIPT_SRT, encoding="utf-8")
        en = directory / "en.srt"
        en.write_text(TRANSCRIPT_SRT, encoding="utf-8")
        self.files = {
            # video + es-es dub only: no stems, no transcript
            "plain": {"source": media.video, "dub_es-es": media.dub_wav},
            # with both stems and the es-es transcript
            "full": {
                "source": media.video,
                "dub_es-es": media.dub_wav,
                "voice_es-es": voice,
                "background": background,
                "transcript_es-es": es,
            },
            # a transcript only for the source language (en-us)
            "source_transcript": {"source": media.video, "dub_es-es": media.dub_wav, "transcript_en-us": en},
            "audio": {"source": media.audio_source, "dub_es-es": media.dub_wav},
            # a 32 kHz dub: its own rate is the default, though not one of the listed values
            "khz32": {
                "source": media.video,
                "dub_es-es": make_tone(directory / "dub-32k.wav", SOURCE_SECONDS, sample_rate=32000),
            },
        }
        self.runs = {name: make_run(client, key, files) for name, files in self.files.items()}

    def fresh_run(self, name: str = "plain") -> int:
        return make_run(self.client, self.key, self.files[name])

    def post(self, run: str | int, body: dict[str, Any], language: str = "es-es") -> Any:
        run_id = self.runs[run] if isinstance(run, str) else run
        return self.client.post(f"/dub-alt-format/{run_id}/{language}", headers=auth(self.key), json=body)

    def rows(self, run: str | int) -> list[ExportTask]:
        run_id = self.runs[run] if isinstance(run, str) else run
        with self.client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
            return list(session.scalars(select(ExportTask).where(ExportTask.run_id == run_id)))


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Idle]:
    directory = tmp_path_factory.mktemp("options")
    # Every accepted option set leaves a PENDING task in one workspace: far more than the default limit.
    settings = Settings(data_dir=directory / "data", create_demo=False, workers=1, max_pending_tasks=10_000)
    with TestClient(create_app(settings, workers=False)) as client:
        yield Idle(client, new_key(client, "options"), media, directory)


def assert_422(response: Any, key: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and len(detail) == 1, detail
    error = detail[0]
    assert error["loc"] == ["body", key], error
    assert isinstance(error["msg"], str) and error["msg"], error
    return error


def assert_refused(idle: Idle, run: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    before = len(idle.rows(run))
    error = assert_422(idle.post(run, body), key)
    assert len(idle.rows(run)) == before, "a refused request created a task"
    return error


# --- invalid values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("audio_bitrate", "999k"),
        ("audio_bitrate", "321k"),
        ("audio_bitrate", "16k"),
        ("audio_bitrate", "abc"),
        ("audio_bitrate", "128"),
        ("audio_bitrate", ""),
        ("audio_bitrate", 128),
        ("sample_rate", 12345),
        ("sample_rate", 0),
        ("sample_rate", "fast"),
        ("channels", 3),
        ("channels", 0),
        ("channels", 8),
        ("loudness", "loud"),
        ("loudness", ""),
        ("stem", "drums"),
        ("stem", ""),
        ("include_original_audio", "maybe"),
        ("subtitles", "hard"),
        ("subtitles", "burned"),
    ],
)
def test_invalid_value_is_422_naming_the_key(idle: Idle, key: str, value: Any) -> None:
    output_format = "mp4" if key in ("include_original_audio", "subtitles") else "mp3"
    assert_refused(idle, "full", {"output_format": output_format, key: value}, key)


def test_bitrate_out_of_range_message_says_the_range(idle: Idle) -> None:
    error = assert_refused(idle, "plain", {"output_format": "mp3", "audio_bitrate": "999k"}, "audio_bitrate")
    assert "320k" in error["msg"], error


# --- values that do not apply to the format ------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["flac", "wav", "mkv", "mxf"])
def test_audio_bitrate_on_lossless_or_pcm_format_is_422(idle: Idle, output_format: str) -> None:
    error = assert_refused(idle, "plain", {"output_format": output_format, "audio_bitrate": "128k"}, "audio_bitrate")
    assert output_format in error["msg"], error


@pytest.mark.parametrize(("output_format", "rate"), [("mp3", 96000), ("mxf", 44100), ("mxf", 22050), ("mxf", 96000)])
def test_sample_rate_the_format_cannot_carry_is_422(idle: Idle, output_format: str, rate: int) -> None:
    assert_refused(idle, "plain", {"output_format": output_format, "sample_rate": rate}, "sample_rate")


def test_six_channels_in_mp3_is_422(idle: Idle) -> None:
    assert_refused(idle, "plain", {"output_format": "mp3", "channels": 6}, "channels")


@pytest.mark.parametrize("output_format", AUDIO_FORMATS)
def test_include_original_audio_on_audio_format_is_422(idle: Idle, output_format: str) -> None:
    body = {"output_format": output_format, "include_original_audio": True}
    error = assert_refused(idle, "plain", body, "include_original_audio")
    assert output_format in error["msg"], error


@pytest.mark.parametrize("output_format", [*AUDIO_FORMATS, "mxf"])
def test_soft_subtitles_on_format_without_text_tracks_is_422(idle: Idle, output_format: str) -> None:
    """Even on a run that has the language's transcript."""
    error = assert_refused(idle, "full", {"output_format": output_format, "subtitles": "soft"}, "subtitles")
    assert output_format in error["msg"], error


@pytest.mark.parametrize("run", ["plain", "source_transcript"])
@pytest.mark.parametrize("output_format", ["mp4", "mov", "mkv"])
def test_soft_subtitles_without_the_languages_transcript_is_422(idle: Idle, run: str, output_format: str) -> None:
    error = assert_refused(idle, run, {"output_format": output_format, "subtitles": "soft"}, "subtitles")
    assert "transcript" in error["msg"], error


@pytest.mark.parametrize("stem", ["voice", "background"])
@pytest.mark.parametrize("output_format", ["flac", "mp4"])
def test_stem_the_run_lacks_is_422(idle: Idle, stem: str, output_format: str) -> None:
    error = assert_refused(idle, "plain", {"output_format": output_format, "stem": stem}, "stem")
    what = "voice stem for es-es" if stem == "voice" else "background stem"
    assert error["msg"] == f"run {idle.runs['plain']} has no {what}", error


# --- what does apply is accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_format", "options"),
    [
        *[(f, {"audio_bitrate": "128k"}) for f in ["mp3", "aac", "m4a", "mp4", "mov"]],
        *[(f, {"audio_bitrate": b}) for f in ["mp3"] for b in ["32k", "320k"]],
        *[(f, {"sample_rate": r}) for f in ["flac", "wav", "aac", "m4a", "mp4", "mov", "mkv"] for r in (22050, 96000)],
        ("mp3", {"sample_rate": 22050}),
        ("mxf", {"sample_rate": 48000}),
        *[(f, {"channels": c}) for f in ALL_FORMATS for c in (1, 6) if not (f == "mp3" and c == 6)],
        *[(f, {"loudness": t}) for f in ALL_FORMATS for t in ("ebu_r128", "atsc_a85", "streaming")],
        *[(f, {"stem": s}) for f in ["flac", "mp4", "mxf"] for s in ("voice", "background")],
        *[(f, {"include_original_audio": True}) for f in VIDEO_FORMATS],
        *[(f, {"subtitles": "soft"}) for f in ["mp4", "mov", "mkv"]],
    ],
)
def test_applicable_option_is_accepted(idle: Idle, output_format: str, options: dict[str, Any]) -> None:
    response = idle.post("full", {"output_format": output_format, **options})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"task_id"}


def test_video_format_on_audio_only_run_is_still_422_on_output_format(idle: Idle) -> None:
    response = idle.post("audio", {"output_format": "mp4", "include_original_audio": True})
    assert_422(response, "output_format")


# --- canonical identity -------------------------------------------------------------------------------------


SPELLED_OUT = {
    # The dub is 48 kHz stereo s16: these are every default, spelled out.
    "mp3": {"audio_bitrate": "192k", "stem": "mix", "loudness": None, "sample_rate": 48000, "channels": 2},
    "flac": {"sample_rate": 48000, "channels": 2, "stem": "mix", "loudness": None},
    "aac": {"audio_bitrate": "192k", "sample_rate": 48000, "channels": 2},
    "mp4": {"audio_bitrate": "192k", "include_original_audio": False, "subtitles": "none", "stem": "mix"},
    "mkv": {"include_original_audio": False, "subtitles": "none", "sample_rate": 48000, "channels": 2},
    "mxf": {"sample_rate": 48000, "channels": 2, "include_original_audio": False, "stem": "mix"},
}


@pytest.mark.parametrize("output_format", list(SPELLED_OUT))
def test_spelled_out_defaults_are_the_same_task(idle: Idle, output_format: str) -> None:
    run_id = idle.fresh_run()
    first = idle.post(run_id, {"output_format": output_format})
    second = idle.post(run_id, {"output_format": output_format, **SPELLED_OUT[output_format]})
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


def test_spelled_out_first_then_omitted_is_the_same_task(idle: Idle) -> None:
    run_id = idle.fresh_run()
    first = idle.post(run_id, {"output_format": "mp3", **SPELLED_OUT["mp3"]})
    second = idle.post(run_id, {"output_format": "mp3"})
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


@pytest.mark.parametrize(
    ("output_format", "options", "defaults"),
    [
        ("m4a", {"channels": 1}, {"audio_bitrate": "128k"}),  # AAC's default follows the channel count
        ("mp4", {"channels": 6}, {"audio_bitrate": "384k"}),
        ("aac", {"channels": 2}, {"audio_bitrate": "192k"}),
        ("mp3", {"sample_rate": 44100}, {"channels": 2, "audio_bitrate": "192k"}),
        ("mxf", {"channels": 1}, {"sample_rate": 48000}),
    ],
)
def test_defaults_that_follow_other_options_are_canonical(
    idle: Idle, output_format: str, options: dict[str, Any], defaults: dict[str, Any]
) -> None:
    run_id = idle.fresh_run()
    first = idle.post(run_id, {"output_format": output_format, **options})
    second = idle.post(run_id, {"output_format": output_format, **options, **defaults})
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


@pytest.mark.parametrize(
    ("output_format", "defaults"),
    [
        ("mp3", {"subtitles": "none", "include_original_audio": False}),
        ("wav", {"include_original_audio": False}),
        ("mxf", {"subtitles": "none"}),
    ],
)
def test_spelled_out_defaults_of_options_the_format_lacks_are_canonical(
    idle: Idle, output_format: str, defaults: dict[str, Any]
) -> None:
    """Only a value that asks for something the format cannot do is refused; the default asks for nothing."""
    run_id = idle.fresh_run()
    first = idle.post(run_id, {"output_format": output_format})
    second = idle.post(run_id, {"output_format": output_format, **defaults})
    assert second.status_code == 200, second.text
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


def test_spelled_out_dub_own_sample_rate_is_the_default(idle: Idle) -> None:
    """The default sample rate is the dub's own (spec §3): 32000 here, so asking for 32000 is the same export."""
    run_id = idle.fresh_run("khz32")
    output_format = "flac"
    first = idle.post(run_id, {"output_format": output_format})
    assert first.status_code == 200, first.text
    [row] = idle.rows(run_id)
    assert row.options["sample_rate"] == 32000
    second = idle.post(run_id, {"output_format": output_format, "sample_rate": 32000})
    assert second.status_code == 200, second.text
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


@pytest.mark.parametrize("spelling", ["192K", " 192k "])
def test_bitrate_spelling_is_canonical(idle: Idle, spelling: str) -> None:
    run_id = idle.fresh_run()
    first = idle.post(run_id, {"output_format": "mp3"})
    second = idle.post(run_id, {"output_format": "mp3", "audio_bitrate": spelling})
    assert second.status_code == 200, second.text
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


def test_every_option_null_is_the_default(idle: Idle) -> None:
    run_id = idle.fresh_run()
    keys = ["audio_bitrate", "sample_rate", "channels", "loudness", "stem", "include_original_audio", "subtitles"]
    first = idle.post(run_id, {"output_format": "mp4"})
    second = idle.post(run_id, {"output_format": "mp4", **dict.fromkeys(keys)})
    assert second.status_code == 200, second.text
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


def test_language_id_and_short_name_are_the_same_task(idle: Idle) -> None:
    run_id = idle.fresh_run()
    es_id = next(lang["id"] for lang in idle.client.get("/target-languages").json() if lang["short_name"] == "es-es")
    first = idle.post(run_id, {"output_format": "mp3", "audio_bitrate": "128k"})
    second = idle.post(run_id, {"output_format": "mp3", "audio_bitrate": "128k"}, language=str(es_id))
    assert second.json() == first.json()
    assert len(idle.rows(run_id)) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"audio_bitrate": "128k"},
        {"sample_rate": 44100},
        {"channels": 1},
        {"loudness": "ebu_r128"},
        {"loudness": "streaming"},
    ],
)
def test_a_different_option_is_a_different_task(idle: Idle, options: dict[str, Any]) -> None:
    run_id = idle.fresh_run()
    first = idle.post(run_id, {"output_format": "mp3"}).json()
    second = idle.post(run_id, {"output_format": "mp3", **options}).json()
    assert set(first) == set(second) == {"task_id"}
    assert first["task_id"] != second["task_id"]
    again = idle.post(run_id, {"output_format": "mp3", **options}).json()
    assert again == second
    assert len(idle.rows(run_id)) == 2


def test_each_option_set_is_its_own_task(idle: Idle) -> None:
    run_id = idle.fresh_run("full")
    bodies = [
        {"output_format": "mp4"},
        {"output_format": "mp4", "stem": "voice"},
        {"output_format": "mp4", "stem": "background"},
        {"output_format": "mp4", "include_original_audio": True},
        {"output_format": "mp4", "subtitles": "soft"},
        {"output_format": "mp4", "include_original_audio": True, "subtitles": "soft"},
        {"output_format": "mp4", "audio_bitrate": "256k"},
        {"output_format": "mov"},
    ]
    ids = [idle.post(run_id, body).json()["task_id"] for body in bodies]
    assert len(set(ids)) == len(bodies)
    assert len(idle.rows(run_id)) == len(bodies)


def test_stored_options_are_the_resolved_values(idle: Idle) -> None:
    run_id = idle.fresh_run()
    idle.post(run_id, {"output_format": "mp3", "audio_bitrate": "128k"})
    [row] = idle.rows(run_id)
    assert row.options["audio_bitrate"] == 128_000
    assert row.options["sample_rate"] == 48000
    assert row.options["channels"] == 2
    assert row.options["stem"] == "mix"
    assert row.options["loudness"] is None


# --- with workers: one file ---------------------------------------------------------------------------------


def test_spelled_out_default_reuses_the_finished_file(client: TestClient, api_key: str, settings, media) -> None:
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    url = f"/dub-alt-format/{run_id}/es-es"
    first = client.post(url, headers=auth(api_key), json={"output_format": "mp3"})
    assert first.status_code == 200, first.text
    status = wait_for_task(client, api_key, first.json()["task_id"])
    assert status["status"] == "SUCCESS", status

    second = client.post(url, headers=auth(api_key), json={"output_format": "mp3", **SPELLED_OUT["mp3"]})
    assert second.status_code == 200, second.text
    assert set(second.json()) == {"output_url"}, "the finished export was not reused"
    assert urlsplit(second.json()["output_url"]).path == urlsplit(status["output_url"]).path
    assert client.get(second.json()["output_url"]).content == client.get(status["output_url"]).content

    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        rows = list(session.scalars(select(ExportTask).where(ExportTask.run_id == run_id)))
    assert len(rows) == 1
    exports = [p for p in stored_files(files_root(settings)) if "/exports/" in p.as_posix()]
    assert len(exports) == 1, exports

    third = client.post(url, headers=auth(api_key), json={"output_format": "mp3", "audio_bitrate": "128k"})
    assert set(third.json()) == {"task_id"}
    assert third.json()["task_id"] != first.json()["task_id"]
