"""clips_zip, aaf and otio through HTTP: POST /runs/{run_id}/exports, poll, download, read back with each
format's library (a run with voice and M&E stems and a transcript with speakers, and one without)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aaf2
import opentimelineio as otio
import pyloudnorm
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.media.catalogue import CATALOGUE
from altdub.media.qc_report import QcReport
from altdub.media.synth import make_tone
from tests.api.conftest import new_key
from tests.api.test_qc_reports import _clipped_dub
from tests.conftest import SOURCE_SECONDS, Media, auth, fetch_finished, make_run
from tests.media.handoff_stems import int24_samples
from tests.media.test_masters import decode_audio
from tests.media.test_timecode import make_timecoded_video

SEGMENTS = [  # samples at 48 kHz: 24000-60000, 72000-96000, 144000-168000
    {"start": 0.5, "end": 1.25, "text": "Hola.", "speaker": "Ana"},
    {"start": 1.5, "end": 2.0, "text": "¿Qué?", "speaker": ""},
    {"start": 3.0, "end": 3.5, "text": "Adiós.", "speaker": "Luis Ñ"},
]
PROGRAMME = round(SOURCE_SECONDS * 48000)
TRACKS = [
    "Spanish (Spain) mix L", "Spanish (Spain) mix R", "Spanish (Spain) voice L", "Spanish (Spain) voice R",
    "M&E L", "M&E R", "English (United States) original L", "English (United States) original R",
]  # fmt: skip


@dataclass
class App:
    client: TestClient
    key: str
    full: int  # voice and M&E stems, a transcript with speakers
    plain: int  # the dub alone, no transcript
    ntsc: int  # a 29.97 source starting at 01:00:00;00 (drop-frame), with the transcript
    directory: Path

    def download(self, run_id: int, output_format: str, **options: Any) -> Path:
        response = self.client.post(
            f"/runs/{run_id}/exports",
            headers=auth(self.key),
            json={"output_format": output_format, "languages": ["es-es"], **options},
        )
        assert response.status_code == 200, response.text
        path = self.directory / f"run{run_id}.{CATALOGUE[output_format].extension}"
        path.write_bytes(fetch_finished(self.client, self.key, response.json()).content)
        return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[App]:
    directory = tmp_path_factory.mktemp("handoff-writers")
    settings = Settings(data_dir=directory / "data", create_demo=False, workers=2, task_time_limit=120)
    voice = make_tone(directory / "voice.wav", SOURCE_SECONDS, tone_hz=1250)
    background = make_tone(directory / "background.wav", SOURCE_SECONDS, tone_hz=170)
    transcript = directory / "es.json"
    transcript.write_text(json.dumps(SEGMENTS), encoding="utf-8")
    with TestClient(create_app(settings)) as client:
        key = new_key(client, "handoff-writers")
        files = {"source": media.video, "dub_es-es": media.dub_wav}
        full = make_run(
            client, key, {**files, "voice_es-es": voice, "background": background, "transcript_es-es": transcript}
        )
        ntsc = make_timecoded_video(directory / "ntsc.mp4", "30000/1001", "01:00:00;00")
        ntsc_run = make_run(client, key, {"source": ntsc, "dub_es-es": media.dub_wav, "transcript_es-es": transcript})
        yield App(client, key, full, make_run(client, key, files), ntsc_run, directory)


def test_clips_zip(app: App) -> None:
    with zipfile.ZipFile(app.download(app.full, "clips_zip", start_timecode="10:00:00:00")) as archive:
        names = sorted(archive.namelist())
        # 0.5 s is 12.5 frames at the source's 25 fps: the clip starts in frame 12
        wavs = ["es-es/0001_10000012_Ana.wav", "es-es/0002_10000112_unknown.wav", "es-es/0003_10000300_Luis-N.wav"]
        assert names == sorted([*wavs, "es-es/clips.csv", f"es-es/run-{app.full}_es-es.edl"])
        rows = list(csv.DictReader(io.StringIO(archive.read("es-es/clips.csv").decode("utf-8"))))
        assert [(r["start_sample"], r["end_sample"], r["speaker"]) for r in rows] == [
            ("24000", "60000", "Ana"), ("72000", "96000", ""), ("144000", "168000", "Luis Ñ"),
        ]  # fmt: skip
        for name, (start, end) in zip(wavs, [(24000, 60000), (72000, 96000), (144000, 168000)], strict=True):
            data = archive.read(name)
            assert data[:4] == b"RIFF" and b"bext" in data[:512]
            assert len(data) >= (end - start) * 2 * 3  # stereo 24-bit
        edl = archive.read(f"es-es/run-{app.full}_es-es.edl").decode("utf-8")
    timeline = otio.adapters.read_from_string(edl, "cmx_3600", rate=25)
    clips = list(timeline.find_clips())
    assert [c.name for c in clips] == ["0001 Ana", "0002", "0003 Luis Ñ"]
    assert [otio.opentime.to_timecode(c.source_range.start_time, 25) for c in clips] == [
        "10:00:00:12", "10:00:01:12", "10:00:03:00",
    ]  # fmt: skip


def test_clips_zip_without_a_transcript_is_422_naming_the_language(app: App) -> None:
    response = app.client.post(
        f"/runs/{app.plain}/exports",
        headers=auth(app.key),
        json={"output_format": "clips_zip", "languages": ["es-es"]},
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][:2] == ["body", "languages"] and "es-es" in error["msg"], error


def test_aaf(app: App) -> None:
    path = app.download(app.full, "aaf", start_timecode="01:00:00:00")
    with aaf2.open(str(path), "r") as f:
        (composition,) = f.content.toplevel()
        assert composition.name == f"run-{app.full}"
        assert len(list(f.content.compositionmobs())) == 1
        timecode, *tracks = composition.slots
        assert (timecode.segment.start, timecode.segment.fps, timecode.segment.drop) == (90000, 25, False)
        assert [t.name for t in tracks] == TRACKS
        voice_left = tracks[2].segment.components
        placed, position = [], 0
        for component in voice_left:
            if isinstance(component, aaf2.components.SourceClip):
                placed.append((position, position + component.length, component.mob.name))
            position += component.length
        assert position == PROGRAMME
        assert placed == [(24000, 60000, "0001 Ana"), (72000, 96000, "0002"), (144000, 168000, "0003 Luis Ñ")]
        for track in tracks[:2] + tracks[4:]:
            (clip,) = track.segment.components  # a stem without segments: one clip of its master
            source = clip.mob.slot_at(clip.slot_id).segment.components[0].mob
            samples = int24_samples(source.essence.open("r").read(), 1)
            assert len(samples) == PROGRAMME and abs(samples).max() > 1000, track.name  # the tone, embedded


def test_otio(app: App) -> None:
    path = app.download(app.plain, "otio")
    timeline = otio.adapters.read_from_file(str(path))
    assert timeline.global_start_time.to_timecode(25, False) == "00:00:00:00"
    assert [t.name for t in timeline.tracks] == ["Spanish (Spain) mix", "English (United States) original"]
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for track in timeline.tracks:
            (clip,) = track
            assert clip.media_reference.target_url in names
            assert clip.source_range.duration.value == PROGRAMME
    full = otio.adapters.read_from_file(str(app.download(app.full, "otio", start_timecode="00:59:59:00")))
    voice = full.tracks[1]
    assert voice.name == "Spanish (Spain) voice"
    assert [(voice.range_of_child(c).start_time.value, c.name) for c in voice.find_clips()] == [
        (24000, "0001 Ana"), (72000, "0002"), (144000, "0003 Luis Ñ"),
    ]  # fmt: skip


def test_a_drop_frame_source_keeps_its_timecode(app: App) -> None:
    with aaf2.open(str(app.download(app.ntsc, "aaf")), "r") as f:
        (composition,) = f.content.toplevel()
        timecode = composition.slots[0]
        assert (timecode.segment.start, timecode.segment.fps, timecode.segment.drop) == (107892, 30, True)
        assert timecode.edit_rate == aaf2.rational.AAFRational("30000/1001")
    timeline = otio.adapters.read_from_file(str(app.download(app.ntsc, "otio")))
    assert timeline.global_start_time.to_timecode(30000 / 1001, True) == "01:00:00;00"
    with zipfile.ZipFile(app.download(app.ntsc, "clips_zip")) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("es-es/clips.csv").decode("utf-8"))))
    # 0.5 s, 1.5 s and 3 s are 14.99, 44.96 and 89.91 frames at 29.97
    assert [r["start_timecode"] for r in rows] == ["01:00:00;14", "01:00:01;14", "01:00:02;29"]


def _handoff_task(app: App, run_id: int, output_format: str) -> str:
    """A new hand-off export of ``run_id``, waited for: its task id."""
    answer = app.client.post(
        f"/runs/{run_id}/exports", headers=auth(app.key), json={"output_format": output_format, "languages": ["es-es"]}
    ).json()
    assert "task_id" in answer, answer
    fetch_finished(app.client, app.key, answer)
    return answer["task_id"]


def test_a_hand_off_has_a_qc_report_of_its_stems(app: App) -> None:
    """Each stem a track of the report, measured as an independent meter measures it in the zip; the voice
    stem's speech the transcript's; the TimeReference read back from each stem; the page renders."""
    task = _handoff_task(app, app.ntsc, "tracks_zip")
    answer = app.client.get(f"/runs/{app.ntsc}/exports/{task}/qc", headers=auth(app.key))
    assert answer.status_code == 200, answer.text
    report = QcReport.from_dict(answer.json())
    assert report.passed, report.failed
    assert report.preset is None and report.target is None
    assert [(t.title, t.role) for t in report.tracks] == [
        ("Spanish (Spain) mix", "mix"), ("English (United States) original", "original"),
    ]  # fmt: skip
    assert report.tracks[0].speech == tuple((s["start"], s["end"]) for s in SEGMENTS)  # no voice stem: cut from the mix
    timecodes = [c for c in report.checks if c.name == "timecode"]
    assert [c.track for c in timecodes] == [0, 1] and all(c.passed for c in timecodes)
    assert all(c.measured == "TimeReference 172799827" for c in timecodes)  # 01:00:00;00 at 29.97 drop-frame
    assert {c.name for c in report.checks} == {"duration", "timecode", "clipping", "silence_in_speech"}
    path = app.directory / "qc-stems.zip"
    path.write_bytes(app.client.get(_output_url(app, task)).content)
    with zipfile.ZipFile(path) as archive:
        archive.extract(f"run-{app.ntsc}_es-es_mix.wav", app.directory)
    decoded = decode_audio(app.directory / f"run-{app.ntsc}_es-es_mix.wav", 0)
    independent = pyloudnorm.Meter(decoded.rate).integrated_loudness(decoded.samples)
    assert report.tracks[0].integrated is not None
    assert abs(report.tracks[0].integrated - independent) <= 0.5
    page = app.client.get(f"/runs/{app.ntsc}/exports/{task}/qc?format=html", headers=auth(app.key))
    assert page.status_code == 200 and "Spanish (Spain) mix" in page.text


def test_a_clipping_dub_fails_the_hand_offs_clipping_check(app: App) -> None:
    """The export is delivered all the same; the failing check names the mix's track."""
    dub = _clipped_dub(app.directory / "clipped.wav", SOURCE_SECONDS)
    run_id = make_run(app.client, app.key, {"dub_es-es": dub})
    task = _handoff_task(app, run_id, "aaf")
    report = QcReport.from_dict(app.client.get(f"/runs/{run_id}/exports/{task}/qc", headers=auth(app.key)).json())
    assert not report.passed
    assert [(c.name, c.track) for c in report.failed] == [("clipping", 0)]
    assert report.tracks[0].clipped_samples > 1000


def _output_url(app: App, task: str) -> str:
    status = app.client.get(f"/dub-alt-format/{task}", headers=auth(app.key)).json()
    assert status["status"] == "SUCCESS", status
    return status["output_url"]
