"""Streaming packages (spec §4): one set of CMAF segments that HLS and DASH both describe.

FFmpeg's DASH muxer cuts the segments (about ``SEGMENT_SECONDS``, at the picture's keyframes) and
writes a first ``manifest.mpd`` and, with ``-hls_playlist``, the HLS media playlists beside it.
``finish_package`` then writes what players need and FFmpeg does not: the HLS master playlist
with each language's BCP-47 ``LANGUAGE``, display ``NAME``, exactly one ``DEFAULT=YES``,
``AUTOSELECT`` and ``CHANNELS`` (built with the ``m3u8`` library), the MPD's ``lang``, ``Label``
and ``Role`` (``main`` on the default language, ``dub`` on the others), and a WebVTT rendition per
transcript in both.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import m3u8

from altdub.media.catalogue import CATALOGUE
from altdub.media.ffmpeg import file_arg
from altdub.media.formats import ExportInputs, ExportPlan, InputFiles, audio_chain, samples_unchanged
from altdub.media.options import ExportOptions
from altdub.media.probe import StreamInfo

SEGMENT_SECONDS = 6
HLS_MASTER = "master.m3u8"
DASH_MANIFEST = "manifest.mpd"
_FFMPEG_HLS_MASTER = "ffmpeg-master.m3u8"  # FFmpeg's own master, read for the variant's figures, then removed
_AUDIO_GROUP = "audio"
_SUBTITLE_GROUP = "subs"
_MPD = "urn:mpeg:dash:schema:mpd:2011"
_ROLE_SCHEME = "urn:mpeg:dash:role:2011"


@dataclass(frozen=True)
class _Rendition:
    """A rendition as the manifests name it: the FFmpeg output stream it is, and its language."""

    stream: int  # index among the output's streams (0 is the picture)
    tag: str  # BCP-47
    name: str
    default: bool


def package_plan(output_format: str, inputs: ExportInputs, options: ExportOptions, folder: Path) -> ExportPlan:
    """FFmpeg's arguments that write the package's segments and first manifests into ``folder``."""
    fmt = CATALOGUE[output_format]
    if inputs.video is None or inputs.video_path is None:
        raise ValueError("the run has no video")
    files = InputFiles()
    maps = ["-map", f"{files.index(inputs.video_path)}:{inputs.video.index}"]
    video_args, video_copied = _video_args(inputs.video, fmt.copyable_video or frozenset())
    graphs: list[str] = []
    codecs = list(video_args)
    tracks = inputs.audio_tracks(options)
    for number, track in enumerate(tracks):
        stream = f"{files.index(track.path)}:{track.stream.index}"
        if track.encoded or samples_unchanged(track, options, inputs.duration):
            maps += ["-map", stream]  # no graph: the encoder reads the dub as it is, or its encoding is copied
        else:
            label = f"[a{number}]"
            graphs.append(f"[{stream}]{audio_chain(track, options, inputs.duration)}{label}")
            maps += ["-map", label]
        if track.encoded:
            codecs += [f"-c:a:{number}", "copy"]
        else:
            codecs += [f"-c:a:{number}", "aac", f"-profile:a:{number}", "aac_low"]
            codecs += [f"-b:a:{number}", str(options.audio_bitrate)]
        codecs += [f"-metadata:s:a:{number}", f"language={track.language}"]
    sets = " ".join(["id=0,streams=v", *(f"id={n + 1},streams={n + 1}" for n in range(len(tracks)))])
    args = [*files.args(), *(["-filter_complex", ";".join(graphs)] if graphs else []), *maps, *codecs]
    args += ["-t", f"{inputs.duration:.6f}", "-map_metadata", "-1", "-map_chapters", "-1"]
    args += [
        "-f", "dash", "-seg_duration", str(SEGMENT_SECONDS), "-use_template", "1", "-use_timeline", "1",
        "-adaptation_sets", sets, "-hls_playlist", "1", "-hls_master_name", _FFMPEG_HLS_MASTER,
        "-init_seg_name", "init-$RepresentationID$.m4s", "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
        file_arg(folder / DASH_MANIFEST),
    ]  # fmt: skip
    return ExportPlan(args, video_copied, audio_copied=False)


def _video_args(video: StreamInfo, copyable: frozenset[str]) -> tuple[list[str], bool]:
    """Copied when H.264 or HEVC (cut at its own keyframes); else H.264 with a keyframe at every segment start."""
    if video.codec in copyable:
        return ["-c:v", "copy", *(["-tag:v", "hvc1"] if video.codec == "hevc" else [])], True
    keyframes = f"expr:gte(t,n_forced*{SEGMENT_SECONDS})"
    return ["-c:v", "libx264", "-preset", "medium", "-crf", "20", "-pix_fmt", "yuv420p",
            "-force_key_frames", keyframes], False  # fmt: skip


def finish_package(folder: Path, inputs: ExportInputs, options: ExportOptions) -> None:
    """Write the HLS master, the MPD's languages and roles, and the WebVTT renditions, over FFmpeg's first draft.

    Raises ValueError when the draft is not whole: FFmpeg's DASH muxer ends with status 0 even when its writes
    failed (a full disk), leaving empty files behind.
    """
    empty = sorted(p.name for p in folder.iterdir() if p.is_file() and p.stat().st_size == 0)
    if empty:
        named = ", ".join(empty[:3]) + (", ..." if len(empty) > 3 else "")
        raise ValueError(f"FFmpeg left {len(empty)} empty files ({named}): was the disk full?")
    tracks = inputs.audio_tracks(options)
    renditions = [_Rendition(n + 1, t.tag, t.title, default=n == inputs.default_dub) for n, t in enumerate(tracks)]
    subtitles = [] if options.subtitles == "none" else list(inputs.subtitles)
    for text in subtitles:
        _write_subtitle_playlist(folder, text.path.name, inputs.duration)
    _write_hls_master(folder, renditions, subtitles, options.channels)
    _finish_mpd(folder, renditions, subtitles)
    for playlist in sorted(folder.glob("media_*.m3u8")):
        _drop_program_dates(playlist)


def _write_hls_master(folder: Path, renditions: list[_Rendition], subtitles: list, channels: int) -> None:
    drafted = m3u8.load(str(folder / _FFMPEG_HLS_MASTER))
    variant = drafted.playlists[0].stream_info
    master = m3u8.M3U8()
    master.version = 7
    master.is_independent_segments = True
    media = [
        m3u8.Media(
            uri=f"media_{r.stream}.m3u8", type="AUDIO", group_id=_AUDIO_GROUP, language=r.tag, name=r.name,
            default="YES" if r.default else "NO", autoselect="YES", channels=str(channels),
        )
        for r in renditions
    ] + [
        m3u8.Media(
            uri=_subtitle_playlist_name(text.path.name), type="SUBTITLES", group_id=_SUBTITLE_GROUP,
            language=text.tag, name=text.title, default="NO", autoselect="YES",
        )
        for text in subtitles
    ]  # fmt: skip
    for item in media:
        master.add_media(item)
    stream_info = {
        "bandwidth": variant.bandwidth,
        "resolution": f"{variant.resolution[0]}x{variant.resolution[1]}" if variant.resolution else None,
        "codecs": variant.codecs,
        "audio": _AUDIO_GROUP,
        "subtitles": _SUBTITLE_GROUP if subtitles else None,
    }
    master.add_playlist(m3u8.Playlist("media_0.m3u8", {k: v for k, v in stream_info.items() if v}, media, None))
    (folder / HLS_MASTER).write_text(master.dumps(), encoding="utf-8")
    (folder / _FFMPEG_HLS_MASTER).unlink()


def _subtitle_playlist_name(vtt_name: str) -> str:
    return f"{Path(vtt_name).stem}.m3u8"


def _write_subtitle_playlist(folder: Path, vtt_name: str, duration: float) -> None:
    """A WebVTT rendition as one segment: the whole transcript file (HLS allows a segment this long for text)."""
    playlist = m3u8.M3U8()
    playlist.version = 3
    playlist.target_duration = math.ceil(duration)
    playlist.playlist_type = "vod"
    playlist.is_endlist = True
    playlist.add_segment(m3u8.Segment(uri=vtt_name, duration=duration))
    (folder / _subtitle_playlist_name(vtt_name)).write_text(playlist.dumps(), encoding="utf-8")


def _drop_program_dates(playlist_path: Path) -> None:
    """FFmpeg stamps segments with the wall clock of the conversion: a VOD package has no such dates."""
    playlist = m3u8.load(str(playlist_path))
    for segment in playlist.segments:
        segment.program_date_time = None
    playlist_path.write_text(playlist.dumps(), encoding="utf-8")


def _finish_mpd(folder: Path, renditions: list[_Rendition], subtitles: list) -> None:
    ET.register_namespace("", _MPD)
    for prefix, uri in (
        ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        ("xlink", "http://www.w3.org/1999/xlink"),
    ):
        ET.register_namespace(prefix, uri)
    path = folder / DASH_MANIFEST
    tree = ET.parse(path)
    period = tree.getroot().find(f"{{{_MPD}}}Period")
    if period is None:
        raise ValueError("FFmpeg wrote an MPD without a Period")
    by_id = {s.get("id"): s for s in period.findall(f"{{{_MPD}}}AdaptationSet")}
    for rendition in renditions:
        adaptation = by_id[str(rendition.stream)]
        adaptation.set("lang", rendition.tag)
        _prepend(adaptation, "Role", schemeIdUri=_ROLE_SCHEME, value="main" if rendition.default else "dub")
        _prepend(adaptation, "Label", text=rendition.name)  # first: a RepresentationBase element, before Role
    for number, text in enumerate(subtitles):
        adaptation = ET.SubElement(
            period,
            f"{{{_MPD}}}AdaptationSet",
            id=str(len(renditions) + 1 + number),
            contentType="text",
            mimeType="text/vtt",
            lang=text.tag,
        )
        ET.SubElement(adaptation, f"{{{_MPD}}}Label").text = text.title
        ET.SubElement(adaptation, f"{{{_MPD}}}Role", schemeIdUri=_ROLE_SCHEME, value="subtitle")
        representation = ET.SubElement(adaptation, f"{{{_MPD}}}Representation", id=f"text-{number}", bandwidth="256")
        ET.SubElement(representation, f"{{{_MPD}}}BaseURL").text = text.path.name
    ET.indent(tree, space="\t")
    tree.write(path, encoding="utf-8", xml_declaration=True)


def verify_package(folder: Path, duration: float) -> list[str]:
    """What is wrong with a finished package (nothing: an empty list): every file a playlist names is there,
    and each media playlist lasts as long as the programme."""
    problems = []
    master = m3u8.load(str(folder / HLS_MASTER))
    playlists = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    for name in playlists:
        if not (folder / name).is_file():
            problems.append(f"{name} is missing")
            continue
        playlist = m3u8.load(str(folder / name))
        uris = [s.uri for s in playlist.segments] + [m.uri for m in playlist.segment_map or [] if m.uri]
        problems += [f"{uri} (of {name}) is missing" for uri in uris if not (folder / uri).is_file()]
        length = sum(s.duration or 0 for s in playlist.segments)
        if abs(length - duration) > _PACKAGE_DURATION_TOLERANCE:
            problems.append(f"{name} lasts {length:.3f} s instead of {duration:.3f} s")
    if not (folder / DASH_MANIFEST).is_file():
        problems.append(f"{DASH_MANIFEST} is missing")
    return problems


_PACKAGE_DURATION_TOLERANCE = 0.1  # seconds: the last audio frame (AAC frames last 21 ms) and the picture's last frame


def _prepend(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> None:
    """A child placed first: the MPD schema wants Label, then Role, before the Representations."""
    child = ET.Element(f"{{{_MPD}}}{tag}", attributes)
    child.text = text
    parent.insert(0, child)


@dataclass(frozen=True)
class Rendition:
    """An audio rendition as the finished HLS master names it, and its media playlist's length."""

    playlist: str  # the media playlist's file name
    language: str | None  # BCP-47
    name: str | None
    default: bool
    duration: float  # seconds: its segments' durations added up


def audio_renditions(folder: Path) -> list[Rendition]:
    """The audio renditions of a finished package, in the master playlist's order (the QC report reads them)."""
    master = m3u8.load(str(folder / HLS_MASTER))
    renditions = []
    for media in master.media:
        if media.type == "AUDIO" and media.uri:
            playlist = m3u8.load(str(folder / media.uri))
            length = sum(s.duration or 0 for s in playlist.segments)
            renditions.append(Rendition(media.uri, media.language, media.name, media.default == "YES", length))
    return renditions
