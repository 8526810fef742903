"""Issue 5, hostile media: a corpus made by the tests, sent to a real ``altdub serve`` over HTTP.

Each file is refused at import with a 422 naming the field and the reason, or is accepted and then
either exports a valid file or ends ERROR with an ``exception_reason`` of the spec's vocabulary.
After every case the server still answers: a crash (even a native one in FFmpeg's libraries)
would show here, not hide inside the test process.
"""

from __future__ import annotations

import json
import random
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.probe import probe
from altdub.media.synth import make_tone, make_video
from tests.e2e.conftest import Server, ServerFactory, auth, request_export
from tests.media import lies
from tests.reliability.conftest import DURATION_TOLERANCE, REASONS, count_rows, files_under, wait_task

pytestmark = pytest.mark.e2e

SECONDS = 4.0
CLAIMED_SECONDS = 3 * 3600  # what the lying headers claim
CUE_LINES = 10_000


@dataclass(frozen=True)
class Corpus:
    video: Path  # 4 s H.264 + AAC, moov at the end (FFmpeg's default)
    dub: Path  # 4 s WAV
    truncated_mp4: Path  # the video cut in half: its moov atom is gone
    truncated_faststart_mp4: Path  # moov first, then cut in half: the header promises 4 s, half the data is there
    random_mp4: Path  # random bytes named .mp4
    empty_wav: Path  # zero bytes
    silent_video: Path  # H.264 only, no audio stream
    wav_claiming_hours: Path  # RIFF/data sizes claim 3 h, 4 s of samples follow
    flac_claiming_hours: Path  # STREAMINFO claims 3 h of samples, 4 s of frames follow
    mp3_claiming_hours: Path  # its Info (Xing) header claims 3 h of frames, 4 s of frames follow
    wav_named_mp4: Path  # a real WAV whose name says .mp4
    mp4_named_wav: Path  # a real MP4 (video and audio) whose name says .wav
    png_named_wav: Path  # an image (a video stream, no audio) whose name says .wav
    text_named_mp3: Path  # text whose name says .mp3
    short_dub: Path  # 0.5 s: much shorter than the 4 s source
    srt_overlapping: Path  # 2,500 cues (10,000 lines), cue 2,001 overlaps cue 2,000
    json_overlapping: Path  # 10,000 lines of JSON segments, every one overlapping the last
    srt_clean: Path  # 2,500 cues, 10,000 lines, none overlapping: the control


def _lying_wav(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    assert data[12:16] == b"fmt "
    fmt = data[20:36]
    pcm = data[data.index(b"data") + 8 :]
    byte_rate = struct.unpack("<HHIIHH", fmt)[3]
    claimed = byte_rate * CLAIMED_SECONDS
    assert claimed < 2**32 - 64 and len(pcm) == byte_rate * SECONDS
    header = b"RIFF" + struct.pack("<I", 36 + claimed) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    target.write_bytes(header + b"data" + struct.pack("<I", claimed) + pcm)
    return target


def _lying_flac(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    # STREAMINFO body starts at 8: 20-bit rate, 3-bit channels, 5-bit depth, 36-bit total samples.
    field = int.from_bytes(data[18:26], "big")
    rate = field >> 44
    field = (field & ~((1 << 36) - 1)) | (rate * CLAIMED_SECONDS)
    data[18:26] = field.to_bytes(8, "big")
    target.write_bytes(bytes(data))
    return target


def _lying_mp3(source: Path, target: Path) -> Path:
    data = bytearray(source.read_bytes())
    tag = max(data.find(b"Info", 0, 200), data.find(b"Xing", 0, 200))  # in the first frame, as LAME writes it
    assert tag > 0, "no Info/Xing header"
    flags = struct.unpack(">I", data[tag + 4 : tag + 8])[0]
    assert flags & 1, "no frame count in the Info header"
    data[tag + 8 : tag + 12] = struct.pack(">I", CLAIMED_SECONDS * 48000 // 1152)  # MPEG-1 layer III frames
    target.write_bytes(bytes(data))
    return target


def _srt(cues: list[tuple[int, int]]) -> str:
    def stamp(ms: int) -> str:
        return f"{ms // 3_600_000:02}:{ms // 60_000 % 60:02}:{ms // 1000 % 60:02},{ms % 1000:03}"

    return "".join(f"{n}\n{stamp(a)} --> {stamp(b)}\nline {n}\n\n" for n, (a, b) in enumerate(cues, start=1))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    d = tmp_path_factory.mktemp("hostile")
    video = make_video(d / "video.mp4", SECONDS)
    faststart = d / "faststart.mp4"
    run_ffmpeg(["-i", file_arg(video), "-c", "copy", "-movflags", "+faststart", file_arg(faststart)])
    dub = make_tone(d / "dub.wav", SECONDS, tone_hz=550)
    flac = make_tone(d / "dub.flac", SECONDS, tone_hz=550, codec="flac")

    truncated = d / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    truncated_fast = d / "truncated-faststart.mp4"
    truncated_fast.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    random_mp4 = d / "random.mp4"
    random_mp4.write_bytes(random.Random(5).randbytes(256 * 1024))
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    silent = d / "silent.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={SECONDS}", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", file_arg(silent)])  # fmt: skip
    png = d / "frame.png"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x120", "-frames:v", "1", file_arg(png)])
    png_named_wav = d / "picture.wav"
    png_named_wav.write_bytes(png.read_bytes())
    text = d / "notes.mp3"
    text.write_text("ID3 is not enough: this is text\n" * 200)
    wav_named_mp4 = d / "really-a-wav.mp4"
    wav_named_mp4.write_bytes(dub.read_bytes())
    mp4_named_wav = d / "really-an-mp4.wav"
    mp4_named_wav.write_bytes(video.read_bytes())

    # 2,500 cues of 4 lines each, 1 ms apart, inside the 4 s media; cue 2,001 starts before cue 2,000 ends.
    cues = [(n, n + 1) for n in range(2500)]
    clean = d / "clean.srt"
    clean.write_text(_srt(cues))
    cues[1999] = (1999, 2001)
    overlapping = d / "overlapping.srt"
    overlapping.write_text(_srt(cues))
    segments = [{"start": n * 0.0003, "end": n * 0.0003 + 0.001, "text": f"segment {n}"} for n in range(CUE_LINES)]
    json_overlapping = d / "overlapping.json"
    json_overlapping.write_text("[\n" + ",\n".join(json.dumps(s) for s in segments) + "\n]\n")
    for transcript in (clean, overlapping, json_overlapping):
        assert len(transcript.read_text().splitlines()) >= CUE_LINES

    return Corpus(
        video=video,
        dub=dub,
        truncated_mp4=truncated,
        truncated_faststart_mp4=truncated_fast,
        random_mp4=random_mp4,
        empty_wav=empty,
        silent_video=silent,
        wav_claiming_hours=_lying_wav(dub, d / "claims-hours.wav"),
        flac_claiming_hours=_lying_flac(flac, d / "claims-hours.flac"),
        mp3_claiming_hours=_lying_mp3(make_tone(d / "dub.mp3", SECONDS, codec="libmp3lame"), d / "claims-hours.mp3"),
        wav_named_mp4=wav_named_mp4,
        mp4_named_wav=mp4_named_wav,
        png_named_wav=png_named_wav,
        text_named_mp3=text,
        short_dub=make_tone(d / "short.wav", 0.5),
        srt_overlapping=overlapping,
        json_overlapping=json_overlapping,
        srt_clean=clean,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    factory = ServerFactory()
    started = factory(tmp_path_factory.mktemp("hostile-server"), env={"ALTDUB_TASK_TIME_LIMIT": "60"})
    assert started.api_key
    yield started
    factory.stop_all()


@pytest.fixture
def still_serving(server: Server) -> Iterator[None]:
    """After the case: the process lives, answers /healthz, and serves an authenticated read."""
    yield
    assert server.process.poll() is None, f"the server died:\n{server.text[-3000:]}"
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{server.base_url}/runs", headers=auth(server.api_key), timeout=10).status_code == 200


def post_run(server: Server, parts: dict[str, Path], **fields: str) -> httpx.Response:
    files = {name: (path.name, path.read_bytes()) for name, path in parts.items()}
    data = {"source_language": "en-us", **fields}
    return httpx.post(f"{server.base_url}/runs", headers=auth(server.api_key), data=data, files=files, timeout=60)


def assert_refused(response: httpx.Response, field: str, reason: str) -> None:
    """A 422 in FastAPI's shape, naming the field and the reason."""
    assert response.status_code == 422, f"{response.status_code}: {response.text[:500]}"
    detail = response.json()["detail"]
    assert isinstance(detail, list) and len(detail) == 1, detail
    assert detail[0]["loc"] == ["body", field], detail
    assert reason in detail[0]["msg"], detail
    assert detail[0]["type"]


def run_names(server: Server) -> set[str]:
    listing = httpx.get(f"{server.base_url}/runs?page_size=200", headers=auth(server.api_key), timeout=10).json()
    return {item["name"] for item in listing["items"]}


def export(server: Server, run_id: int, output_format: str) -> dict[str, Any]:
    response = request_export(server.base_url, server.api_key, run_id, output_format, timeout=30)
    assert response.status_code == 200, response.text
    if "output_url" in response.json():
        return {"status": "SUCCESS", **response.json()}
    return wait_task(server.base_url, server.api_key, response.json()["task_id"], timeout=90)


def assert_delivered_or_refused(server: Server, run_id: int, output_format: str, duration: float, tmp: Path) -> None:
    """The export ends ERROR with a reason of the vocabulary, or SUCCESS with a whole, valid file:
    every stream of it lasts the run (a picture that stops half-way is a broken file)."""
    final = export(server, run_id, output_format)
    if final["status"] == "ERROR":
        assert final["exception_reason"] in REASONS, final
        assert final["message"], final
        assert "output_url" not in final
        return
    assert final["status"] == "SUCCESS", final
    out = tmp / f"out.{output_format}"
    response = httpx.get(final["output_url"], timeout=60)
    assert response.status_code == 200
    out.write_bytes(response.content)
    info = probe(out)
    assert abs(info.duration - duration) <= DURATION_TOLERANCE, info
    for kind, end in stream_ends(out).items():
        assert abs(end - duration) <= 0.1, (
            f"{output_format} export SUCCESS, but its {kind} stream ends at {end:.2f} s "
            f"of the run's {duration:.2f} s: a broken file was served"
        )


def stream_ends(path: Path) -> dict[str, float]:
    """Where the packets of each audio and video stream end, in seconds (read from the packets themselves,
    not from a header, which Matroska may not carry and a damaged file may not tell truthfully)."""
    ends: dict[str, float] = {}
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type in ("audio", "video")]
        for packet in container.demux(streams):
            if packet.pts is None:
                continue
            stream = packet.stream
            end = float((packet.pts + (packet.duration or 0)) * stream.time_base)
            label = f"{stream.type} #{stream.index}"
            ends[label] = max(ends.get(label, 0.0), end)
    return ends


# --- refused at import -----------------------------------------------------------------------------------

# (case id, files builder, refused field, reason fragment)
REFUSED: list[tuple[str, Callable[[Corpus], dict[str, Path]], str, str]] = [
    ("truncated-mp4", lambda c: {"source": c.truncated_mp4, "dub_es-es": c.dub}, "source", "not a media file"),
    ("random-bytes-mp4", lambda c: {"source": c.random_mp4, "dub_es-es": c.dub}, "source", "not a media file"),
    ("zero-length", lambda c: {"source": c.video, "dub_es-es": c.dub, "dub_fr-fr": c.empty_wav}, "dub_fr-fr", "empty"),
    ("video-without-audio", lambda c: {"source": c.video, "dub_es-es": c.silent_video}, "dub_es-es", "no audio"),
    ("png-named-wav", lambda c: {"source": c.video, "dub_es-es": c.png_named_wav}, "dub_es-es", "no audio"),
    ("text-named-mp3", lambda c: {"source": c.text_named_mp3, "dub_es-es": c.dub}, "source", "not a media file"),
    ("dub-much-shorter", lambda c: {"source": c.video, "dub_es-es": c.short_dub}, "dub_es-es", "differs"),
    # against a real 4 s source, a dub whose header claims 3 h is refused for the lie itself
    ("flac-claiming-hours-vs-source", lambda c: {"source": c.video, "dub_es-es": c.flac_claiming_hours},
     "dub_es-es", "header claims"),
]  # fmt: skip


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize(("build", "field", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_at_import(server: Server, corpus: Corpus, build, field: str, reason: str) -> None:
    name = f"refused-{field}-{time.monotonic_ns()}"
    response = post_run(server, build(corpus), name=name)
    assert_refused(response, field, reason)
    assert name not in run_names(server), "a refused import left a run"


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize(
    ("transcript", "reason"),
    [("srt_overlapping", "cue 2001: overlaps cue 2000"), ("json_overlapping", "cue 2: overlaps cue 1")],
    ids=["srt-10000-lines", "json-10000-lines"],
)
def test_overlapping_10000_line_transcript_is_refused(server: Server, corpus: Corpus, transcript, reason) -> None:
    started = time.monotonic()
    response = post_run(server, {"dub_es-es": corpus.dub, "transcript_es-es": getattr(corpus, transcript)})
    assert time.monotonic() - started < 15, "validating 10,000 lines took too long"
    assert_refused(response, "transcript_es-es", reason)


@pytest.mark.usefixtures("still_serving")
def test_clean_10000_line_transcript_is_accepted_and_served(server: Server, corpus: Corpus) -> None:
    """The control for the two above: the same size without overlaps imports and reads back whole."""
    response = post_run(server, {"dub_es-es": corpus.dub, "transcript_es-es": corpus.srt_clean})
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    srt = httpx.get(
        f"{server.base_url}/transcript/{run_id}/es-es?format_type=srt", headers=auth(server.api_key), timeout=30
    )
    assert srt.status_code == 200
    assert srt.json()["transcript"].count(" --> ") == 2500
    result = httpx.get(f"{server.base_url}/dub-result/{run_id}", headers=auth(server.api_key), timeout=30)
    assert result.status_code == 200 and len(result.json()["es-es"]["transcript"]) == 2500


# --- accepted at import: the export is whole, or ends ERROR ---------------------------------------------


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("container", ["wav", "flac", "mp3"])
def test_header_claiming_hours(server: Server, corpus: Corpus, tmp_path: Path, container: str) -> None:
    """A dub alone (no source) whose header claims 3 h but which holds 4 s: refused, or taken for the 4 s
    it holds. A run that believes the header would deliver three hours of padding built from 4 s."""
    liar = getattr(corpus, f"{container}_claiming_hours")
    response = post_run(server, {"dub_es-es": liar})
    if response.status_code == 422:
        assert_refused(response, "dub_es-es", "")
        return
    assert response.status_code == 201, response.text
    run = response.json()
    assert abs(run["duration"] - SECONDS) <= DURATION_TOLERANCE, (
        f"the run believes the {container} header: {run['duration']:.0f} s for a file holding {SECONDS:g} s"
    )
    assert_delivered_or_refused(server, run["run_id"], "flac", run["duration"], tmp_path)


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize(
    ("case", "output_format"),
    [("wav-named-mp4", "mp3"), ("mp4-named-wav", "mp4")],
)
def test_extension_that_lies_about_real_media(
    server: Server, corpus: Corpus, tmp_path: Path, case: str, output_format: str
) -> None:
    """Media is known by its content, not its name: both import and export a valid file."""
    if case == "wav-named-mp4":
        parts = {"source": corpus.video, "dub_es-es": corpus.wav_named_mp4}
    else:
        parts = {"source": corpus.mp4_named_wav, "dub_es-es": corpus.dub}
    response = post_run(server, parts)
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["has_video"] is True
    assert abs(run["duration"] - SECONDS) <= DURATION_TOLERANCE
    final = export(server, run["run_id"], output_format)
    assert final["status"] == "SUCCESS", final
    out = tmp_path / f"out.{output_format}"
    out.write_bytes(httpx.get(final["output_url"], timeout=60).content)
    info = probe(out)
    assert abs(info.duration - SECONDS) <= DURATION_TOLERANCE
    assert info.audio and (output_format != "mp4" or info.video)
    ends = stream_ends(out)  # the control of the truncated-video test below: whole streams end on time
    assert ends and all(abs(end - SECONDS) <= 0.1 for end in ends.values()), ends


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("output_format", ["mp4", "mkv"])
def test_truncated_mp4_with_its_header_first(server: Server, corpus: Corpus, tmp_path: Path, output_format) -> None:
    """Moov first, then cut in half: the header probes as a whole 4 s video, half of its frames are gone.

    Refused at import, or the video export ends ERROR, or its picture lasts the run: a SUCCESS whose
    video stops half-way is a broken file delivered.
    """
    response = post_run(server, {"source": corpus.truncated_faststart_mp4, "dub_es-es": corpus.dub})
    if response.status_code == 422:
        assert_refused(response, "source", "")
        return
    assert response.status_code == 201, response.text
    assert_delivered_or_refused(server, response.json()["run_id"], output_format, SECONDS, tmp_path)


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "deleted"])
def test_stored_input_damaged_after_import_ends_error(
    server: Server, corpus: Corpus, tmp_path: Path, damage: str
) -> None:
    """The dub's stored file is damaged behind the service's back: the export ends ERROR with a reason of
    the vocabulary and a message (no 5xx, no SUCCESS with a broken file), and the next request still works."""
    response = post_run(server, {"source": corpus.video, "dub_es-es": corpus.dub}, name=f"damaged-{damage}")
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]
    stored = [p for p in files_under(server.data_dir / "files") if p.name.startswith("dub_")]
    (dub,) = [p for p in stored if f"/{_run_prefix(server, run_id)}/" in str(p)]
    if damage == "random-bytes":
        dub.write_bytes(random.Random(7).randbytes(dub.stat().st_size))
    elif damage == "truncated":
        dub.write_bytes(dub.read_bytes()[:1000])
    else:
        dub.unlink()
    final = export(server, run_id, "mp3")
    print(f"damaged stored dub ({damage}): {final['status']} {final.get('exception_reason')}: {final.get('message')}")
    assert final["status"] == "ERROR", final
    assert final["exception_reason"] in REASONS, final
    assert final["message"], final


def _run_prefix(server: Server, run_id: int) -> str:
    """The storage folder of a run (its files are stored under w<workspace>/runs/<hex>/)."""
    with closing(sqlite3.connect(server.data_dir / "altdub.db")) as db:
        (prefix,) = db.execute("SELECT storage_prefix FROM runs WHERE id = ?", (run_id,)).fetchone()
    return prefix.rstrip("/").rsplit("/", 1)[1]


# --- issue 11: media that lies about its length or its codec, or goes past a limit ----------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lies")


@pytest.fixture(scope="module")
def unknown(made: Path) -> dict[str, Path]:
    return lies.unknown_codecs(made)


def _stored(server: Server) -> list[Path]:
    return files_under(server.data_dir / "files")


def assert_refused_leaving_nothing(server: Server, parts: dict[str, Path], field: str, reason: str) -> None:
    """A 422 naming the field and the reason; no run, no stored file, no staged upload left behind."""
    stored_before, runs_before = _stored(server), count_rows(server.data_dir, "runs")
    name = f"lie-{field}-{time.monotonic_ns()}"
    response = post_run(server, parts, name=name)
    assert_refused(response, field, reason)
    assert name not in run_names(server), "a refused import left a run"
    assert count_rows(server.data_dir, "runs") == runs_before
    assert _stored(server) == stored_before, "a refused import left a stored file"
    assert not files_under(server.data_dir / "tmp" / str(server.process.pid)), "a refused upload stayed staged"


JUMP = "its timestamps jump by 3600.0 s"
UNKNOWN = "codec FFmpeg does not know"
Parts = Callable[[Corpus, Path, dict[str, Path]], dict[str, Path]]  # (corpus, made files, unknown codecs) -> parts

# case id -> (the files, the refused field, the reason)
LIES: dict[str, tuple[Parts, str, str]] = {
    "ts-hour-jump": (lambda c, d, u: {"dub_es-es": lies.hour_jump(d, "ts")}, "dub_es-es", JUMP),
    "mka-hour-jump": (lambda c, d, u: {"dub_es-es": lies.hour_jump(d, "mka")}, "dub_es-es", f"{JUMP} at 2.0 s"),
    "m4a-hour-jump": (lambda c, d, u: {"dub_es-es": lies.hour_jump(d, "m4a")}, "dub_es-es", f"{JUMP} at 2.0 s"),
    "m4a-hour-jump-as-source": (
        lambda c, d, u: {"source": lies.hour_jump(d, "m4a"), "dub_es-es": c.dub},
        "source",
        JUMP,
    ),
    "mka-gaps-under-the-jump-tolerance": (
        lambda c, d, u: {"dub_es-es": lies.stepped(d)},
        "dub_es-es",
        "it declares 16.0 s but its audio holds 4.0 s",
    ),
    "mkv-audio-an-hour-late": (
        lambda c, d, u: {"source": lies.audio_an_hour_late(d), "dub_es-es": c.dub},
        "source",
        "it declares 3604.0 s but its audio holds",
    ),
    "mp4-audio-an-hour-late-edit-list": (
        lambda c, d, u: {"source": lies.audio_an_hour_late(d, "mp4"), "dub_es-es": c.dub},
        "source",
        "it declares 3604.0 s but its audio holds 4.0 s",
    ),
    "mka-unknown-pcm-codecid": (
        lambda c, d, u: {"dub_es-es": u["mka-pcm-codecid"]},
        "dub_es-es",
        f"not a media file FFmpeg can read (its audio stream #0 has a {UNKNOWN})",
    ),
    "mka-unknown-aac-codecid": (lambda c, d, u: {"dub_es-es": u["mka-aac-codecid"]}, "dub_es-es", UNKNOWN),
    "mov-qqqq-sample-entry": (lambda c, d, u: {"source": u["mov-qqqq"], "dub_es-es": c.dub}, "source", UNKNOWN),
    "mp4-qqqq-sample-entry": (lambda c, d, u: {"dub_es-es": u["mp4-qqqq"]}, "dub_es-es", UNKNOWN),
    "mkv-unknown-video-codecid": (
        lambda c, d, u: {"source": u["mkv-video-codecid"], "dub_es-es": c.dub},
        "source",
        f"its video stream #0 has a {UNKNOWN}",
    ),
    "8192x8192-picture": (
        lambda c, d, u: {"source": lies.huge_picture(d), "dub_es-es": c.dub},
        "source",
        "8192x8192 (67,108,864 pixels a frame), more than the 16,777,216 allowed",
    ),
    "1000-fps": (
        lambda c, d, u: {"source": lies.fast_picture(d), "dub_es-es": c.dub},
        "source",
        "runs at 1,000 frames a second, more than the 300 allowed",
    ),
    "255-channels": (
        lambda c, d, u: {"dub_es-es": lies.wide_wav(d / "255ch.wav", channels=255, seconds=0.02)},
        "dub_es-es",
        "has 255 channels, more than the 24 allowed",
    ),
    "768-khz": (
        lambda c, d, u: {"dub_es-es": lies.wide_wav(d / "768k.wav", rate=768_000)},
        "dub_es-es",
        "sampled at 768,000 Hz, more than the 384,000 Hz allowed",
    ),
}


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("case", list(LIES))
def test_lying_or_oversized_media_is_refused(
    server: Server, corpus: Corpus, made: Path, unknown: dict[str, Path], case: str
) -> None:
    build, field, reason = LIES[case]
    parts = build(corpus, made, unknown)
    assert all(path.stat().st_size < 1_000_000 for path in parts.values()), "the attack is a small upload"
    assert_refused_leaving_nothing(server, parts, field, reason)


def test_media_limits_are_settings(tmp_path: Path, corpus: Corpus) -> None:
    """ALTDUB_MAX_VIDEO_PIXELS one below the 320x240 video, ALTDUB_MAX_AUDIO_PACKETS below the 4 s WAV's 48:
    refused, both figures named; at the picture's size, imported."""
    factory = ServerFactory()
    try:
        strict = factory(
            tmp_path / "strict", env={"ALTDUB_MAX_VIDEO_PIXELS": str(320 * 240 - 1), "ALTDUB_MAX_AUDIO_PACKETS": "40"}
        )
        parts = {"source": corpus.video, "dub_es-es": corpus.dub}
        reason = "is 320x240 (76,800 pixels a frame), more than the 76,799 allowed"
        assert_refused_leaving_nothing(strict, parts, "source", reason)
        reason = "it holds more than the 40 audio packets allowed"
        assert_refused_leaving_nothing(strict, {"dub_es-es": corpus.dub}, "dub_es-es", reason)
        exact = factory(tmp_path / "exact", env={"ALTDUB_MAX_VIDEO_PIXELS": str(320 * 240)})
        assert post_run(exact, parts).status_code == 201
    finally:
        factory.stop_all()


HONEST: dict[str, Callable[[Corpus, Path], dict[str, Path]]] = {
    "vfr-still-frame-source": lambda c, d: {"source": lies.still_frame_video(d), "dub_es-es": c.dub},
    "audio-half-a-second-late-source": lambda c, d: {"source": lies.late_audio(d), "dub_es-es": c.dub},
    "aac-priming-m4a-dub": lambda c, d: {"source": c.video, "dub_es-es": lies.tone(d / "priming.m4a", "aac")},
    "mp3-encoder-delay-dub": lambda c, d: {"source": c.video, "dub_es-es": lies.tone(d / "delay.mp3", "libmp3lame")},
    "mpegts-aac-dub": lambda c, d: {"source": c.video, "dub_es-es": lies.tone(d / "tone.ts", "aac")},
    "opus-mka-dub": lambda c, d: {"source": c.video, "dub_es-es": lies.tone(d / "tone.mka", "libopus")},
}


@pytest.mark.usefixtures("still_serving")
@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_media_still_imports(server: Server, corpus: Corpus, made: Path, tmp_path: Path, case: str) -> None:
    """The controls: codec delays, a late stream, a still picture, MPEG-TS's 1.4 s start are not lies; the run
    lasts 4 s and its mp3 export is a whole 4 s file, not an hour."""
    response = post_run(server, HONEST[case](corpus, made))
    assert response.status_code == 201, response.text
    run = response.json()
    assert abs(run["duration"] - SECONDS) <= DURATION_TOLERANCE, run
    if case == "mpegts-aac-dub":
        assert_delivered_or_refused(server, run["run_id"], "mp3", run["duration"], tmp_path)
        assert (tmp_path / "out.mp3").stat().st_size < 200_000
