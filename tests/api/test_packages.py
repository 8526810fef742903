"""Streaming packages through HTTP (DELIVERIES.md §4): what a player on another origin gets from ``output_url``.

Every file is found the way a player finds it: the master playlist or the MPD fetched from ``output_url``, every
other file by resolving its relative URL against the file that names it. The manifests are read with maintained
parsers (the ``m3u8`` package, xml.etree for the MPD); the segments are probed with PyAV after joining each
rendition's init segment to its media segments. The signed prefix is attacked file by file; the same package is
published to an S3 server (moto) and fetched through the API and the bucket's redirects; packages that fail leave
nothing behind. The plan and the manifests' making are tests/media/test_packaging.py's.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import av
import httpx
import langcodes
import m3u8
import pytest
from fastapi.testclient import TestClient

from altdub.api.app import create_app
from altdub.config import Settings
from altdub.media.ffmpeg import file_arg, run_ffmpeg
from altdub.media.probe import probe
from altdub.media.synth import make_tone
from altdub.service.context import Context
from tests.api.conftest import files_root, new_key, raw_get, staging_root, stored_files
from tests.conftest import Media, auth, make_run, wait_for_task
from tests.media.test_formats import video_packets
from tests.reliability.test_disk_full import small_disk  # noqa: F401  (fixture: a tmpfs data volume)
from tests.scaleout.conftest import S3Server, aws_env, s3  # noqa: F401  (fixtures: a moto server and its env)

SECONDS = 20.0  # several 6 s segments: 6, 6, 6, 2
LANGUAGES = ["es-es", "fr-fr", "de-de"]
DEFAULT = "fr-fr"  # the second
TRANSCRIBED = ["es-es", "fr-fr"]
RESOLVED_RATE = 44100  # the default language's dub is a 44.1 kHz FLAC: every rendition takes its rate
SEGMENT = 6.0
SRT = "1\n00:00:00,500 --> 00:00:02,000\nHola.\n\n2\n00:00:12,000 --> 00:00:14,000\nAdiós.\n"
TYPES = {
    "m3u8": "application/vnd.apple.mpegurl",
    "mpd": "application/dash+xml",
    "m4s": "video/iso.segment",
    "vtt": "text/vtt; charset=utf-8",
}
MPD = "{urn:mpeg:dash:schema:mpd:2011}"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"
CORS = "access-control-allow-origin"


# --- the media ------------------------------------------------------------------------------------------------


def make_source(path: Path, seconds: float, *, keyframe_every: float, codec: str = "libx264") -> Path:
    """A 25 fps test pattern with a stereo tone, a keyframe exactly every ``keyframe_every`` seconds."""
    gop = str(round(25 * keyframe_every))
    codec_args = (
        ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
        if codec == "libx264"
        else ["-c:v", codec, "-g", gop, "-deadline", "realtime", "-cpu-used", "8"]
    )
    run_ffmpeg([
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-ac", "2", *codec_args, "-c:a", "aac" if path.suffix == ".mp4" else "libopus", "-shortest", file_arg(path),
    ])  # fmt: skip
    return path


@dataclass(frozen=True)
class Sources:
    trio: dict[str, Path]  # the source and three dubs: 48 kHz stereo WAV, 44.1 kHz stereo FLAC, 48 kHz mono WAV
    vp9: dict[str, Path]
    sparse: dict[str, Path]  # keyframes every 5 s


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    d = tmp_path_factory.mktemp("package-media")
    return Sources(
        trio={
            "source": make_source(d / "source.mp4", SECONDS, keyframe_every=2),
            "dub_es-es": make_tone(d / "es.wav", SECONDS, tone_hz=550),
            "dub_fr-fr": make_tone(d / "fr.flac", SECONDS, tone_hz=660, sample_rate=44100, codec="flac"),
            "dub_de-de": make_tone(d / "de.wav", SECONDS, tone_hz=770, channels=1),
        },
        vp9={
            "source": make_source(d / "source-vp9.mkv", 14.0, keyframe_every=10, codec="libvpx-vp9"),
            "dub_es-es": make_tone(d / "es-14.wav", 14.0),
        },
        sparse={
            "source": make_source(d / "source-sparse.mp4", SECONDS, keyframe_every=5),
            "dub_es-es": make_tone(d / "es-sparse.wav", SECONDS),
        },
    )


def _transcripts() -> dict[str, str]:
    return {f"transcript_{language}": SRT for language in TRANSCRIBED}


def _package_body(output_format: str, **options: Any) -> dict[str, Any]:
    return {
        "output_format": output_format,
        "languages": LANGUAGES,
        "default_language": DEFAULT,
        "subtitles": "soft",
    } | options


# --- fetching as a player does ----------------------------------------------------------------------------------


def fetch(client: TestClient, url: str) -> httpx.Response:
    """GET ``url`` through the app: 200, the file's type, readable from any origin.

    With S3 storage a segment is a redirect (readable from any origin too) to the bucket's presigned URL,
    fetched from the S3 server over HTTP.
    """
    response = client.get(url, follow_redirects=False)
    extension = urlsplit(url).path.rpartition(".")[2]
    assert response.headers[CORS] == "*", url
    if response.status_code == 302:
        assert extension == "m4s", f"only segments come from the bucket, not {url}"
        response = httpx.get(response.headers["location"], timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    assert response.headers["content-type"] == TYPES[extension], url
    return response


@dataclass
class Rendition:
    """One rendition as a manifest names it: its init segment and media segments, by absolute URL."""

    init: str
    segments: list[str]
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (start, duration) per segment (DASH)


@dataclass
class Walk:
    """Every file a manifest reaches, and its bytes (fetched once)."""

    bodies: dict[str, bytes] = field(default_factory=dict)
    renditions: dict[str, Rendition] = field(default_factory=dict)  # by playlist URL (HLS) or Representation id

    def names(self) -> set[str]:
        return {urlsplit(url).path.rpartition("/")[2] for url in self.bodies}


def _get(client: TestClient, walk: Walk, url: str) -> bytes:
    if url not in walk.bodies:
        walk.bodies[url] = fetch(client, url).content
    return walk.bodies[url]


def walk_hls(client: TestClient, url: str) -> tuple[m3u8.M3U8, Walk]:
    """The master playlist, and every playlist and segment it reaches by relative URL."""
    walk = Walk()
    master = m3u8.loads(_get(client, walk, url).decode())
    uris = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    for uri in uris:
        playlist_url = urljoin(url, uri)
        playlist = m3u8.loads(_get(client, walk, playlist_url).decode())
        maps = [urljoin(playlist_url, m.uri) for m in playlist.segment_map or []]
        segments = [urljoin(playlist_url, s.uri) for s in playlist.segments]
        for file_url in maps + segments:
            _get(client, walk, file_url)
        walk.renditions[playlist_url] = Rendition(maps[0] if maps else "", segments)
    return master, walk


def _seconds(iso: str) -> float:
    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?", iso)
    assert found is not None, iso
    hours, minutes, seconds = (float(g or 0) for g in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def _expand(template: str, representation: str, number: int | None = None) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) == "RepresentationID":
            return representation
        assert number is not None
        return f"%{match.group(2) or 'd'}" % number if match.group(2) else str(number)

    return re.sub(r"\$(RepresentationID|Number)(?:%(0\d+d))?\$", value, template)


def walk_dash(client: TestClient, url: str) -> tuple[ET.Element, Walk]:
    """The MPD, and every segment and text file it names, from its SegmentTemplates (timeline or fixed duration)."""
    walk = Walk()
    mpd = ET.fromstring(_get(client, walk, url))
    total = _seconds(mpd.get("mediaPresentationDuration", ""))
    for adaptation in mpd.iter(f"{MPD}AdaptationSet"):
        for representation in adaptation.findall(f"{MPD}Representation"):
            rep_id = representation.get("id", "")
            base = representation.findtext(f"{MPD}BaseURL")
            if base is not None:  # a whole file (WebVTT)
                _get(client, walk, urljoin(url, base))
                continue
            template = representation.find(f"{MPD}SegmentTemplate")
            if template is None:
                template = adaptation.find(f"{MPD}SegmentTemplate")
            assert template is not None, rep_id
            timescale = int(template.get("timescale", "1"))
            start = int(template.get("startNumber", "1"))
            timeline: list[tuple[float, float]] = []
            entries = template.find(f"{MPD}SegmentTimeline")
            if entries is not None:
                t = 0
                for s in entries.findall(f"{MPD}S"):
                    t = int(s.get("t", t))
                    for _ in range(int(s.get("r", "0")) + 1):
                        timeline.append((t / timescale, int(s.get("d", "0")) / timescale))
                        t += int(s.get("d", "0"))
            else:  # every segment lasts @duration
                duration = int(template.get("duration", "0")) / timescale
                timeline = [(n * duration, duration) for n in range(math.ceil(total / duration - 1e-9))]
            init = urljoin(url, _expand(template.get("initialization", ""), rep_id))
            segments = [
                urljoin(url, _expand(template.get("media", ""), rep_id, start + n)) for n in range(len(timeline))
            ]
            for file_url in [init, *segments]:
                _get(client, walk, file_url)
            walk.renditions[rep_id] = Rendition(init, segments, timeline)
    return mpd, walk


# --- probing segments ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    pts: float
    duration: float
    keyframe: bool
    data: bytes


@dataclass(frozen=True)
class Track:
    codec: str
    profile: str | None
    sample_rate: int
    channels: int
    packets: list[Packet]

    @property
    def start(self) -> float:
        return min(p.pts for p in self.packets)

    @property
    def length(self) -> float:
        return max(p.pts + p.duration for p in self.packets) - self.start


def read_track(path: Path) -> Track:
    """The one stream of a joined rendition (init + segments): its codec and its packets, in decode order."""
    with av.open(str(path)) as container:
        (stream,) = container.streams
        base = stream.time_base
        packets = [
            Packet(float(p.pts * base), float(p.duration * base), p.is_keyframe, bytes(p))
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]
        context = stream.codec_context
        audio = stream.type == "audio"
        return Track(
            context.name,
            context.profile,
            context.sample_rate if audio else 0,
            context.channels if audio else 0,
            packets,
        )


def join(walk: Walk, rendition: Rendition, path: Path, segments: list[str] | None = None) -> Path:
    """The init segment followed by ``segments`` (all of the rendition's by default), as one fragmented MP4."""
    path.write_bytes(b"".join(walk.bodies[u] for u in [rendition.init, *(segments or rendition.segments)]))
    return path


def segment_tracks(walk: Walk, rendition: Rendition, directory: Path) -> list[Track]:
    """Each media segment on its own (after the init segment)."""
    return [
        read_track(join(walk, rendition, directory / f"segment-{n}.mp4", [url]))
        for n, url in enumerate(rendition.segments)
    ]


# --- the apps ---------------------------------------------------------------------------------------------------


@dataclass
class Studio:
    client: TestClient
    key: str
    settings: Settings
    runs: dict[str, int]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def context(self) -> Context:
        return self.client.app.state.context  # type: ignore[attr-defined]

    def post(self, run: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(f"/runs/{self.runs[run]}/exports", headers=auth(self.key), json=body)

    def request(self, name: str, run: str, body: dict[str, Any]) -> None:
        response = self.post(run, body)
        assert response.status_code == 200, response.text
        self.answers[name] = response.json()

    def url(self, name: str) -> str:
        """The package's output_url, once its task succeeded."""
        if name not in self.urls:
            answer = self.answers[name]
            status = wait_for_task(self.client, self.key, answer["task_id"]) if "task_id" in answer else answer
            assert status.get("status", "SUCCESS") == "SUCCESS", status
            self.urls[name] = status["output_url"]
        return self.urls[name]


# Every package of the module: (run, body), all asked for before the first test so that they are made together.
PACKAGES = {
    "hls": ("trio", _package_body("hls")),
    "dash": ("trio", _package_body("dash")),
    "vp9": ("vp9", {"output_format": "hls"}),
    "sparse": ("sparse", {"output_format": "dash"}),
}


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, sources: Sources, media: Media) -> Iterator[Studio]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("packages-data"), create_demo=False, workers=2)
    with TestClient(create_app(settings)) as client:
        key = new_key(client, "packages")
        runs = {
            "trio": make_run(client, key, sources.trio, **_transcripts()),
            "vp9": make_run(client, key, sources.vp9),
            "sparse": make_run(client, key, sources.sparse),
            "audio": make_run(client, key, {"source": media.audio_source, "dub_es-es": media.dub_wav}),
        }
        studio = Studio(client, key, settings, runs)
        for name, (run, body) in PACKAGES.items():
            studio.request(name, run, body)
        yield studio


@pytest.fixture(scope="module")
def names(studio: Studio) -> dict[str, str]:
    """Each language's display name, as GET /target-languages gives it."""
    listed = studio.client.get("/target-languages").json()
    return {entry["short_name"]: entry["language"] for entry in listed}


@pytest.fixture(scope="module")
def hls(studio: Studio) -> tuple[m3u8.M3U8, Walk]:
    return walk_hls(studio.client, studio.url("hls"))


@pytest.fixture(scope="module")
def dash(studio: Studio) -> tuple[ET.Element, Walk]:
    return walk_dash(studio.client, studio.url("dash"))


def bcp47(short_name: str) -> str:
    return langcodes.Language.get(short_name).to_tag()


def package_folder(studio: Studio, url: str) -> Path:
    """Where local storage keeps the package ``url`` points into."""
    prefix = "/".join(urlsplit(url).path.split("/")[4:-1])
    return files_root(studio.settings) / prefix


# --- the HLS master playlist ------------------------------------------------------------------------------------


def test_output_url_is_the_master_playlist_under_a_signed_prefix(studio: Studio) -> None:
    path = urlsplit(studio.url("hls")).path
    assert re.fullmatch(r"/packages/\d+/[0-9a-f]{64}/w\d+/exports/\d+/[0-9a-f-]{36}/master\.m3u8", path), path
    assert urlsplit(studio.url("dash")).path.endswith("/manifest.mpd")


def test_every_language_is_an_audio_rendition_with_its_bcp47_tag_and_name(
    hls: tuple[m3u8.M3U8, Walk], names: dict[str, str]
) -> None:
    master, _ = hls
    audio = [m for m in master.media if m.type == "AUDIO"]
    assert [m.language for m in audio] == [bcp47(language) for language in LANGUAGES]
    assert [m.language for m in audio] == ["es-ES", "fr-FR", "de-DE"]
    assert [m.name for m in audio] == [names[language] for language in LANGUAGES]
    assert all(m.autoselect == "YES" for m in audio)
    assert all(m.channels == "2" for m in audio)


def test_exactly_one_default_the_default_language(hls: tuple[m3u8.M3U8, Walk]) -> None:
    master, _ = hls
    defaults = [m.language for m in master.media if m.default == "YES"]
    assert defaults == [bcp47(DEFAULT)]
    assert all(m.default == "NO" for m in master.media if m.language != bcp47(DEFAULT) or m.type != "AUDIO")


def test_group_ids_tie_the_renditions_to_the_variant(hls: tuple[m3u8.M3U8, Walk]) -> None:
    master, _ = hls
    (variant,) = master.playlists
    info = variant.stream_info
    assert {m.group_id for m in master.media if m.type == "AUDIO"} == {info.audio}
    assert {m.group_id for m in master.media if m.type == "SUBTITLES"} == {info.subtitles}
    assert info.audio != info.subtitles
    assert info.bandwidth > 0 and info.resolution == (320, 240)
    assert info.codecs is not None and "avc1." in info.codecs and "mp4a.40.2" in info.codecs


def test_one_subtitles_rendition_per_transcript(hls: tuple[m3u8.M3U8, Walk], names: dict[str, str]) -> None:
    master, walk = hls
    texts = [m for m in master.media if m.type == "SUBTITLES"]
    assert [(m.language, m.name, m.autoselect) for m in texts] == [
        (bcp47(language), names[language], "YES") for language in TRANSCRIBED
    ]
    vtts = [name for name in walk.names() if name.endswith(".vtt")]
    assert len(vtts) == len(TRANSCRIBED)
    for url, body in walk.bodies.items():
        if url.endswith(".vtt"):
            text = body.decode()
            assert text.startswith("WEBVTT") and "Hola." in text and "00:00:12.000 --> 00:00:14.000" in text


# --- the MPD ----------------------------------------------------------------------------------------------------


def test_one_audio_adaptation_set_per_language_with_lang_label_and_role(
    dash: tuple[ET.Element, Walk], names: dict[str, str]
) -> None:
    mpd, _ = dash
    sets = list(mpd.iter(f"{MPD}AdaptationSet"))
    audio = [s for s in sets if s.get("contentType") == "audio"]
    assert [s.get("lang") for s in audio] == [bcp47(language) for language in LANGUAGES]
    assert [s.findtext(f"{MPD}Label") for s in audio] == [names[language] for language in LANGUAGES]
    roles = [[(r.get("schemeIdUri"), r.get("value")) for r in s.findall(f"{MPD}Role")] for s in audio]
    assert roles == [[(ROLE_SCHEME, "main" if lang == DEFAULT else "dub")] for lang in LANGUAGES]
    for adaptation in audio:
        (representation,) = adaptation.findall(f"{MPD}Representation")
        assert representation.get("codecs") == "mp4a.40.2"
        assert representation.get("audioSamplingRate") == str(RESOLVED_RATE)
        channels = representation.find(f"{MPD}AudioChannelConfiguration")
        assert channels is not None and channels.get("value") == "2"
    video = [s for s in sets if s.get("contentType") == "video"]
    assert len(video) == 1 and video[0].get("lang") is None


def test_text_adaptation_sets_for_the_webvtt(dash: tuple[ET.Element, Walk], names: dict[str, str]) -> None:
    mpd, walk = dash
    text = [s for s in mpd.iter(f"{MPD}AdaptationSet") if s.get("contentType") == "text"]
    assert [(s.get("lang"), s.get("mimeType"), s.findtext(f"{MPD}Label")) for s in text] == [
        (bcp47(language), "text/vtt", names[language]) for language in TRANSCRIBED
    ]
    assert len([name for name in walk.names() if name.endswith(".vtt")]) == len(TRANSCRIBED)


def test_the_mpd_lasts_as_long_as_the_source(dash: tuple[ET.Element, Walk], sources: Sources) -> None:
    mpd, _ = dash
    assert mpd.get("type") == "static"
    assert _seconds(mpd.get("mediaPresentationDuration", "")) == pytest.approx(probe(sources.trio["source"]).duration)


# --- every file, served ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hls", "dash"])
def test_every_file_is_reachable_by_relative_url_typed_and_open_to_any_origin(studio: Studio, name: str) -> None:
    url = studio.url(name)
    _, walk = walk_hls(studio.client, url) if name == "hls" else walk_dash(studio.client, url)  # fetch() checks each
    stored = {p.name for p in package_folder(studio, url).iterdir()}
    reached = walk.names()
    assert reached <= stored
    other = {"manifest.mpd"} if name == "hls" else {n for n in stored if n.endswith(".m3u8")}
    assert stored - reached == other  # the other format's manifests, over the same segments
    assert sum(name.endswith(".m4s") for name in reached) == 4 * (1 + len(LANGUAGES)) + 1 + len(LANGUAGES)


def test_hls_and_dash_name_the_same_segments(studio: Studio, hls: tuple[m3u8.M3U8, Walk]) -> None:
    """One set of segments serves both: the HLS package's MPD reaches exactly the files its playlists do."""
    _, from_playlists = hls
    _, from_mpd = walk_dash(studio.client, urljoin(studio.url("hls"), "manifest.mpd"))
    segments = {n for n in from_playlists.names() if n.endswith((".m4s", ".vtt"))}
    assert {n for n in from_mpd.names() if n.endswith((".m4s", ".vtt"))} == segments


def test_head_answers_like_get(studio: Studio, hls: tuple[m3u8.M3U8, Walk]) -> None:
    _, walk = hls
    for url in [studio.url("hls"), *list(walk.bodies)[1:4], walk.renditions[next(iter(walk.renditions))].segments[0]]:
        head = studio.client.head(url)
        assert head.status_code == 200, url
        assert head.content == b""
        assert head.headers["content-length"] == str(len(walk.bodies[url]))
        assert head.headers["content-type"] == TYPES[url.rpartition(".")[2]]
        assert head.headers[CORS] == "*"


# --- the segments -----------------------------------------------------------------------------------------------


def _video_rendition(walk: Walk) -> Rendition:
    return next(r for url, r in walk.renditions.items() if url.endswith("media_0.m3u8"))


def _audio_renditions(walk: Walk) -> list[Rendition]:
    return [r for url, r in sorted(walk.renditions.items()) if re.search(r"media_[1-9]\d*\.m3u8$", url)]


def test_the_video_is_the_sources_packet_for_packet(
    hls: tuple[m3u8.M3U8, Walk], sources: Sources, tmp_path: Path
) -> None:
    _, walk = hls
    joined = join(walk, _video_rendition(walk), tmp_path / "video.mp4")
    track = read_track(joined)
    assert track.codec == "h264"
    expected = video_packets(sources.trio["source"])
    assert len(track.packets) == len(expected)
    assert [p.data for p in track.packets] == expected, "video packets differ from the source's"


def test_every_audio_rendition_is_aac_lc_stereo_at_the_resolved_rate(
    hls: tuple[m3u8.M3U8, Walk], tmp_path: Path
) -> None:
    _, walk = hls
    renditions = _audio_renditions(walk)
    assert len(renditions) == len(LANGUAGES)
    for n, rendition in enumerate(renditions):
        track = read_track(join(walk, rendition, tmp_path / f"audio-{n}.mp4"))
        assert (track.codec, track.profile, track.channels, track.sample_rate) == ("aac", "LC", 2, RESOLVED_RATE)


def test_durations_add_up_to_the_sources(hls: tuple[m3u8.M3U8, Walk], sources: Sources, tmp_path: Path) -> None:
    _, walk = hls
    source = probe(sources.trio["source"]).duration
    for n, rendition in enumerate([_video_rendition(walk), *_audio_renditions(walk)]):
        segments = segment_tracks(walk, rendition, tmp_path)
        assert sum(t.length for t in segments) == pytest.approx(source, abs=0.1), n
        assert read_track(join(walk, rendition, tmp_path / f"whole-{n}.mp4")).length == pytest.approx(source, abs=0.1)


def test_each_video_segment_starts_at_a_keyframe_and_lasts_about_six_seconds(
    hls: tuple[m3u8.M3U8, Walk], tmp_path: Path
) -> None:
    _, walk = hls
    segments = segment_tracks(walk, _video_rendition(walk), tmp_path)
    assert len(segments) == 4
    assert all(t.packets[0].keyframe for t in segments)
    assert [round(t.length, 3) for t in segments] == [6.0, 6.0, 6.0, 2.0]  # the source's keyframes are 2 s apart


def test_audio_segments_last_about_six_seconds(hls: tuple[m3u8.M3U8, Walk], tmp_path: Path) -> None:
    _, walk = hls
    for rendition in _audio_renditions(walk):
        lengths = [t.length for t in segment_tracks(walk, rendition, tmp_path)]
        assert len(lengths) == 4
        assert all(abs(length - SEGMENT) <= 0.1 for length in lengths[:-1]), lengths  # an AAC frame is 23 ms


def test_a_vp9_source_is_encoded_to_h264_with_a_keyframe_at_each_segment_start(studio: Studio, tmp_path: Path) -> None:
    _, walk = walk_hls(studio.client, studio.url("vp9"))
    segments = segment_tracks(walk, _video_rendition(walk), tmp_path)
    assert {t.codec for t in segments} == {"h264"}
    assert [round(t.length, 3) for t in segments] == [6.0, 6.0, 2.0]  # the source's keyframes are 10 s apart
    assert all(t.packets[0].keyframe for t in segments)


def test_the_mpd_timeline_is_the_segments_as_cut(studio: Studio, sources: Sources, tmp_path: Path) -> None:
    """Keyframes 5 s apart: video segments cannot be 6 s each; the MPD must say where each one really starts."""
    _, walk = walk_dash(studio.client, studio.url("sparse"))
    stored = {p.name for p in package_folder(studio, studio.url("sparse")).glob("chunk-*.m4s")}
    assert {n for n in walk.names() if n.startswith("chunk-")} == stored  # every named segment exists, none is left out
    source = probe(sources.sparse["source"]).duration
    for rep_id, rendition in walk.renditions.items():
        tracks = segment_tracks(walk, rendition, tmp_path)
        assert len(tracks) == len(rendition.timeline), rep_id
        slack = 0.04 if rep_id == "0" else 0.025  # a frame at 25 fps; an AAC frame
        for track, (start, duration) in zip(tracks, rendition.timeline, strict=True):
            assert track.start == pytest.approx(start, abs=slack), rep_id
            assert track.length == pytest.approx(duration, abs=slack), rep_id
            assert track.packets[0].keyframe, rep_id
        assert sum(d for _, d in rendition.timeline) == pytest.approx(source, abs=0.1), rep_id
    starts = [round(start, 3) for start, _ in walk.renditions["0"].timeline]
    assert set(starts) <= {0.0, 5.0, 10.0, 15.0} and len(starts) < math.ceil(source / SEGMENT), starts


# --- the signed prefix ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    expires: str
    signature: str
    prefix: str
    files: list[str]  # every file of the package, by name

    @classmethod
    def of(cls, url: str, walk: Walk) -> Signed:
        _, _, expires, signature, *prefix, _ = urlsplit(url).path.split("/")
        return cls(expires, signature, "/".join(prefix), sorted(walk.names()))

    def url(
        self, name: str, *, expires: str | None = None, signature: str | None = None, prefix: str | None = None
    ) -> str:
        return f"/packages/{expires or self.expires}/{signature or self.signature}/{prefix or self.prefix}/{name}"


def _refused_everywhere(client: TestClient, urls: list[str]) -> None:
    for url in urls:
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 403, (url, response.status_code)
        assert response.headers[CORS] == "*", url


@pytest.fixture(scope="module")
def signed(studio: Studio, hls: tuple[m3u8.M3U8, Walk]) -> Signed:
    return Signed.of(studio.url("hls"), hls[1])


def test_a_tampered_signature_is_403_for_the_playlist_and_every_segment(studio: Studio, signed: Signed) -> None:
    flipped = signed.signature[:-1] + ("0" if signed.signature[-1] != "0" else "1")
    for signature in (flipped, signed.signature.upper(), signed.signature[:-2], "x" * 64):
        _refused_everywhere(studio.client, [signed.url(name, signature=signature) for name in signed.files])


def test_a_tampered_expiry_is_403_everywhere(studio: Studio, signed: Signed) -> None:
    for expires in (str(int(signed.expires) + 1), str(int(signed.expires) + 86400), "0" + signed.expires, "9" * 12):
        _refused_everywhere(studio.client, [signed.url(name, expires=expires) for name in signed.files])


def test_this_signature_does_not_open_another_packages_prefix(studio: Studio, signed: Signed) -> None:
    other = Signed.of(studio.url("dash"), walk_dash(studio.client, studio.url("dash"))[1])
    assert other.prefix != signed.prefix
    _refused_everywhere(studio.client, [signed.url(name, prefix=other.prefix) for name in other.files])
    for name in other.files:  # with its own signature, the same files open
        assert studio.client.get(other.url(name), follow_redirects=False).status_code == 200, name


def test_an_expired_signature_is_403(studio: Studio, signed: Signed) -> None:
    signer = studio.context.url_signer
    fresh, past = int(time.time()) + 600, int(time.time()) - 1
    opened = signed.url("master.m3u8", expires=str(fresh), signature=signer.digest(signed.prefix, "package", fresh))
    assert studio.client.get(opened).status_code == 200  # the signer the test uses is the service's
    expired = signer.digest(signed.prefix, "package", past)
    _refused_everywhere(
        studio.client, [signed.url(name, expires=str(past), signature=expired) for name in signed.files]
    )


def test_a_download_signature_does_not_open_a_package(studio: Studio, signed: Signed) -> None:
    """The signer signs single-file downloads too: a signature made for one is never a package's."""
    sign = studio.context.url_signer.sign(signed.prefix, "master.m3u8")
    _refused_everywhere(
        studio.client, [signed.url("master.m3u8", expires=sign["expires"], signature=sign["signature"])]
    )


def test_a_missing_file_under_a_valid_signature_is_404(studio: Studio, signed: Signed) -> None:
    for name in ("chunk-0-00099.m4s", "init-9.m4s", "media_9.m3u8", "nothing.txt", "master.m3u8.bak"):
        response = studio.client.get(signed.url(name))
        assert response.status_code == 404, (name, response.status_code)
        assert response.headers[CORS] == "*"


def test_paths_that_leave_the_package_never_serve_a_file(studio: Studio, signed: Signed) -> None:
    """Dot segments, empty segments and encoded slashes, sent verbatim (no client-side normalisation)."""
    other = Signed.of(studio.url("dash"), walk_dash(studio.client, studio.url("dash"))[1])
    outside = [p.read_bytes() for p in stored_files(files_root(studio.settings)) if "runs" in p.parts]
    task = other.prefix.rpartition("/")[2]
    run_folder = signed.prefix.rpartition("/")[0]
    base = f"/packages/{signed.expires}/{signed.signature}/{signed.prefix}"
    attempts = [
        f"{base}/../{task}/manifest.mpd",
        f"{base}/../../../runs/source.mp4",
        f"{base}/./master.m3u8",
        f"{base}/.",
        f"{base}/..",
        f"{base}//master.m3u8",
        f"{base}/media_0.m3u8/",
        f"{base}%2Fmaster.m3u8",
        f"{base}/..%2F{task}%2Fmanifest.mpd",
        f"{base}/%2E%2E/{task}/manifest.mpd",
        f"{base}/%2e%2e%2f{task}%2fmanifest.mpd",
        f"{base}/..\\{task}\\manifest.mpd",
        f"/packages/{signed.expires}/{signed.signature}/{run_folder}/{task}/../{signed.prefix.rpartition('/')[2]}/master.m3u8",
        f"/packages/{signed.expires}/{signed.signature}//{signed.prefix}/master.m3u8",
    ]
    for path in attempts:
        status, _, body = raw_get(studio.client, _decoded(path), raw=path)
        assert status in (403, 404), (path, status)
        assert body not in outside and not body.startswith((b"#EXTM3U", b"<?xml")), path


def _decoded(raw: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), raw)


# --- what a package cannot be -----------------------------------------------------------------------------------


def _assert_422(response: httpx.Response, loc: list[str]) -> None:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc, error


@pytest.mark.parametrize("output_format", ["hls", "dash"])
def test_a_run_without_video_has_no_package(studio: Studio, output_format: str) -> None:
    _assert_422(studio.post("audio", {"output_format": output_format}), ["body", "output_format"])


@pytest.mark.parametrize(
    ("option", "value"), [("channels", 1), ("channels", 6), ("start_timecode", "01:00:00:00"), ("sample_rate", 22050)]
)
@pytest.mark.parametrize("output_format", ["hls", "dash"])
def test_options_a_package_does_not_take_are_422(studio: Studio, output_format: str, option: str, value: Any) -> None:
    _assert_422(studio.post("trio", _package_body(output_format, **{option: value})), ["body", option])


# --- failures leave nothing behind --------------------------------------------------------------------------------


def test_a_package_that_fills_the_disk_ends_in_error_and_leaves_nothing(small_disk: Path, sources: Sources) -> None:  # noqa: F811
    """FFmpeg runs out of room mid-package (the data volume shrunk to 200 KiB free once the run is imported)."""
    settings = Settings(
        data_dir=small_disk / "data", database_url=f"sqlite:///{small_disk.parent / 'altdub.db'}", create_demo=False
    )
    with TestClient(create_app(settings)) as client:
        key = new_key(client, "full")
        run_id = make_run(client, key, {"source": sources.trio["source"], "dub_fr-fr": sources.trio["dub_fr-fr"]})
        volume = os.statvfs(small_disk)
        used = (volume.f_blocks - volume.f_bfree) * volume.f_frsize
        subprocess.run(["mount", "-o", f"remount,size={used + 200 * 1024}", str(small_disk)], check=True)
        response = client.post(f"/runs/{run_id}/exports", headers=auth(key), json={"output_format": "hls"})
        status = wait_for_task(client, key, response.json()["task_id"], timeout=60)
        assert status["status"] == "ERROR", status
        assert status["exception_reason"] == "PROCESSING_ERROR", status
        # the disk fills while the renditions' audio is encoded (intermediates), or while the segments are cut
        pattern = (
            r"packaging failed: FFmpeg left \d+ empty files \(.*chunk-.*\): was the disk full\?"
            r"|audio encoding failed: .*No space left on device"
        )
        assert re.fullmatch(pattern, status["message"]), status
    assert [p for p in stored_files(files_root(settings)) if "exports" in p.parts] == []
    assert stored_files(staging_root(settings)) == []


def test_a_package_past_the_time_limit_leaves_nothing(tmp_path: Path, sources: Sources) -> None:
    settings = Settings(data_dir=tmp_path / "data", create_demo=False, workers=1, task_time_limit=0.05)
    with TestClient(create_app(settings)) as client:
        key = new_key(client, "slow")
        run_id = make_run(client, key, sources.trio, **_transcripts())
        response = client.post(f"/runs/{run_id}/exports", headers=auth(key), json=_package_body("hls"))
        status = wait_for_task(client, key, response.json()["task_id"], timeout=60)
        assert status["status"] == "TIMEOUT", status
        assert status["message"] and status.get("output_url") is None, status
    assert [p for p in stored_files(files_root(settings)) if "exports" in p.parts] == []
    assert stored_files(staging_root(settings)) == []


# --- S3 storage -------------------------------------------------------------------------------------------------


@dataclass
class Bucket:
    studio: Studio
    s3: S3Server
    prefix: str  # the storage's prefix in the bucket
    uploads: list[str]  # the keys the storage uploaded for exports, in order

    def keys(self, under: str) -> list[str]:
        return [k.removeprefix(self.prefix + "/") for k in self.s3.keys(f"{self.prefix}/{under}")]

    def read(self, key: str) -> bytes:
        found = self.s3.client().get_object(Bucket=self.s3.bucket, Key=f"{self.prefix}/{key}")
        return found["Body"].read()


def _s3_settings(data_dir: Path, server: S3Server, prefix: str, **overrides: Any) -> Settings:
    storage_url = server.storage_url(prefix)
    return Settings(data_dir=data_dir, storage_url=storage_url, create_demo=False, workers=2, **overrides)


@pytest.fixture(scope="module")
def bucket(
    tmp_path_factory: pytest.TempPathFactory,
    sources: Sources,
    s3: S3Server,  # noqa: F811
    aws_env: dict[str, str],  # noqa: F811
) -> Iterator[Bucket]:
    """An app on S3 storage (moto), its trio run, and its HLS package; the storage's uploads recorded in order."""
    prefix = f"packages-{time.time_ns()}"
    settings = _s3_settings(tmp_path_factory.mktemp("s3-data"), s3, prefix)
    with TestClient(create_app(settings)) as client, pytest.MonkeyPatch.context() as patch:
        key = new_key(client, "s3")
        studio = Studio(client, key, settings, {"trio": make_run(client, key, sources.trio, **_transcripts())})
        storage = studio.context.storage
        uploads: list[str] = []
        upload = storage.put_file

        def recorded(key: str, path: Path) -> int:  # the real upload, its key noted
            if "/exports/" in key:
                uploads.append(key)
            return upload(key, path)

        patch.setattr(storage, "put_file", recorded)
        studio.request("hls", "trio", _package_body("hls"))
        yield Bucket(studio, s3, prefix, uploads)


def _package_key(url: str) -> str:
    return "/".join(urlsplit(url).path.split("/")[4:-1]) + "/"


def test_on_s3_the_package_is_published_as_objects_every_one_reachable(
    bucket: Bucket, sources: Sources, tmp_path: Path
) -> None:
    url = bucket.studio.url("hls")
    _, walk = walk_hls(bucket.studio.client, url)
    package = _package_key(url)
    objects = bucket.keys(package)
    assert {k.removeprefix(package) for k in objects} == walk.names() | {"manifest.mpd"}
    for file_url, body in walk.bodies.items():
        assert body == bucket.read(package + file_url.rpartition("/")[2]), file_url
    video = join(walk, _video_rendition(walk), tmp_path / "video.mp4")
    assert [p.data for p in read_track(video).packets] == video_packets(sources.trio["source"])


def test_on_s3_playlists_are_served_by_the_api_and_segments_redirect_to_the_bucket(bucket: Bucket) -> None:
    url = bucket.studio.url("hls")
    package = _package_key(url)
    client = bucket.studio.client
    for name in ("master.m3u8", "media_0.m3u8", "subtitles-es-ES.m3u8", "subtitles-es-ES.vtt", "manifest.mpd"):
        response = client.get(urljoin(url, name), follow_redirects=False)
        assert response.status_code == 200, name
        assert response.content == bucket.read(package + name), name
    for name in ("init-0.m4s", "chunk-0-00001.m4s", "chunk-2-00004.m4s"):
        redirect = client.get(urljoin(url, name), follow_redirects=False)
        assert redirect.status_code == 302, name
        assert redirect.headers[CORS] == "*"
        location = redirect.headers["location"]
        assert location.startswith(f"{bucket.s3.endpoint}/{bucket.s3.bucket}/{bucket.prefix}/{package}{name}?"), (
            location
        )
        answer = httpx.get(location, timeout=30)
        assert answer.status_code == 200, name
        assert answer.content == bucket.read(package + name), name


def test_on_s3_a_tampered_prefix_is_403_before_any_redirect(bucket: Bucket) -> None:
    url = bucket.studio.url("hls")
    signed = Signed.of(url, walk_hls(bucket.studio.client, url)[1])
    flipped = signed.signature[:-1] + ("0" if signed.signature[-1] != "0" else "1")
    _refused_everywhere(bucket.studio.client, [signed.url(name, signature=flipped) for name in signed.files])
    _refused_everywhere(
        bucket.studio.client, [signed.url(name, expires=str(int(signed.expires) + 1)) for name in signed.files]
    )
    missing = bucket.studio.client.get(signed.url("media_9.m3u8"))
    assert missing.status_code == 404 and missing.headers[CORS] == "*"


def test_on_s3_playlists_are_uploaded_after_every_file_they_name(bucket: Bucket) -> None:
    bucket.studio.url("hls")  # finished
    names = [key.rpartition("/")[2] for key in bucket.uploads]
    manifests = [n.endswith((".m3u8", ".mpd")) for n in names]
    assert manifests == sorted(manifests), names  # every segment and text file first, then every manifest
    assert sum(manifests) == 1 + 1 + (1 + len(LANGUAGES)) + len(TRANSCRIBED)  # master, MPD, media, subtitles


def test_on_s3_a_failed_upload_leaves_no_object_and_the_task_ends_in_error(
    tmp_path: Path,
    sources: Sources,
    s3: S3Server,  # noqa: F811
    aws_env: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bucket refuses the fifth object of the package (the S3 server's own NoSuchBucket)."""
    prefix = f"failing-{time.time_ns()}"
    with TestClient(create_app(_s3_settings(tmp_path / "data", s3, prefix))) as client:
        key = new_key(client, "s3-failing")
        run_id = make_run(client, key, sources.trio, **_transcripts())
        storage = client.app.state.context.storage  # type: ignore[attr-defined]
        upload, calls = storage.put_file, []

        def refused_on_the_fifth(key: str, path: Path) -> int:
            calls.append(key)
            if len(calls) != 5:
                return upload(key, path)
            monkeypatch.setattr(storage, "bucket", "no-such-bucket")  # the server refuses this one upload
            try:
                return upload(key, path)
            finally:
                monkeypatch.setattr(storage, "bucket", s3.bucket)

        monkeypatch.setattr(storage, "put_file", refused_on_the_fifth)
        response = client.post(f"/runs/{run_id}/exports", headers=auth(key), json=_package_body("hls"))
        status = wait_for_task(client, key, response.json()["task_id"], timeout=120)
        assert status["status"] == "ERROR", status
        assert status["exception_reason"] == "INTERNAL_ERROR", status
        assert status["message"].startswith("publishing the package failed: upload of "), status
        assert len(calls) == 5  # four objects were in the bucket when the fifth failed
        assert s3.keys(f"{prefix}/w1/exports/") == []


def test_on_s3_a_package_past_the_time_limit_leaves_no_object(
    tmp_path: Path,
    sources: Sources,
    s3: S3Server,  # noqa: F811
    aws_env: dict[str, str],  # noqa: F811
) -> None:
    prefix = f"slow-{time.time_ns()}"
    with TestClient(create_app(_s3_settings(tmp_path / "data", s3, prefix, task_time_limit=0.05))) as client:
        key = new_key(client, "s3-slow")
        run_id = make_run(client, key, sources.trio, **_transcripts())
        response = client.post(f"/runs/{run_id}/exports", headers=auth(key), json=_package_body("dash"))
        status = wait_for_task(client, key, response.json()["task_id"], timeout=60)
        assert status["status"] == "TIMEOUT" and status["message"], status
    assert s3.keys(f"{prefix}/w1/exports/") == []
    assert s3.keys(f"{prefix}/w1/runs/") != []  # the run itself is there: only the package is missing
