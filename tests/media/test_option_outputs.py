"""Spec §3 options, checked on what the HTTP API delivers: bitrate, sample rate, channels, loudness
(measured with pyloudnorm on the decoded output, not with FFmpeg), stems, the original-audio track and
soft subtitles. Every export of the module is requested up front so that conversions overlap, then
waited for and downloaded through its signed URL."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyloudnorm
import pysubs2
import pytest
from fastapi.testclient import TestClient
from scipy.signal import resample_poly

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.models import ExportTask
from altdub.db.session import session_scope
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.synth import make_tone
from altdub.service.keys import create_key
from tests.conftest import SOURCE_SECONDS, Media, auth, make_run

LANGUAGE = "es-es"
DUB_LANG, SOURCE_LANG = "spa", "eng"
# Distinct tones: which signal ends up in which track is told by its dominant frequency.
ORIGINAL_HZ = 440  # the conftest's source video
DUB_HZ = 550  # the conftest's dub_wav
VOICE_HZ = 1250
BACKGROUND_HZ = 170
TOLERANCE = 0.050  # seconds, spec §4

SEGMENTS = [
    {"start": 0.5, "end": 1.25, "text": "Hola, mundo.", "speaker": "Ana"},
    {"start": 1.5, "end": 2.75, "text": "¿Qué tal estás?", "speaker": "Luis"},
    {"start": 3.0, "end": 3.9, "text": "Muy bien, gracias.", "speaker": ""},
]

LOUDNESS = {  # name: (integrated target, true-peak ceiling)
    "ebu_r128": (-23.0, -1.0),
    "atsc_a85": (-24.0, -2.0),
    "streaming": (-14.0, -1.0),
}
LOUDNESS_FORMATS = ["flac", "mp3", "mp4"]
LOUDNESS_RUNS = ["noisy", "peaky"]
BITRATE_FORMATS = ["mp3", "aac", "m4a", "mp4", "mov"]
BITRATES = ["128k", "256k"]
RATE_FORMATS = ["flac", "wav", "m4a"]
SAMPLE_RATES = [22050, 44100, 96000]
CHANNELS = [1, 6]
ORIGINAL_FORMATS = ["mp4", "mov", "mkv"]
SUBTITLE_CODECS = {"mp4": "mov_text", "mov": "mov_text", "mkv": "subrip"}
STEM_FORMATS = ["flac", "mp4"]
COMBO = {"audio_bitrate": "128k", "include_original_audio": True, "subtitles": "soft", "loudness": "ebu_r128"}


def _key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


PLANNED: list[tuple[str, str, dict[str, Any]]] = [
    *[("tones", f, {"sample_rate": r}) for f in RATE_FORMATS for r in SAMPLE_RATES],
    *[("tones", f, {"channels": c}) for f in RATE_FORMATS for c in CHANNELS],
    *[("tones", f, {"stem": s}) for f in STEM_FORMATS for s in ("voice", "background")],
    ("tones", "flac", {}),
    *[("tones", f, {"include_original_audio": True}) for f in [*ORIGINAL_FORMATS, "mxf"]],
    *[("tones", f, {"subtitles": "soft"}) for f in SUBTITLE_CODECS],
    ("tones", "mp4", COMBO),
    *[("noisy", f, {"audio_bitrate": b}) for f in BITRATE_FORMATS for b in BITRATES],
    *[(r, f, {"loudness": t}) for r in LOUDNESS_RUNS for f in LOUDNESS_FORMATS for t in LOUDNESS],
]


# --- the module's app, runs and exports ---------------------------------------------------------------------


def make_noisy_dub(path: Path) -> Path:
    """4 s of decorrelated stereo pink noise in bursts (loud 0.6 s, quiet 0.4 s): crest factor and dynamics."""
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.3:seed=11:sample_rate=48000:duration=4",
            "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.3:seed=22:sample_rate=48000:duration=4",
            "-filter_complex", "[0:a][1:a]amerge=inputs=2,volume='0.15+0.85*lt(mod(t,1),0.6)':eval=frame[a]",
            "-map", "[a]", "-c:a", "pcm_s16le", file_arg(path),
        ]
    )  # fmt: skip
    return path


def make_peaky_dub(path: Path) -> Path:
    """4 s of quiet stereo pink noise with a 3 ms 3 kHz burst peaking at -1 dBFS every 0.5 s (clicks,
    plosives, gunshots): about -22 LUFS with an 18.5 dB crest factor, so -14 LUFS needs peak limiting."""
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.08:seed=11:sample_rate=48000:duration=4",
            "-f", "lavfi", "-i", "aevalsrc='0.9*lt(mod(t\\,0.5)\\,0.003)*sin(2*PI*3000*t)':s=48000:d=4",
            "-filter_complex", "[0:a][1:a]amix=inputs=2:normalize=0,aformat=channel_layouts=stereo[a]",
            "-map", "[a]", "-c:a", "pcm_s16le", file_arg(path),
        ]
    )  # fmt: skip
    return path


@dataclass
class Lab:
    client: TestClient
    key: str
    directory: Path
    runs: dict[str, int]
    dub: Path  # the tones run's dub_es-es
    answers: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    statuses: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    files: dict[tuple[str, str, str], Path] = field(default_factory=dict)

    def request(self, run: str, output_format: str, options: dict[str, Any]) -> None:
        slot = (run, output_format, _key(options))
        if slot in self.answers:
            return
        response = self.client.post(
            f"/dub-alt-format/{self.runs[run]}/{LANGUAGE}",
            headers=auth(self.key),
            json={"output_format": output_format, **options},
        )
        assert response.status_code == 200, f"{output_format} {options}: {response.text}"
        self.answers[slot] = response.json()

    def status(self, run: str, output_format: str, options: dict[str, Any]) -> dict[str, Any]:
        slot = (run, output_format, _key(options))
        if slot not in self.statuses:
            self.request(run, output_format, options)
            answer = self.answers[slot]
            assert "task_id" in answer, answer  # every export of this module is new
            deadline = time.monotonic() + 120
            while True:
                body = self.client.get(f"/dub-alt-format/{answer['task_id']}", headers=auth(self.key)).json()
                if body["status"] != "PENDING":
                    break
                assert time.monotonic() < deadline, f"{output_format} {options} still PENDING"
                time.sleep(0.05)
            self.statuses[slot] = {**body, "task_id": answer["task_id"]}
        return self.statuses[slot]

    def file(self, run: str, output_format: str, options: dict[str, Any]) -> Path:
        slot = (run, output_format, _key(options))
        if slot not in self.files:
            status = self.status(run, output_format, options)
            assert status["status"] == "SUCCESS", f"{output_format} {options}: {status}"
            response = self.client.get(status["output_url"])
            assert response.status_code == 200, response.text
            path = self.directory / f"{run}-{len(self.files)}.{output_format}"
            path.write_bytes(response.content)
            self.files[slot] = path
        return self.files[slot]

    def task_row(self, task_id: str) -> ExportTask:
        with self.client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
            row = session.get(ExportTask, task_id)
            assert row is not None
            return row


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Lab]:
    d = tmp_path_factory.mktemp("option-media")
    voice = make_tone(d / "voice-es.wav", SOURCE_SECONDS, tone_hz=VOICE_HZ)
    background = make_tone(d / "background.wav", SOURCE_SECONDS, tone_hz=BACKGROUND_HZ)
    transcript = d / "es.json"
    transcript.write_text(json.dumps(SEGMENTS, ensure_ascii=False), encoding="utf-8")
    noisy = make_noisy_dub(d / "noisy-es.wav")
    # Every planned export is requested up front: more than a workspace's default pending limit.
    settings = Settings(
        data_dir=d / "data", create_demo=False, workers=3, task_time_limit=120, max_pending_tasks=len(PLANNED)
    )
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.context.sessions) as session:  # type: ignore[attr-defined]
            key, _ = create_key(session, "options")
        runs = {
            "tones": make_run(
                client,
                key,
                {
                    "source": media.video,
                    "dub_es-es": media.dub_wav,
                    "voice_es-es": voice,
                    "background": background,
                    "transcript_es-es": transcript,
                },
            ),
            "noisy": make_run(client, key, {"source": media.video, "dub_es-es": noisy}),
            "peaky": make_run(client, key, {"source": media.video, "dub_es-es": make_peaky_dub(d / "peaky.wav")}),
        }
        lab = Lab(client, key, tmp_path_factory.mktemp("option-exports"), runs, media.dub_wav)
        for run, output_format, options in PLANNED:
            lab.request(run, output_format, options)
        yield lab


# --- measuring ----------------------------------------------------------------------------------------------


def decode(path: Path, index: int = 0) -> tuple[np.ndarray, int]:
    """The index-th audio stream decoded to float, shaped (samples, channels), and its sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout.name, rate=rate)
        chunks = []
        for frame in container.decode(stream):
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(chunks, axis=1).T.astype(np.float64), rate


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.fft.rfftfreq(len(mono), 1 / rate)[int(np.argmax(spectrum))])


def true_peak_db(samples: np.ndarray) -> float:
    """True peak (dBTP) with 4x oversampling."""
    oversampled = resample_poly(samples, 4, 1, axis=0)
    return float(20 * np.log10(np.max(np.abs(oversampled))))


def audio_streams(path: Path) -> list[dict[str, Any]]:
    with av.open(str(path)) as container:
        return [
            {
                "codec": s.codec_context.codec.canonical_name,
                "language": s.metadata.get("language"),
                "default": bool(s.disposition & av.stream.Disposition.default),
                "channels": s.codec_context.channels,
                "sample_rate": s.codec_context.sample_rate,
            }
            for s in container.streams.audio
        ]


def packet_bitrate(path: Path) -> float:
    """Bits per second of the first audio stream: its packets' bytes over their duration."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        size = duration = 0
        for packet in container.demux(stream):
            if packet.size:
                size += packet.size
                duration += packet.duration or 0
        return size * 8 / float(duration * stream.time_base)


def file_tags(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {k.lower(): v for k, v in container.metadata.items()}


# --- bitrate ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bitrate", BITRATES)
@pytest.mark.parametrize("output_format", BITRATE_FORMATS)
def test_audio_bitrate_is_the_one_asked(lab: Lab, output_format: str, bitrate: str) -> None:
    output = lab.file("noisy", output_format, {"audio_bitrate": bitrate})
    asked = int(bitrate.removesuffix("k")) * 1000
    if output_format == "mp3":  # CBR: every frame header carries it
        with av.open(str(output)) as container:
            stream = container.streams.audio[0]
            measured = float(stream.bit_rate or stream.codec_context.bit_rate)
    else:
        measured = packet_bitrate(output)
    assert abs(measured - asked) <= 0.10 * asked, f"{measured / 1000:.1f} kb/s for {bitrate}"


# --- sample rate and channels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", SAMPLE_RATES)
@pytest.mark.parametrize("output_format", RATE_FORMATS)
def test_sample_rate_is_exact_and_the_signal_resampled(lab: Lab, output_format: str, rate: int) -> None:
    output = lab.file("tones", output_format, {"sample_rate": rate})
    [stream] = audio_streams(output)
    assert stream["sample_rate"] == rate
    assert stream["channels"] == 2
    samples, decoded_rate = decode(output)
    assert decoded_rate == rate
    assert abs(samples.shape[0] / rate - SOURCE_SECONDS) <= TOLERANCE + 0.03  # AAC priming/padding
    assert abs(dominant_hz(samples, rate) - DUB_HZ) < 2, "the tone moved: relabelled, not resampled"


@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("output_format", RATE_FORMATS)
def test_channel_count_is_exact(lab: Lab, output_format: str, channels: int) -> None:
    output = lab.file("tones", output_format, {"channels": channels})
    [stream] = audio_streams(output)
    assert stream["channels"] == channels
    assert stream["sample_rate"] == 48000
    samples, rate = decode(output)
    assert samples.shape[1] == channels
    assert np.abs(samples).max() > 0.01, "silent output"
    assert abs(dominant_hz(samples, rate) - DUB_HZ) < 2


# --- loudness -----------------------------------------------------------------------------------------------


def _figure(message: str, pattern: str) -> float:
    found = re.search(pattern, message)
    assert found, f"no {pattern!r} in {message!r}"
    return float(found.group(1))


@pytest.mark.parametrize("target", list(LOUDNESS))
@pytest.mark.parametrize("output_format", LOUDNESS_FORMATS)
@pytest.mark.parametrize("run", LOUDNESS_RUNS)
def test_loudness_is_on_target_by_an_independent_meter(lab: Lab, run: str, output_format: str, target: str) -> None:
    integrated_target, ceiling = LOUDNESS[target]
    output = lab.file(run, output_format, {"loudness": target})
    samples, rate = decode(output)
    integrated = pyloudnorm.Meter(rate).integrated_loudness(samples)
    peak = true_peak_db(samples)
    assert abs(integrated - integrated_target) <= 0.5, f"{integrated:.2f} LUFS, target {integrated_target}"
    assert peak <= ceiling + 0.1, f"true peak {peak:.2f} dBTP over the {ceiling} ceiling"


@pytest.mark.parametrize("target", list(LOUDNESS))
@pytest.mark.parametrize("output_format", LOUDNESS_FORMATS)
@pytest.mark.parametrize("run", LOUDNESS_RUNS)
def test_measured_loudness_is_reported_and_stored(lab: Lab, run: str, output_format: str, target: str) -> None:
    status = lab.status(run, output_format, {"loudness": target})
    assert status["status"] == "SUCCESS", status
    message = status["message"]
    assert isinstance(message, str)
    for word in ("integrated", "LUFS", "true peak"):
        assert word in message, message
    reported = _figure(message, r"integrated (-?[0-9.]+) LUFS")
    reported_peak = _figure(message, r"true peak (-?[0-9.]+) dBTP")
    samples, rate = decode(lab.file(run, output_format, {"loudness": target}))
    assert abs(reported - pyloudnorm.Meter(rate).integrated_loudness(samples)) <= 0.5, message
    assert abs(reported_peak - true_peak_db(samples)) <= 0.5, message
    stored = lab.task_row(status["task_id"]).loudness
    assert stored is not None, "no loudness figures stored with the export"
    assert abs(stored["integrated"] - reported) <= 0.051
    assert abs(stored["true_peak"] - reported_peak) <= 0.051


def test_no_loudness_option_leaves_the_level_and_message_alone(lab: Lab) -> None:
    status = lab.status("tones", "flac", {})
    assert status["message"] is None
    assert lab.task_row(status["task_id"]).loudness is None
    samples, rate = decode(lab.file("tones", "flac", {}))
    dub, dub_rate = decode(lab.dub)
    assert rate == dub_rate
    meter = pyloudnorm.Meter(rate)
    assert abs(meter.integrated_loudness(samples) - meter.integrated_loudness(dub)) < 0.05
    assert abs(true_peak_db(samples) - true_peak_db(dub)) < 0.05


# --- stems --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stem", "hz"), [("voice", VOICE_HZ), ("background", BACKGROUND_HZ)])
@pytest.mark.parametrize("output_format", STEM_FORMATS)
def test_stem_export_is_that_stem(lab: Lab, output_format: str, stem: str, hz: int) -> None:
    output = lab.file("tones", output_format, {"stem": stem})
    samples, rate = decode(output)
    assert abs(dominant_hz(samples, rate) - hz) < 2, f"{stem} export holds {dominant_hz(samples, rate):.0f} Hz"
    assert abs(samples.shape[0] / rate - SOURCE_SECONDS) <= TOLERANCE + 0.03


def test_mix_export_is_the_dub(lab: Lab) -> None:
    samples, rate = decode(lab.file("tones", "flac", {}))
    assert abs(dominant_hz(samples, rate) - DUB_HZ) < 2


@pytest.mark.parametrize("stem", ["voice", "background"])
@pytest.mark.parametrize("output_format", STEM_FORMATS)
def test_stem_export_is_tagged_with_the_requested_language(lab: Lab, output_format: str, stem: str) -> None:
    output = lab.file("tones", output_format, {"stem": stem})
    streams = audio_streams(output)
    assert len(streams) == 1
    if output_format == "flac":
        assert file_tags(output).get("language") == DUB_LANG
    else:
        assert streams[0]["language"] == DUB_LANG
        assert streams[0]["default"] is True


# --- the original audio as a second track -----------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ORIGINAL_FORMATS)
def test_original_audio_is_a_second_non_default_track(lab: Lab, output_format: str) -> None:
    output = lab.file("tones", output_format, {"include_original_audio": True})
    streams = audio_streams(output)
    assert len(streams) == 2, streams
    assert [s["language"] for s in streams] == [DUB_LANG, SOURCE_LANG]
    assert [s["default"] for s in streams] == [True, False]
    heard = [dominant_hz(*decode(output, i)) for i in range(2)]
    assert abs(heard[0] - DUB_HZ) < 2 and abs(heard[1] - ORIGINAL_HZ) < 2, f"tracks hold {heard} Hz"
    with av.open(str(output)) as container:
        assert len(container.streams.video) == 1
        assert len(container.streams.subtitles) == 0


def test_mxf_original_audio_adds_one_mono_pcm_track_per_channel(lab: Lab) -> None:
    output = lab.file("tones", "mxf", {"include_original_audio": True})
    streams = audio_streams(output)
    assert len(streams) == 4, streams
    assert all(s["codec"] == "pcm_s24le" and s["channels"] == 1 and s["sample_rate"] == 48000 for s in streams)
    heard = [dominant_hz(*decode(output, i)) for i in range(4)]
    expected = [DUB_HZ, DUB_HZ, ORIGINAL_HZ, ORIGINAL_HZ]
    assert all(abs(h - e) < 2 for h, e in zip(heard, expected, strict=True)), f"tracks hold {heard} Hz"


# --- soft subtitles -------------------------------------------------------------------------------------------


def extract_subtitles(path: Path) -> pysubs2.SSAFile:
    srt = path.with_suffix(path.suffix + ".srt")
    run_ffmpeg(["-i", file_arg(path), "-map", "0:s:0", "-f", "srt", file_arg(srt)])
    return pysubs2.load(str(srt), encoding="utf-8", format_="srt")


def assert_cues_are_the_transcript(subs: pysubs2.SSAFile) -> None:
    events = [e for e in subs.events if not e.is_comment]
    assert len(events) == len(SEGMENTS), [e.plaintext for e in events]
    for event, segment in zip(events, SEGMENTS, strict=True):
        assert abs(event.start - segment["start"] * 1000) <= 1, (event, segment)
        assert abs(event.end - segment["end"] * 1000) <= 1, (event, segment)
        spoken = segment["text"]
        with_speaker = f"{segment['speaker']}: {spoken}" if segment["speaker"] else spoken
        assert event.plaintext.strip() in (spoken, with_speaker), (event.plaintext, segment)


@pytest.mark.parametrize("output_format", list(SUBTITLE_CODECS))
def test_soft_subtitles_are_one_tagged_text_track(lab: Lab, output_format: str) -> None:
    output = lab.file("tones", output_format, {"subtitles": "soft"})
    with av.open(str(output)) as container:
        subtitles = list(container.streams.subtitles)
        assert len(subtitles) == 1
        [sub] = subtitles
        assert sub.codec_context.codec.canonical_name == SUBTITLE_CODECS[output_format]
        assert sub.metadata.get("language") == DUB_LANG
        if output_format == "mkv":  # MP4's muxer enables the first text track whatever it is asked
            assert not sub.disposition & av.stream.Disposition.default
        assert len(container.streams.video) == 1
    streams = audio_streams(output)
    assert [(s["language"], s["default"]) for s in streams] == [(DUB_LANG, True)]


@pytest.mark.parametrize("output_format", list(SUBTITLE_CODECS))
def test_soft_subtitle_cues_are_the_transcript(lab: Lab, output_format: str) -> None:
    assert_cues_are_the_transcript(extract_subtitles(lab.file("tones", output_format, {"subtitles": "soft"})))


def test_options_together(lab: Lab) -> None:
    output = lab.file("tones", "mp4", COMBO)
    streams = audio_streams(output)
    assert [(s["language"], s["default"]) for s in streams] == [(DUB_LANG, True), (SOURCE_LANG, False)]
    samples, rate = decode(output, 0)
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(samples) - LOUDNESS["ebu_r128"][0]) <= 0.5
    assert true_peak_db(samples) <= LOUDNESS["ebu_r128"][1] + 0.1
    assert abs(dominant_hz(samples, rate) - DUB_HZ) < 2
    assert abs(dominant_hz(*decode(output, 1)) - ORIGINAL_HZ) < 2
    with av.open(str(output)) as container:
        [sub] = container.streams.subtitles
        assert sub.metadata.get("language") == DUB_LANG
    assert_cues_are_the_transcript(extract_subtitles(output))
