"""Masters (DELIVERIES.md §2) through HTTP: three dubs, each a click at its own time, in mkv, mp4, mov and mxf.

Every fact is read back from the downloaded file by PyAV and by readers independent of FFmpeg: MediaInfo,
``mkvmerge -J`` for Matroska, and for MP4/MOV a ``tkhd`` reader written here (not altdub/media/isobmff.py).
Without MediaInfo or mkvmerge those checks skip saying so, and fail under CI=true (.ci/run installs them).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import langcodes
import numpy as np
import pyloudnorm
import pytest
from fastapi.testclient import TestClient

from altdub import languages
from altdub.api.app import create_app
from altdub.config import Settings
from altdub.db.session import session_scope
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, build_plan
from altdub.media.options import resolve_options
from altdub.media.probe import probe
from altdub.service.keys import create_key
from tests.conftest import SOURCE_SECONDS, Media, auth, make_run, required_tool, wait_for_task

LANGUAGES = ["es-es", "fr-fr", "de-de"]  # the track order asked for: not the run's import order (de, es, fr)
DEFAULT = "fr-fr"
CLICKS = {"es-es": 1.0, "fr-fr": 1.5, "de-de": 2.0}  # seconds from the picture's first frame
TITLES = {"es-es": "Spanish (Spain)", "fr-fr": "French (France)", "de-de": "German (Germany)"}
TRANSCRIBED = ("es-es", "de-de")  # not the default language: its subtitles are no reason to pick any
# ISO 639-2 as each container holds it: Matroska and MP4 the bibliographic codes; MOV FFmpeg's Mac table,
# which has French only as "fra" (formats.py's _MOV_LANGUAGE_CODES). MediaInfo shows ISO 639-1.
TAGS = {
    "mkv": {"es-es": "spa", "fr-fr": "fre", "de-de": "ger"},
    "mp4": {"es-es": "spa", "fr-fr": "fre", "de-de": "ger"},
    "mov": {"es-es": "spa", "fr-fr": "fra", "de-de": "ger"},
}
MEDIAINFO_TAGS = {"es-es": "es", "fr-fr": "fr", "de-de": "de"}
TAGGED_FORMATS = ("mkv", "mp4", "mov")  # MXF tags nothing: its track sheet, in the task's message, says it all
MASTER_FORMATS = (*TAGGED_FORMATS, "mxf")
ORIGINAL_TITLE = "English (United States) (original)"
SRT = "1\n00:00:00,500 --> 00:00:01,800\nUno.\n\n2\n00:00:02,000 --> 00:00:03,500\nDos.\n"
CLICK_LEVEL = 0.5  # below full scale: resampling and AAC ring above the impulse, and a clipped peak is no peak
# The twelve languages of the catalogue FFmpeg's MOV table has no code for (formats.py, _MOV_LANGUAGE_CODES' note).
MOV_UNTAGGED = {"afr", "bos", "fil", "gle", "glg", "hrv", "nob", "pan", "srp", "sun", "swe", "zul"}


# --- media --------------------------------------------------------------------------------------------------


def make_click(path: Path, at: float, rate: int, channels: int, codec: str, seconds: float = SOURCE_SECONDS) -> Path:
    """A dub of silence, ``seconds`` long, with one sample at ``CLICK_LEVEL`` at ``at`` seconds (in every channel)."""
    samples = np.zeros((round(seconds * rate), channels), dtype=np.int16)
    samples[round(at * rate), :] = round(CLICK_LEVEL * 32767)
    raw = path.with_suffix(".raw")
    raw.write_bytes(samples.tobytes())
    run_ffmpeg(["-f", "s16le", "-ar", str(rate), "-ac", str(channels), "-i", file_arg(raw),
                "-c:a", codec, file_arg(path)])  # fmt: skip
    return path


def make_sine(path: Path, hz: int, volume: float) -> Path:
    """A stereo 48 kHz sine at ``volume`` (linear), for the loudness master."""
    run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={hz}:sample_rate=48000:duration={SOURCE_SECONDS}",
                "-af", f"volume={volume}", "-ac", "2", "-c:a", "pcm_s16le", file_arg(path)])  # fmt: skip
    return path


# --- readers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """An audio or subtitle stream as FFmpeg (PyAV) reads it."""

    index: int
    codec: str
    language: str | None
    title: str | None  # Matroska's title, MP4/MOV's udta name
    default: bool
    rate: int | None = None
    channels: int | None = None


def streams(path: Path, kind: str = "audio") -> list[Stream]:
    """The file's streams of ``kind`` (``audio`` or ``subtitle``) in order."""
    with av.open(str(path)) as container:
        found = [s for s in container.streams if s.type == kind]
        return [
            Stream(
                s.index,
                s.codec_context.name,
                s.metadata.get("language"),
                s.metadata.get("title") or s.metadata.get("name"),
                bool(s.disposition & av.stream.Disposition.default),
                *((s.codec_context.sample_rate, s.codec_context.channels) if kind == "audio" else ()),
            )
            for s in found
        ]


def mediainfo(path: Path) -> list[dict[str, Any]]:
    """MediaInfo's tracks (General first)."""
    executable = required_tool("mediainfo", "mediainfo")
    out = subprocess.run([executable, "--Output=JSON", str(path)], capture_output=True, check=True).stdout
    return json.loads(out)["media"]["track"]


def mediainfo_kind(path: Path, kind: str) -> list[dict[str, Any]]:
    return [t for t in mediainfo(path) if t["@type"] == kind]


def mkvmerge(path: Path) -> dict[str, Any]:
    executable = required_tool("mkvmerge", "mkvtoolnix")
    return json.loads(subprocess.run([executable, "-J", str(path)], capture_output=True, check=True).stdout)


@dataclass(frozen=True)
class Tkhd:
    """What a ``trak`` says about its track: handler type, and its ``tkhd`` enabled flag and alternate group."""

    handler: bytes
    enabled: bool
    alternate_group: int


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of the boxes in ``data[start:end]`` (ISO/IEC 14496-12 §4.2)."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        assert size >= header, f"bad {kind!r} box at {start}"
        yield kind, start + header, start + size
        start += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int]:
    found = [(s, e) for k, s, e in _children(data, start, end) if k == kind]
    assert len(found) == 1, f"{len(found)} {kind!r} boxes"
    return found[0]


def tkhd_tracks(path: Path) -> list[Tkhd]:
    """Every ``trak`` of the file in order, read from the boxes (the whole file: the test outputs are small)."""
    data = path.read_bytes()
    moov = _child(data, 0, len(data), b"moov")
    tracks = []
    for kind, start, end in _children(data, *moov):
        if kind != b"trak":
            continue
        tkhd, _ = _child(data, start, end, b"tkhd")
        version, flags = data[tkhd], int.from_bytes(data[tkhd + 1 : tkhd + 4], "big")
        # after version/flags: creation and modification times, track_ID, reserved, duration (v1: 64-bit
        # times and duration), 8 reserved bytes, layer (16 bits), then alternate_group (16 bits)
        offset = tkhd + (4 + 8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4 + 4) + 8 + 2
        (alternate_group,) = struct.unpack_from(">h", data, offset)
        hdlr, _ = _child(data, *_child(data, start, end, b"mdia"), b"hdlr")
        handler = data[hdlr + 8 : hdlr + 12]  # version/flags, pre_defined, then handler_type
        tracks.append(Tkhd(handler, bool(flags & 1), alternate_group))
    return tracks


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # (frames, channels), in [-1, 1]
    rate: int
    start: float  # seconds: the first decoded sample's time


def decode_audio(path: Path, index: int) -> Decoded:
    """Every sample of stream ``index`` as the demuxer delivers it (AAC's priming removed by its edit list)."""
    with av.open(str(path)) as container:
        stream = container.streams[index]
        chunks, start = [], None
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.pts * frame.time_base)
            array = frame.to_ndarray()
            array = array.T if frame.format.is_planar else array.reshape(-1, frame.layout.nb_channels)
            scale = 1.0 if frame.format.name.startswith(("flt", "dbl")) else 2.0 ** (8 * frame.format.bytes - 1)
            chunks.append(array.astype(np.float64) / scale)
        assert start is not None, f"stream {index} of {path.name} decodes to nothing"
        return Decoded(np.concatenate(chunks), stream.codec_context.sample_rate, start)


def video_start(path: Path) -> float:
    """The time of the picture's first frame (its stream's start_time)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.start_time is not None
        return float(video.start_time * video.time_base)


# --- the studio: one app, two runs, exports made once --------------------------------------------------------


@dataclass
class Studio:
    client: TestClient
    key: str
    runs: dict[str, int]
    directory: Path
    _answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _done: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)

    def request(self, name: str, run: str, body: dict[str, Any]) -> None:
        """Ask for an export without waiting for it (the conversions overlap)."""
        response = self.client.post(f"/runs/{self.runs[run]}/exports", headers=auth(self.key), json=body)
        assert response.status_code == 200, response.text
        self._answers[name] = response.json()

    def master(self, name: str) -> tuple[Path, dict[str, Any]]:
        """The downloaded export ``name`` of ``EXPORTS`` and its final task status."""
        if name not in self._done:
            answer = self._answers[name]
            status = wait_for_task(self.client, self.key, answer["task_id"]) if "task_id" in answer else answer
            assert status.get("status", "SUCCESS") == "SUCCESS", status
            download = self.client.get(status["output_url"])
            assert download.status_code == 200, download.text
            extension = re.search(r"\.(\w+)\?", status["output_url"])
            assert extension is not None
            path = self.directory / f"{name}.{extension.group(1)}"
            path.write_bytes(download.content)
            self._done[name] = (path, status)
        return self._done[name]

    def file(self, name: str) -> Path:
        return self.master(name)[0]


def _three_languages(output_format: str, **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"output_format": output_format, "languages": LANGUAGES, "default_language": DEFAULT}
    if output_format != "mxf":
        body["subtitles"] = "soft"
    return body | options


# Every export of the module by name: (run, request body). All are asked for at once, before the first test.
EXPORTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{f: ("clicks", _three_languages(f)) for f in MASTER_FORMATS},
    **{f"{f}+original": ("clicks", _three_languages(f, include_original_audio=True)) for f in MASTER_FORMATS},
    "loudness": ("tones", {"output_format": "mkv", "languages": ["es-es", "fr-fr"], "loudness": "ebu_r128"}),
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, media: Media) -> Iterator[Studio]:
    d = tmp_path_factory.mktemp("masters-media")
    # A stereo WAV at 48 kHz (the default language's: every track takes its rate and channels), a stereo FLAC
    # at 44.1 kHz (resampled) and a mono 24-bit WAV (made stereo); imported in another order than asked for.
    dubs = {
        "dub_de-de": make_click(d / "de.wav", CLICKS["de-de"], 48000, 1, "pcm_s24le"),
        "dub_es-es": make_click(d / "es.flac", CLICKS["es-es"], 44100, 2, "flac"),
        "dub_fr-fr": make_click(d / "fr.wav", CLICKS["fr-fr"], 48000, 2, "pcm_s16le"),
    }
    tones = {"dub_es-es": make_sine(d / "loud.wav", 550, 0.9), "dub_fr-fr": make_sine(d / "quiet.wav", 660, 0.05)}
    settings = Settings(
        data_dir=d / "data", create_demo=False, workers=2, task_time_limit=180, max_pending_tasks=10_000
    )
    with TestClient(create_app(settings)) as client:
        with session_scope(client.app.state.context.sessions) as session:  # type: ignore[attr-defined]
            key, _ = create_key(session, "masters")
        transcripts = {f"transcript_{language}": SRT for language in TRANSCRIBED}
        runs = {
            "clicks": make_run(client, key, {"source": media.video, **dubs}, **transcripts),
            "tones": make_run(client, key, {"source": media.video, **tones}),
        }
        studio = Studio(client, key, runs, tmp_path_factory.mktemp("masters"))
        for name, (run, body) in EXPORTS.items():
            studio.request(name, run, body)
        yield studio


# --- track order, tags, titles, one default ----------------------------------------------------------------


@pytest.mark.parametrize("output_format", TAGGED_FORMATS)
def test_audio_tracks_follow_the_order_asked_tagged_and_titled(studio: Studio, output_format: str) -> None:
    audio = streams(studio.file(output_format))
    assert [s.language for s in audio] == [TAGS[output_format][lang] for lang in LANGUAGES]
    assert [s.title for s in audio] == [TITLES[lang] for lang in LANGUAGES]


@pytest.mark.parametrize("output_format", TAGGED_FORMATS)
def test_mediainfo_reads_the_same_order_tags_and_titles(studio: Studio, output_format: str) -> None:
    tracks = mediainfo_kind(studio.file(output_format), "Audio")
    assert [t.get("Language") for t in tracks] == [MEDIAINFO_TAGS[lang] for lang in LANGUAGES]
    assert [t.get("Title") for t in tracks] == [TITLES[lang] for lang in LANGUAGES]


@pytest.mark.parametrize("output_format", TAGGED_FORMATS)
def test_the_default_language_is_the_one_default_track(studio: Studio, output_format: str) -> None:
    path = studio.file(output_format)
    expected = [lang == DEFAULT for lang in LANGUAGES]
    assert [s.default for s in streams(path)] == expected
    assert [t.get("Default") for t in mediainfo_kind(path, "Audio")] == ["Yes" if d else "No" for d in expected]


def test_mkvmerge_reads_order_tags_titles_and_the_one_default(studio: Studio) -> None:
    tracks = [t for t in mkvmerge(studio.file("mkv"))["tracks"] if t["type"] == "audio"]
    properties = [t["properties"] for t in tracks]
    assert [p["language"] for p in properties] == [TAGS["mkv"][lang] for lang in LANGUAGES]
    assert [p["track_name"] for p in properties] == [TITLES[lang] for lang in LANGUAGES]
    assert [p["default_track"] for p in properties] == [lang == DEFAULT for lang in LANGUAGES]


@pytest.mark.parametrize("output_format", ["mp4", "mov"])
def test_mp4_mov_audio_is_one_alternate_group_with_only_the_default_enabled(studio: Studio, output_format: str) -> None:
    path = studio.file(output_format)
    audio = [t for t in tkhd_tracks(path) if t.handler == b"soun"]
    assert [t.enabled for t in audio] == [lang == DEFAULT for lang in LANGUAGES]
    groups = {t.alternate_group for t in audio}
    assert len(groups) == 1 and groups != {0}, groups
    # MediaInfo reads the same group and takes the enabled track for the default one.
    assert {t.get("AlternateGroup") for t in mediainfo_kind(path, "Audio")} == {str(groups.pop())}


@pytest.mark.parametrize("output_format", ["mp4", "mov"])
def test_mp4_mov_text_tracks_one_per_transcript_none_enabled(studio: Studio, output_format: str) -> None:
    path = studio.file(output_format)
    text = [t for t in tkhd_tracks(path) if t.handler in (b"text", b"sbtl", b"subt")]
    assert len(text) == len(TRANSCRIBED)
    assert not any(t.enabled for t in text), text
    assert [t.get("Default") for t in mediainfo_kind(path, "Text")] == ["No"] * len(TRANSCRIBED)


@pytest.mark.parametrize("output_format", TAGGED_FORMATS)
def test_subtitles_one_per_transcript_tagged_titled_none_default(studio: Studio, output_format: str) -> None:
    path = studio.file(output_format)
    subtitles = streams(path, "subtitle")
    assert [s.language for s in subtitles] == [TAGS[output_format][t] for t in TRANSCRIBED]
    assert [s.title for s in subtitles] == [TITLES[t] for t in TRANSCRIBED]
    assert not any(s.default for s in subtitles)
    text = mediainfo_kind(path, "Text")
    assert [t.get("Language") for t in text] == [MEDIAINFO_TAGS[t] for t in TRANSCRIBED]
    assert [t.get("Default") for t in text] == ["No"] * len(TRANSCRIBED)


def test_mkvmerge_reads_no_default_subtitles(studio: Studio) -> None:
    tracks = [t for t in mkvmerge(studio.file("mkv"))["tracks"] if t["type"] == "subtitles"]
    assert [t["properties"]["language"] for t in tracks] == [TAGS["mkv"][t] for t in TRANSCRIBED]
    assert [t["properties"]["default_track"] for t in tracks] == [False] * len(TRANSCRIBED)


# --- MXF: a mono PCM track per channel, and the track sheet -------------------------------------------------


def test_mxf_holds_a_mono_pcm_track_per_channel_per_language(studio: Studio) -> None:
    path = studio.file("mxf")
    assert [(s.codec, s.rate, s.channels) for s in streams(path)] == [("pcm_s24le", 48000, 1)] * 6
    tracks = mediainfo_kind(path, "Audio")
    assert [(t["Format"], t["Channels"], t["SamplingRate"], t["BitDepth"]) for t in tracks] == [
        ("PCM", "1", "48000", "24")
    ] * 6


def test_mxf_track_sheet_names_each_tracks_language_and_channel(studio: Studio) -> None:
    _, status = studio.master("mxf")
    sheet = [
        f"A{2 * n + c + 1} {TITLES[lang]} {side}" for n, lang in enumerate(LANGUAGES) for c, side in enumerate("LR")
    ]
    assert status["message"] == "track sheet: " + ", ".join(sheet)


# --- sync and duration --------------------------------------------------------------------------------------


def _clicks_per_track(output_format: str) -> list[str]:
    """The language of each audio stream in order (MXF: one stream per channel of each)."""
    return [lang for lang in LANGUAGES for _ in range(2 if output_format == "mxf" else 1)]


@pytest.mark.parametrize("output_format", MASTER_FORMATS)
def test_every_track_is_in_sync_with_the_picture_to_the_sample(studio: Studio, output_format: str) -> None:
    """Each channel of each track has its click on the very sample where the picture says it is.

    Exact for every codec, AAC (mp4, mov) included: its encoder delay (1024 priming samples) is written in
    the edit list, which FFmpeg's demuxer applies, and AAC-LC's low-pass rings symmetrically around an
    impulse, leaving the peak on its sample (the next-largest sample is at about 15 % of it). A priming
    delay left in would put the click 1024 samples late; a resampler's or a filter's delay, a few.
    """
    path = studio.file(output_format)
    picture = video_start(path)
    audio_tracks = streams(path)
    assert len(audio_tracks) == len(_clicks_per_track(output_format))
    for stream, language in zip(audio_tracks, _clicks_per_track(output_format), strict=True):
        audio = decode_audio(path, stream.index)
        expected = round((picture + CLICKS[language] - audio.start) * audio.rate)
        found = [int(np.argmax(np.abs(audio.samples[:, c]))) for c in range(audio.samples.shape[1])]
        assert found == [expected] * audio.samples.shape[1], (stream.index, language, found, expected)


@pytest.mark.parametrize("output_format", MASTER_FORMATS)
def test_duration_is_the_sources(studio: Studio, output_format: str) -> None:
    path = studio.file(output_format)
    source = studio.client.get(f"/runs/{studio.runs['clicks']}", headers=auth(studio.key)).json()["duration"]
    with av.open(str(path)) as container:
        assert container.duration is not None
        assert abs(container.duration / 1e6 - source) <= 0.001
    for stream in streams(path):
        if stream.codec != "aac":  # lossless: every sample, no more (AAC decodes whole frames)
            assert len(decode_audio(path, stream.index).samples) == round(source * (stream.rate or 0))
    assert abs(float(mediainfo_kind(path, "General")[0]["Duration"]) - source) <= 0.001


# --- the original audio ------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", TAGGED_FORMATS)
def test_the_original_comes_last_not_default_and_titled(studio: Studio, output_format: str) -> None:
    path = studio.file(f"{output_format}+original")
    audio = streams(path)
    assert [s.title for s in audio] == [*(TITLES[lang] for lang in LANGUAGES), ORIGINAL_TITLE]
    assert audio[-1].language == "eng"
    assert [s.default for s in audio] == [
        *(lang == DEFAULT for lang in LANGUAGES),
        False,
    ]
    tracks = mediainfo_kind(path, "Audio")
    assert (tracks[-1].get("Title"), tracks[-1].get("Language"), tracks[-1].get("Default")) == (
        ORIGINAL_TITLE,
        "en",
        "No",
    )


def test_the_original_is_last_in_the_mxf_track_sheet(studio: Studio) -> None:
    path, status = studio.master("mxf+original")
    assert len(streams(path)) == 8
    assert status["message"].endswith(f", A7 {ORIGINAL_TITLE} L, A8 {ORIGINAL_TITLE} R"), status["message"]


# --- loudness on every track --------------------------------------------------------------------------------

EBU_R128 = -23.0


def test_a_loudness_target_normalises_every_track_of_a_master(studio: Studio) -> None:
    """Two tones 25 dB apart both come out at -23 LUFS, measured here with pyloudnorm and in the message."""
    path, status = studio.master("loudness")
    measured = []
    for stream in streams(path):
        audio = decode_audio(path, stream.index)
        measured.append(pyloudnorm.Meter(audio.rate).integrated_loudness(audio.samples))
    assert len(measured) == 2
    assert all(abs(m - EBU_R128) <= 1.0 for m in measured), measured
    reported = re.findall(r"(es-es|fr-fr) integrated (-?[\d.]+) LUFS", status["message"])
    assert [language for language, _ in reported] == ["es-es", "fr-fr"], status["message"]
    assert all(abs(float(value) - EBU_R128) <= 1.0 for _, value in reported), status["message"]


# --- MOV: every language FFmpeg's table can tag is tagged ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 0.2 s picture with sound, and a 0.2 s dub: one MOV of them costs FFmpeg a few milliseconds."""
    d = tmp_path_factory.mktemp("mov-languages")
    video, dub = d / "source.mp4", d / "dub.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.2",
                "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=0.2",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", file_arg(video)])  # fmt: skip
    run_ffmpeg(["-f", "lavfi", "-i", "sine=sample_rate=48000:duration=0.2", "-c:a", "pcm_s16le", file_arg(dub)])
    return video, dub


def test_mov_tags_every_language_but_the_twelve_ffmpeg_has_no_code_for(
    tiny_source: tuple[Path, Path], tmp_path: Path
) -> None:
    """A real MOV per distinct ISO 639-2 code of the 148 languages, made by build_plan and read back.

    Fails if FFmpeg's Mac language table gains or loses one of our languages: then formats.py's note
    (and the MOV fallbacks) must change with it.
    """
    video_path, dub_path = tiny_source
    video, dub = probe(video_path), probe(dub_path)
    options = resolve_options("mov", {}, dub.audio[0])
    untagged, mistagged = set(), {}
    for code in sorted({language.iso639_2 for language in languages.all_languages()}):
        track = AudioTrack(dub_path, dub.audio[0], dub.duration, code, f"title {code}")
        inputs = ExportInputs((track,), video.duration, "t", video_path=video_path, video=video.video[0])
        output = tmp_path / f"{code}.mov"
        run_ffmpeg(build_plan("mov", inputs, options, output).args)
        with av.open(str(output)) as container:
            found = container.streams.audio[0].metadata.get("language")
        if found in (None, "und"):
            untagged.add(code)
        elif found not in (code, langcodes.Language.get(code).to_alpha3()):  # either form of ISO 639-2
            mistagged[code] = found
    assert mistagged == {}
    assert untagged == MOV_UNTAGGED
