"""``tracks_zip`` (DELIVERIES.md §5) through HTTP: asked for, made, downloaded, opened and read back.

Each WAV is read by PyAV, by a ``bext`` reader written here from the bytes (EBU Tech 3285), and by
MediaInfo, independent of FFmpeg (skipped without it, a failure under CI=true). The dubs, stems and
background are silence with one click each at its own time: every stem must have its click on the
sample where the programme puts it, and the stems of 48 kHz PCM inputs must hold their very samples.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.session import session_scope
from altdub.media.catalogue import CATALOGUE
from altdub.service.keys import create_key
from tests.conftest import Media, auth, fetch_finished, make_run, required_tool
from tests.media.test_masters import decode_audio, make_click
from tests.media.test_timecode import make_timecoded_video

RATE = 48_000
# Where each input has its click, in seconds from the programme's start.
CLICKS = {"es-es mix": 1.0, "es-es voice": 1.25, "fr-fr mix": 1.5, "ME": 0.75}
RUN_NAME = "Episode 4 \u2013 Café"  # an en dash: the Description holds it in ASCII, "Episode 4 Cafe"
VTT = "WEBVTT\n\n00:00:00.500 --> 00:00:01.200\n<v Ana>Hola.\n"


@dataclass(frozen=True)
class Expected:
    run: str
    languages: list[str]
    files: list[tuple[str | None, str, int]]  # (language, role, channels) in track order
    timecode: str
    time_reference: int  # samples since midnight, worked out here by hand
    start_timecode: str | None = None  # the option asked for


EXPECTED = {
    "full": Expected(
        "full", ["es-es", "fr-fr"],
        [("es-es", "mix", 2), ("es-es", "voice", 1), ("fr-fr", "mix", 1), (None, "me", 2), ("en-us", "original", 2)],
        "10:00:00:00", 36_000 * RATE,
    ),
    "full-option": Expected(
        "full", ["fr-fr", "es-es"],
        [("fr-fr", "mix", 1), ("es-es", "mix", 2), ("es-es", "voice", 1), (None, "me", 2), ("en-us", "original", 2)],
        "01:00:00:00", 3_600 * RATE, "01:00:00:00",
    ),
    # 29.97 drop-frame: an hour of timecode is 107892 frames of 1001/30000 s, 3599.9964 s
    "ntsc": Expected("ntsc", ["es-es"], [("es-es", "mix", 2), ("en-us", "original", 2)], "01:00:00;00", 172_799_827),
    "plain": Expected("plain", ["es-es"], [("es-es", "mix", 2), ("en-us", "original", 2)], "00:00:00:00", 0),
    "plain-option": Expected(
        "plain", ["es-es"], [("es-es", "mix", 2), ("en-us", "original", 2)], "01:00:00:00", 3_600 * RATE,
        "01:00:00:00",
    ),
    # no picture: EBU frames of 1/25 s, 1920 samples each
    "podcast": Expected(
        "podcast", ["es-es"], [("es-es", "mix", 2), ("en-us", "original", 2)], "00:59:59:24",
        (3_599 * 25 + 24) * 1920, "00:59:59:24",
    ),
    "bare": Expected("bare", ["es-es", "fr-fr"], [("es-es", "mix", 2), ("fr-fr", "mix", 1)], "00:00:00:00", 0),
}  # fmt: skip


def _file_name(run_id: int, language: str | None, role: str) -> str:
    return f"run-{run_id}_ME.wav" if role == "me" else f"run-{run_id}_{language}_{role}.wav"


# --- the studio: one app, five runs, every zip asked for at once ---------------------------------------------


@dataclass
class Studio:
    client: TestClient
    key: str
    runs: dict[str, int]
    inputs: dict[str, dict[str, Path]]  # per run, its files by import field
    directory: Path
    _answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _done: dict[str, tuple[Path, Any]] = field(default_factory=dict)

    def request(self, name: str) -> None:
        expected = EXPECTED[name]
        body: dict[str, Any] = {"output_format": "tracks_zip", "languages": expected.languages}
        if expected.start_timecode:
            body["start_timecode"] = expected.start_timecode
        response = self.client.post(f"/runs/{self.runs[expected.run]}/exports", headers=auth(self.key), json=body)
        assert response.status_code == 200, response.text
        self._answers[name] = response.json()

    def download(self, name: str) -> tuple[Path, Any]:
        """The zip of export ``name``, downloaded, and the download's response."""
        if name not in self._done:
            response = fetch_finished(self.client, self.key, self._answers[name])
            path = self.directory / f"{name}.zip"
            path.write_bytes(response.content)
            self._done[name] = (path, response)
        return self._done[name]

    def unpacked(self, name: str) -> Path:
        """The zip's files, extracted to a folder of their own."""
        folder = self.directory / name
        if not folder.exists():
            with zipfile.ZipFile(self.download(name)[0]) as archive:
                archive.extractall(folder)
        return folder

    def programme(self, run: str) -> int:
        """The programme's length in samples: the run's duration as the API tells it."""
        run_json = self.client.get(f"/runs/{self.runs[run]}", headers=auth(self.key)).json()
        return round(run_json["duration"] * RATE)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Studio]:
    d = tmp_path_factory.mktemp("tracks-zip-media")
    # A 44.1 kHz stereo FLAC mix (resampled), mono 16- and 24-bit WAVs, a 4.06 s French mix (trimmed to the
    # programme) and a 3.95 s background (padded); a bare run has no source, its programme is its first dub's.
    full = {
        "source": make_timecoded_video(d / "ten.mov", "25", "10:00:00:00"),
        "dub_es-es": make_click(d / "es.flac", CLICKS["es-es mix"], 44100, 2, "flac"),
        "voice_es-es": make_click(d / "es-voice.wav", CLICKS["es-es voice"], RATE, 1, "pcm_s16le"),
        "dub_fr-fr": make_click(d / "fr.wav", CLICKS["fr-fr mix"], RATE, 1, "pcm_s24le", seconds=4.06),
        "background": make_click(d / "me.wav", CLICKS["ME"], RATE, 2, "pcm_s16le", seconds=3.95),
    }
    click = make_click(d / "click.wav", CLICKS["es-es mix"], RATE, 2, "pcm_s16le")
    mono_click = make_click(d / "fr-bare.wav", CLICKS["fr-fr mix"], RATE, 1, "pcm_s16le")
    inputs = {
        "full": full,
        "ntsc": {"source": make_timecoded_video(d / "ntsc.mp4", "30000/1001", "01:00:00;00"), "dub_es-es": click},
        "plain": {"source": media.video, "dub_es-es": click},
        "podcast": {"source": media.audio_source, "dub_es-es": media.dub_wav},
        "bare": {"dub_es-es": click, "dub_fr-fr": mono_click},
    }  # fmt: skip
    settings = Settings(data_dir=d / "data", create_demo=False, workers=2, task_time_limit=180)
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.context.sessions) as session:  # type: ignore[attr-defined]
            key, _ = create_key(session, "tracks-zip")
        runs = {
            name: make_run(client, key, files, name=RUN_NAME, **({"transcript_es-es": VTT} if name == "full" else {}))
            for name, files in inputs.items()
        }
        studio = Studio(client, key, runs, inputs, tmp_path_factory.mktemp("tracks-zips"))
        for name in EXPECTED:
            studio.request(name)
        yield studio


# --- readers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bext:
    description: str
    originator: str
    origination_date: str
    origination_time: str
    time_reference: int
    version: int


def riff_chunks(data: bytes) -> dict[bytes, bytes]:
    """The chunks of a RIFF (or RF64) WAVE file by id, walked from the bytes."""
    assert data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE", data[:12]
    chunks, offset = {}, 12
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        chunks[chunk_id] = data[offset + 8 : offset + 8 + size]
        offset += 8 + size + (size & 1)  # chunks are word-aligned
    return chunks


def read_bext(path: Path) -> Bext:
    """EBU Tech 3285's BroadcastAudioExtension: fixed ASCII fields, then TimeReference as two little-endian halves."""
    chunk = riff_chunks(path.read_bytes())[b"bext"]

    def text(start: int, size: int) -> str:
        return chunk[start : start + size].split(b"\0", 1)[0].decode("ascii")

    low, high, version = struct.unpack_from("<IIH", chunk, 338)
    return Bext(text(0, 256), text(256, 32), text(320, 10), text(330, 8), (high << 32) | low, version)


def mediainfo_audio(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """MediaInfo's General and Audio tracks of ``path`` (a reader independent of FFmpeg)."""
    done = subprocess.run(
        [required_tool("mediainfo", "mediainfo"), "--Output=JSON", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    tracks = json.loads(done.stdout)["media"]["track"]
    (general,) = [t for t in tracks if t["@type"] == "General"]
    (audio,) = [t for t in tracks if t["@type"] == "Audio"]
    return general, audio


def wav_stream(path: Path) -> tuple[str, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.codec_context.name, stream.codec_context.sample_rate, stream.codec_context.channels


# --- the zip ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_zip_holds_the_manifest_and_a_stored_wav_per_stem_named_as_spec_5(studio: Studio, name: str) -> None:
    expected = EXPECTED[name]
    run_id = studio.runs[expected.run]
    path, response = studio.download(name)
    assert response.headers["content-type"] == "application/zip"
    label = "+".join(expected.languages)
    disposition = unquote(response.headers["content-disposition"])  # "+" is sent in RFC 5987's form
    assert re.fullmatch(rf"attachment; filename(\*=utf-8''|=\")run-{run_id}_{re.escape(label)}\.zip\"?", disposition)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        wavs = [_file_name(run_id, language, role) for language, role, _ in expected.files]
        assert archive.namelist() == ["manifest.json", *wavs]
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_manifest_describes_every_file(studio: Studio, name: str) -> None:
    expected = EXPECTED[name]
    run_id, samples = studio.runs[expected.run], studio.programme(expected.run)
    timing = {
        "duration": samples / RATE,
        "duration_samples": samples,
        "timecode": expected.timecode,
        "time_reference": expected.time_reference,
        "sample_rate": RATE,
    }
    names = {"es-es": "Spanish (Spain)", "fr-fr": "French (France)", "en-us": "English (United States)"}
    manifest = json.loads((studio.unpacked(name) / "manifest.json").read_text())
    assert manifest == {
        "name": f"run-{run_id}",
        **timing,
        "frame_rate": "30000/1001" if name == "ntsc" else "25",
        "drop_frame": name == "ntsc",
        "bits_per_sample": 24,
        "files": [
            {
                "file": _file_name(run_id, language, role),
                "language": language,
                "language_name": names.get(language or ""),
                "role": role,
                "name": "M&E" if role == "me" else f"{names[language or '']} {role}",
                "channels": channels,
                **timing,
            }
            for language, role, channels in expected.files
        ],
    }


# --- every WAV: its form and length, its bext chunk ------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_wav_is_48k_24_bit_pcm_as_long_as_the_programme_to_the_sample(studio: Studio, name: str) -> None:
    expected = EXPECTED[name]
    run_id, samples = studio.runs[expected.run], studio.programme(expected.run)
    if expected.run != "bare":
        assert abs(samples / RATE - 4.0) < 0.1  # the source's length, not a dub's
    for language, role, channels in expected.files:
        wav = studio.unpacked(name) / _file_name(run_id, language, role)
        assert wav_stream(wav) == ("pcm_s24le", RATE, channels), wav.name
        assert decode_audio(wav, 0).samples.shape == (samples, channels), wav.name


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_bext_chunk_places_the_start_timecode_and_describes_the_stem(studio: Studio, name: str) -> None:
    expected = EXPECTED[name]
    run_id = studio.runs[expected.run]
    created = studio.client.get(f"/runs/{run_id}", headers=auth(studio.key)).json()["created_at"]
    names = {"es-es": "Spanish (Spain)", "fr-fr": "French (France)", "en-us": "English (United States)"}
    for language, role, _ in expected.files:
        bext = read_bext(studio.unpacked(name) / _file_name(run_id, language, role))
        stem_name = "M&E" if role == "me" else f"{names[language or '']} {role}"
        assert bext.description == f"run-{run_id} {stem_name}: Episode 4 Cafe"
        assert (bext.originator, bext.version) == ("altdub", 1)
        assert f"{bext.origination_date}T{bext.origination_time}" == created[:19]  # the run's import, UTC
        assert bext.time_reference == expected.time_reference, (name, role)


@pytest.mark.parametrize("name", ["full", "ntsc", "podcast", "bare"])
def test_mediainfo_reads_the_same_rate_depth_length_and_time_reference(studio: Studio, name: str) -> None:
    expected = EXPECTED[name]
    run_id, samples = studio.runs[expected.run], studio.programme(expected.run)
    for language, role, channels in expected.files:
        general, audio = mediainfo_audio(studio.unpacked(name) / _file_name(run_id, language, role))
        assert (audio["SamplingRate"], audio["BitDepth"], audio["Channels"]) == ("48000", "24", str(channels))
        assert int(audio["SamplingCount"]) == samples
        assert audio.get("Delay_Source") == "Container (bext)", audio
        assert float(audio["Delay"]) == pytest.approx(expected.time_reference / RATE, abs=1e-6)
        assert general["Producer"] == "altdub"
        assert general["Description"].startswith(f"run-{run_id} "), general


# --- the samples ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["full", "full-option", "plain", "bare"])
def test_every_click_is_on_its_sample(studio: Studio, name: str) -> None:
    """A 44.1 kHz FLAC resampled, 16- and 24-bit WAVs, mono and stereo: each click where the programme has it."""
    expected = EXPECTED[name]
    run_id = studio.runs[expected.run]
    for language, role, channels in expected.files:
        if role == "original":
            continue
        click = CLICKS["ME" if role == "me" else f"{language} {role}"]
        samples = decode_audio(studio.unpacked(name) / _file_name(run_id, language, role), 0).samples
        found = [int(np.argmax(np.abs(samples[:, c]))) for c in range(channels)]
        assert found == [round(click * RATE)] * channels, (name, language, role, found)


def test_48k_pcm_stems_hold_their_inputs_samples_padded_or_trimmed(studio: Studio) -> None:
    """The voice (mono 16-bit), the 4.06 s French mix (trimmed) and the 3.95 s M&E (padded with silence)."""
    run_id, samples = studio.runs["full"], studio.programme("full")
    inputs = studio.inputs["full"]
    for field_name, file_name in (
        ("voice_es-es", f"run-{run_id}_es-es_voice.wav"),
        ("dub_fr-fr", f"run-{run_id}_fr-fr_mix.wav"),
        ("background", f"run-{run_id}_ME.wav"),
    ):
        given = decode_audio(inputs[field_name], 0).samples
        stem = decode_audio(studio.unpacked("full") / file_name, 0).samples
        kept = min(len(given), samples)
        assert np.array_equal(stem[:kept], given[:kept]), file_name
        assert not stem[kept:].any(), f"{file_name}: the padding is not silence"
    assert len(decode_audio(inputs["dub_fr-fr"], 0).samples) > samples  # the French mix was longer: trimmed
    assert len(decode_audio(inputs["background"], 0).samples) < samples  # the background was shorter: padded


@pytest.mark.parametrize("name", ["full", "ntsc"])
def test_the_original_is_the_sources_audio(studio: Studio, name: str) -> None:
    """The source's AAC as FFmpeg's decoder gives it, to 24-bit precision, for as long as the source's audio lasts.

    The NTSC picture lasts 120 frames, 4.004 s: its audio's 4 s are followed by silence to the programme's end.
    """
    run_id = studio.runs[EXPECTED[name].run]
    source = studio.inputs[EXPECTED[name].run]["source"]
    with av.open(str(source)) as container:
        audio = container.streams.audio[0]
        index, declared = audio.index, round(float(audio.duration * audio.time_base) * RATE)
    given = decode_audio(source, index)
    assert given.start == pytest.approx(0, abs=1e-6)
    stem = decode_audio(studio.unpacked(name) / f"run-{run_id}_en-us_original.wav", 0).samples
    kept = min(declared, len(stem))
    assert kept == RATE * 4  # the 4 s the source's audio declares
    assert np.max(np.abs(stem[:kept] - given.samples[:kept])) <= 2.0**-23
    assert not stem[kept:].any(), "after the source's audio ends, the guide is silence"


# --- requests refused --------------------------------------------------------------------------------------


def _ask(client: TestClient, key: str, run_id: int, **body: Any) -> Any:
    return client.post(f"/runs/{run_id}/exports", headers=auth(key), json={"output_format": "tracks_zip", **body})


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("stem", "voice", "a hand-off carries every stem"),
        ("loudness", "ebu_r128", "a hand-off carries every stem"),
        ("sample_rate", 48000, "a hand-off carries every stem"),
        ("start_timecode", "00:00:00:29", "frame 29 does not exist at 25 frames a second"),  # no picture: 25 fps
        ("start_timecode", "01:00:00;00", "drop-frame"),
    ],
)
def test_options_that_do_not_apply_or_do_not_fit_are_a_422_naming_them(
    client: TestClient, api_key: str, media: Media, option: str, value: Any, reason: str
) -> None:
    run_id = make_run(client, api_key, {"source": media.audio_source, "dub_es-es": media.dub_wav})
    response = _ask(client, api_key, run_id, **{option: value})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", option] and reason in error["msg"], error


def test_a_format_needing_transcripts_names_the_languages_without_one(
    client: TestClient, api_key: str, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``needs_transcript`` (clips_zip sets it): checked before any task exists, whichever path asked."""
    monkeypatch.setitem(CATALOGUE, "tracks_zip", replace(CATALOGUE["tracks_zip"], needs_transcript=True))
    files = {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac, "dub_de-de": media.dub_s24}
    run_id = make_run(client, api_key, files, **{"transcript_es-es": VTT})
    response = _ask(client, api_key, run_id, languages=["es-es", "fr-fr", "de-de"])
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "languages"], error
    assert re.search(r"tracks_zip .* none for fr-fr, de-de$", error["msg"]), error
    camb = client.post(f"/dub-alt-format/{run_id}/fr-fr", headers=auth(api_key), json={"output_format": "tracks_zip"})
    assert camb.status_code == 422 and camb.json()["detail"][0]["loc"] == ["path", "language"], camb.text
    assert _ask(client, api_key, run_id, languages=["es-es"]).status_code == 200
    (task,) = client.get(f"/runs/{run_id}/exports", headers=auth(api_key)).json()  # the refused made no task
    assert task["languages"] == ["es-es"]
