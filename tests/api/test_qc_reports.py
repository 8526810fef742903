"""Platform presets and QC reports (DELIVERIES.md §6), through HTTP: exports asked for with POST
/runs/{run_id}/exports and polled, files downloaded through their signed URLs, reports read with
``service.qc.report_for`` (the endpoint is the qc-page branch's).

Each preset's output is measured by independent meters, pyloudnorm (over the dialogue segments and over
the whole) and FFmpeg's ebur128 true peak, and compared with the target and with the report's own figures.
Crafted media fail their named check while the export succeeds: a silence inside speech, clipping, a dub
shorter than the picture. Every export of the module is asked for up front so that conversions overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask
from altdub.db.session import session_scope
from altdub.media.catalogue import LOUDNESS_TARGETS
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.qc_report import DIALOGUE_GATE_NOTE, QcReport
from altdub.media.synth import make_video
from altdub.service import qc
from altdub.service.errors import NoReport, NotFound
from altdub.service.keys import create_key
from tests.conftest import auth, make_run, wait_for_task
from tests.media.test_masters import decode_audio
from tests.media.test_meter import SECONDS, SILENT, SPEECH, ffmpeg_true_peak, speech_dub

SHORT_SECONDS = 19.7  # 1.5 % short: imported (2 % allowed), padded with 0.3 s of silence


def _peaky_dub(path: Path) -> Path:
    """Quiet dialogue with a click near full scale every 2 s: reaching -14 LUFS takes the limiter."""
    speech = "+".join(f"between(t,{a},{b})" for a, b in SPEECH)
    voice = "0.05*sin(2*PI*700*t)*(0.6+0.4*sin(2*PI*3*t))"
    expression = f"if(lt(mod(t,2),0.002),0.9,if({speech},{voice},0.004*sin(2*PI*150*t)))".replace(",", "\\,")
    run_ffmpeg(["-f", "lavfi", "-i", f"aevalsrc={expression}:s=48000:d={SECONDS}", "-ac", "2", file_arg(path)])
    return path


def _voice_stem(path: Path) -> Path:
    """The dialogue alone, silent between the lines."""
    speech = "+".join(f"between(t,{a},{b})" for a, b in SPEECH)
    expression = f"if({speech},0.3*sin(2*PI*700*t)*(0.6+0.4*sin(2*PI*3*t)),0)".replace(",", "\\,")
    run_ffmpeg(["-f", "lavfi", "-i", f"aevalsrc={expression}:s=48000:d={SECONDS}", "-ac", "2", file_arg(path)])
    return path


def _clipped_dub(path: Path, seconds: float = SECONDS) -> Path:
    """A tone driven 30 dB past full scale: thousands of samples at full scale."""
    run_ffmpeg(
        ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-af", "volume=30dB",
         "-ac", "2", "-c:a", "pcm_s16le", file_arg(path)]
    )  # fmt: skip
    return path


TRANSCRIPT = json.dumps([{"start": a, "end": b, "text": "Hola.", "speaker": ""} for a, b in SPEECH])

# (run, format, languages, loudness): every export the module makes
PRESET_EXPORTS = [
    ("transcript", "mp4", ["es-es"], "netflix"),
    ("voice", "mxf", ["es-es"], "amazon"),
    ("transcript", "mp3", ["es-es"], "apple_podcasts"),
    ("transcript", "m4a", ["es-es"], "youtube"),
    ("transcript", "flac", ["es-es"], "spotify"),
    ("peaky", "mp4", ["es-es"], "spotify"),
    ("peaky", "wav", ["es-es"], "netflix"),
    ("transcript", "mkv", ["es-es", "fr-fr"], "netflix"),
]
OTHER_EXPORTS = [
    ("transcript", "hls", ["es-es", "fr-fr"], "youtube"),
    ("transcript", "mov", ["es-es"], None),
    ("transcript", "mkv", ["es-es"], None),  # the dub copied as it is: measured after, not on an encoder
    ("silence", "flac", ["es-es"], None),
    ("clipped", "flac", ["es-es"], None),
    ("short", "mp4", ["es-es"], None),
]


@dataclass
class Lab:
    client: TestClient
    key: str
    runs: dict[str, int]
    directory: Path
    tasks: dict[tuple[str, str, tuple[str, ...], str | None], str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def context(self) -> Any:
        return self.client.app.state.context  # type: ignore[attr-defined]

    def body(self, output_format: str, languages: list[str], loudness: str | None) -> dict[str, Any]:
        return {"output_format": output_format, "languages": languages, "loudness": loudness}

    def request(self, run: str, output_format: str, languages: list[str], loudness: str | None) -> None:
        response = self.client.post(
            f"/runs/{self.runs[run]}/exports",
            headers=auth(self.key),
            json=self.body(output_format, languages, loudness),
        )
        assert response.status_code == 200, response.text
        self.tasks[(run, output_format, tuple(languages), loudness)] = response.json()["task_id"]

    def status(self, run: str, output_format: str, languages: list[str], loudness: str | None) -> dict[str, Any]:
        task_id = self.tasks[(run, output_format, tuple(languages), loudness)]
        status = wait_for_task(self.client, self.key, task_id, timeout=600)
        return {**status, "task_id": task_id}

    def report(self, run: str, output_format: str, languages: list[str], loudness: str | None) -> QcReport:
        status = self.status(run, output_format, languages, loudness)
        assert status["status"] == "SUCCESS", status
        return qc.report_for(self.context, 1, self.runs[run], status["task_id"])

    def file(self, run: str, output_format: str, languages: list[str], loudness: str | None) -> Path:
        status = self.status(run, output_format, languages, loudness)
        assert status["status"] == "SUCCESS", status
        path = self.directory / f"{status['task_id']}.{output_format}"
        if not path.exists():
            response = self.client.get(status["output_url"])
            assert response.status_code == 200, response.text
            path.write_bytes(response.content)
        return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    media = tmp_path_factory.mktemp("qc-media")
    source = make_video(media / "source.mp4", SECONDS)
    dub, voice = speech_dub(media / "dub-es.wav", gain=0.3), _voice_stem(media / "voice-es.wav")
    french = speech_dub(media / "dub-fr.wav", gain=0.05, hz=500)  # 16 dB quieter: its own gain to the target
    settings = Settings(data_dir=tmp_path_factory.mktemp("qc-data"), create_demo=False, workers=2, task_time_limit=600)
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.context.sessions) as session:  # type: ignore[attr-defined]
            key, _ = create_key(session, "qc")  # the first workspace: id 1
        transcripts = {"transcript_es-es": TRANSCRIPT, "transcript_fr-fr": TRANSCRIPT}
        both = {"source": source, "dub_es-es": dub, "dub_fr-fr": french}
        short = speech_dub(media / "short.wav", SHORT_SECONDS, gain=0.3)
        runs = {
            "transcript": make_run(client, key, both, **transcripts),
            "voice": make_run(client, key, {"source": source, "dub_es-es": dub, "voice_es-es": voice}),
            "bare": make_run(client, key, {"source": source, "dub_es-es": dub}),
            "peaky": make_run(
                client, key, {"source": source, "dub_es-es": _peaky_dub(media / "peaky.wav")},
                **{"transcript_es-es": TRANSCRIPT},
            ),
            "silence": make_run(
                client, key, {"source": source, "dub_es-es": speech_dub(media / "silent.wav", gain=0.3, silent=True)},
                **{"transcript_es-es": TRANSCRIPT},
            ),
            "clipped": make_run(client, key, {"source": source, "dub_es-es": _clipped_dub(media / "clipped.wav")}),
            "short": make_run(client, key, {"source": source, "dub_es-es": short}),
        }  # fmt: skip
        lab = Lab(client, key, runs, tmp_path_factory.mktemp("qc-exports"))
        for planned in [*PRESET_EXPORTS, *OTHER_EXPORTS]:
            lab.request(*planned[:2], list(planned[2]), planned[3])
        yield lab


def _within(samples: np.ndarray, rate: int, start: float, regions: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The samples of the regions (seconds of the programme; ``start``: the first sample's time), joined."""
    return np.concatenate([samples[round((a - start) * rate) : round((b - start) * rate)] for a, b in regions])


def _decoded_tracks(path: Path, output_format: str, tracks: int) -> list[tuple[np.ndarray, int, float]]:
    """Each audio track of the output as (samples, rate, start); MXF's mono tracks stacked per language."""
    import av

    with av.open(str(path)) as container:
        indexes = [s.index for s in container.streams.audio]
    per_track = len(indexes) // tracks
    decoded = []
    for number in range(tracks):
        parts = [decode_audio(path, i) for i in indexes[number * per_track : (number + 1) * per_track]]
        length = min(len(p.samples) for p in parts)
        samples = np.hstack([p.samples[:length] for p in parts])
        decoded.append((samples, parts[0].rate, parts[0].start))
    return decoded


FIGURES: list[str] = []  # each preset's measured figures, printed at the end of the module (-s)


@pytest.mark.parametrize(
    ("run", "output_format", "languages", "preset"), PRESET_EXPORTS, ids=[f"{p[3]}-{p[1]}" for p in PRESET_EXPORTS]
)
def test_preset_output_is_on_target_by_independent_meters(
    lab: Lab, run: str, output_format: str, languages: list[str], preset: str
) -> None:
    target = LOUDNESS_TARGETS[preset]
    report = lab.report(run, output_format, languages, preset)
    path = lab.file(run, output_format, languages, preset)
    assert report.preset == preset and report.target is not None
    assert report.target.tolerance == target.tolerance and report.target.dialogue_gated == target.dialogue_gated
    assert report.passed, report.failed
    tracks = _decoded_tracks(path, output_format, len(languages))
    assert len(report.tracks) == len(languages)
    for track, (samples, rate, start) in zip(report.tracks, tracks, strict=True):
        meter = pyloudnorm.Meter(rate)
        whole = meter.integrated_loudness(samples)
        dialogue = meter.integrated_loudness(_within(samples, rate, start, SPEECH))
        peak = max(ffmpeg_true_peak(path, i) for i in _streams_of(path, output_format, len(languages), track.index))
        aimed = dialogue if target.dialogue_gated else whole
        FIGURES.append(
            f"{preset} {output_format} {track.language}: dialogue {dialogue:.2f} LUFS, whole {whole:.2f} LUFS, "
            f"true peak {peak:.2f} dBTP (report: {track.dialogue_integrated}, {track.integrated}, {track.true_peak})"
        )
        assert abs(aimed - target.integrated) <= min(target.tolerance, 0.5), FIGURES[-1]
        assert peak <= target.true_peak, FIGURES[-1]
        assert track.integrated is not None and abs(track.integrated - whole) <= 0.5, FIGURES[-1]
        if target.dialogue_gated:
            assert track.speech == SPEECH, track.speech  # the transcript's segments; the voice stem's activity
            assert track.dialogue_integrated is not None and abs(track.dialogue_integrated - dialogue) <= 0.5
            assert DIALOGUE_GATE_NOTE in report.notes
        assert abs(track.true_peak - peak) <= 0.3, FIGURES[-1]
    names = {c.name for c in report.checks}
    assert ("dialogue_loudness" if target.dialogue_gated else "integrated_loudness") in names
    assert {"duration", "true_peak", "clipping"} <= names


def _streams_of(path: Path, output_format: str, tracks: int, track: int) -> list[int]:
    import av

    with av.open(str(path)) as container:
        indexes = [s.index for s in container.streams.audio]
    per_track = len(indexes) // tracks
    return indexes[track * per_track : (track + 1) * per_track]


def test_voice_stem_gives_the_speech_regions(lab: Lab) -> None:
    report = lab.report("voice", "mxf", ["es-es"], "amazon")
    [track] = report.tracks
    assert len(track.speech) == len(SPEECH)
    for (start, end), (want_start, want_end) in zip(track.speech, SPEECH, strict=True):
        assert abs(start - want_start) < 0.1 and abs(end - want_end) < 0.1, track.speech
    assert any("track sheet" in note or "MXF" in note for note in report.notes)


def test_report_is_stored_with_the_task_and_small(lab: Lab) -> None:
    status = lab.status("transcript", "mkv", ["es-es", "fr-fr"], "netflix")
    with session_scope(lab.context.sessions) as session:
        task = session.get(ExportTask, status["task_id"])
        assert task is not None and task.qc_report is not None
        stored = task.qc_report
    report = QcReport.from_dict(stored)
    assert json.loads(json.dumps(report.as_dict())) == stored
    assert len(json.dumps(stored)) < 20_000
    assert [t.language for t in report.tracks] == ["es-es", "fr-fr"]
    assert [t.default for t in report.tracks] == [True, False]
    # one point a second, None only where the meter had nothing above the gate
    assert report.tracks[0].short_term.step == 1.0 and len(report.tracks[0].short_term.values) == SECONDS


def test_streaming_package_reports_each_rendition(lab: Lab) -> None:
    report = lab.report("transcript", "hls", ["es-es", "fr-fr"], "youtube")
    assert [t.language for t in report.tracks] == ["es-es", "fr-fr"]
    assert report.passed, report.failed
    for track in report.tracks:
        assert track.integrated is not None and abs(track.integrated - -14.0) <= 1.0
        assert track.true_peak <= -1.0
    assert {c.name for c in report.checks} >= {"duration", "track_tags", "default_track", "true_peak"}


@pytest.mark.parametrize("output_format", ["mov", "mkv"])
def test_no_preset_reports_figures_and_objective_checks(lab: Lab, output_format: str) -> None:
    report = lab.report("transcript", output_format, ["es-es"], None)
    assert report.preset is None and report.target is None and report.passed, report.failed
    names = {c.name for c in report.checks}
    assert names == {
        "duration",
        "clipping",
        "silence_in_speech",
        "track_tags",
        "default_track",
        "timecode",
        "audio_start",
    }
    [track] = report.tracks
    assert track.integrated is not None and track.dialogue_integrated is not None
    assert track.dialogue_integrated > track.integrated  # the bed between the lines is quieter than the dialogue


@pytest.mark.parametrize(
    ("run", "output_format", "failing"),
    [("silence", "flac", "silence_in_speech"), ("clipped", "flac", "clipping"), ("short", "mp4", "duration")],
)
def test_crafted_media_fail_their_check_and_the_export_succeeds(
    lab: Lab, run: str, output_format: str, failing: str
) -> None:
    status = lab.status(run, output_format, ["es-es"], None)
    assert status["status"] == "SUCCESS", status
    assert lab.file(run, output_format, ["es-es"], None).stat().st_size > 0  # delivered all the same
    report = qc.report_for(lab.context, 1, lab.runs[run], status["task_id"])
    assert not report.passed
    assert {c.name for c in report.failed} == {failing}, report.failed
    [check] = report.failed
    assert check.track == 0
    if failing == "silence_in_speech":
        [(start, end)] = report.tracks[0].silences
        assert abs(start - SILENT[0]) < 0.1 and abs(end - SILENT[1]) < 0.1
    if failing == "clipping":
        assert report.tracks[0].clipped_samples > 1000
    if failing == "duration":
        assert "padded with 0.300 s of silence" in check.measured, check


@pytest.mark.parametrize("preset", [p for p, t in LOUDNESS_TARGETS.items() if t.dialogue_gated])
def test_dialogue_preset_without_transcript_or_voice_stem_is_422(lab: Lab, preset: str) -> None:
    response = lab.client.post(
        f"/runs/{lab.runs['bare']}/exports", headers=auth(lab.key), json=lab.body("mp4", ["es-es"], preset)
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == "loudness"
    assert "es-es" in error["msg"] and "transcript" in error["msg"] and "voice stem" in error["msg"], error


def test_report_for_another_workspace_or_run_is_not_found(lab: Lab) -> None:
    status = lab.status("transcript", "mov", ["es-es"], None)
    with pytest.raises(NotFound):
        qc.report_for(lab.context, 2, lab.runs["transcript"], status["task_id"])
    with pytest.raises(NotFound):
        qc.report_for(lab.context, 1, lab.runs["voice"], status["task_id"])
    with pytest.raises(NotFound):
        qc.report_for(lab.context, 1, lab.runs["transcript"], "no-such-task")


def test_figures_are_printed(lab: Lab) -> None:
    """Not a check: the preset figures of this module, for the report (pytest -s)."""
    for line in FIGURES:
        print(line)
    assert len(FIGURES) >= len(PRESET_EXPORTS)


def test_reports_off_store_none_and_say_so(tmp_path: Path) -> None:
    source = make_video(tmp_path / "source.mp4", 4.0)
    dub = _clipped_dub(tmp_path / "dub.wav", 4.0)
    settings = Settings(
        data_dir=tmp_path / "data", create_demo=False, workers=1, qc_reports=False, export_quota_minutes=0.5
    )
    with TestClient(create_app(settings)) as client:
        context = client.app.state.context  # type: ignore[attr-defined]
        with session_scope(context.sessions) as session:
            key, _ = create_key(session, "off")
        run = make_run(client, key, {"source": source, "dub_es-es": dub})
        answers = [
            client.post(f"/runs/{run}/exports", headers=auth(key), json={"output_format": f, "languages": ["es-es"]})
            for f in ("mp4", "mov", "mkv", "flac", "wav", "mp3", "m4a", "aac")  # 8 x 4 s: past 0.5 minutes
        ]
        statuses = [wait_for_task(client, key, a.json()["task_id"]) for a in answers]
        done = next(s for s, a in zip(statuses, answers, strict=True) if s["status"] == "SUCCESS")
        refused = next(a for s, a in zip(statuses, answers, strict=True) if s["status"] == "PAYMENT_REQUIRED")
        success_id = next(a.json()["task_id"] for s, a in zip(statuses, answers, strict=True) if s is done)
        with pytest.raises(NoReport, match="no QC report"):
            qc.report_for(context, 1, run, success_id)
        with pytest.raises(NoReport, match="PAYMENT_REQUIRED"):
            qc.report_for(context, 1, run, refused.json()["task_id"])


def test_timecode_asked_for_is_checked(lab: Lab) -> None:
    body = {"output_format": "mp4", "languages": ["es-es"], "start_timecode": "01:00:00:00"}
    response = lab.client.post(f"/runs/{lab.runs['transcript']}/exports", headers=auth(lab.key), json=body)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert wait_for_task(lab.client, lab.key, task_id, timeout=600)["status"] == "SUCCESS"
    report = qc.report_for(lab.context, 1, lab.runs["transcript"], task_id)
    [timecode] = [c for c in report.checks if c.name == "timecode"]
    assert timecode.passed and timecode.expected == timecode.measured == "01:00:00:00", timecode
    assert report.passed, report.failed


def test_original_track_without_transcript_is_measured_whole(lab: Lab) -> None:
    """netflix with the original audio: the dub is gated on its transcript; the source language has none, so the
    original track is normalised and checked over the whole programme, and the report says so."""
    body = {"output_format": "mp4", "languages": ["es-es"], "loudness": "netflix", "include_original_audio": True}
    response = lab.client.post(f"/runs/{lab.runs['transcript']}/exports", headers=auth(lab.key), json=body)
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    assert wait_for_task(lab.client, lab.key, task_id, timeout=600)["status"] == "SUCCESS"
    report = qc.report_for(lab.context, 1, lab.runs["transcript"], task_id)
    assert [(t.language, t.role) for t in report.tracks] == [("es-es", "dub"), ("en-us", "original")]
    loudness = {c.track: c.name for c in report.checks if c.name in ("dialogue_loudness", "integrated_loudness")}
    assert loudness == {0: "dialogue_loudness", 1: "integrated_loudness"}
    assert report.tracks[1].speech == () and report.tracks[1].dialogue_integrated is None
    assert any("track 1" in note and "whole programme" in note for note in report.notes), report.notes
    assert report.passed, report.failed
    assert report.tracks[1].integrated is not None and abs(report.tracks[1].integrated - -27.0) <= 0.5
