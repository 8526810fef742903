"""The hand-off clips zip (spec DELIVERIES §5): a WAV per transcript segment, ``clips.csv`` and a CMX3600 EDL.

One folder per language (``es-es/``): segment numbers restart in each language, and a mixer conforms
one language at a time from its folder and its EDL. In each folder:
- ``<nnnn>_<HHMMSSFF>_<speaker>.wav``: the segment cut sample-exactly from the language's voice stem (its
  mix without one) by FFmpeg's ``atrim``, a Broadcast WAV whose ``TimeReference`` is its place in the
  programme (start timecode + segment start), so a DAW can spot it to its original time stamp;
- ``clips.csv``: index, start, end (seconds), start timecode, speaker, text, then the file and the
  segment's first and end sample;
- ``<timeline>_<language>.edl``: CMX3600 through OpenTimelineIO's adapter, an audio event per segment
  at its record timecode (source timecode the same: the clip's own time stamp).
"""

from __future__ import annotations

import csv
import tempfile
import zipfile
from pathlib import Path

import opentimelineio as otio

from altdub.media.ffmpeg import Limits, file_arg, run_ffmpeg
from altdub.media.handoff import ORIGINATOR, bext_description
from altdub.media.timeline import Clip, LanguageClips, Timeline
from altdub.media.timeline_layout import clip_label, frame_at, safe_speaker, stem_pieces, timecode_at

CSV_COLUMNS = ("index", "start", "end", "start_timecode", "speaker", "text", "file", "start_sample", "end_sample")
_OUTPUTS_PER_RUN = 100  # clips one FFmpeg run writes: one open file each


def clip_file_name(timeline: Timeline, clip: Clip) -> str:
    """``0012_01000304_Alice.wav``: number, start timecode's digits, speaker."""
    digits = "".join(ch for ch in timecode_at(timeline, clip.start) if ch.isdigit())
    return f"{clip.number:04d}_{digits}_{safe_speaker(clip.speaker)}.wav"


def write_clips_zip(timeline: Timeline, scratch: Path, limits: Limits = Limits()) -> Path:
    """``<scratch>/<name>.zip``: every language's clips, ``clips.csv`` and EDL, put in one file at a time."""
    path = scratch / f"{timeline.name}.zip"
    with (
        tempfile.TemporaryDirectory(prefix="clips-", dir=scratch) as folders,
        zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        for language in timeline.clips:
            folder = Path(folders) / language.language
            folder.mkdir()
            for batch in range(0, len(language.clips), _OUTPUTS_PER_RUN):
                _cut(timeline, language, language.clips[batch : batch + _OUTPUTS_PER_RUN], folder, limits)
            _write_csv(timeline, language, folder / "clips.csv")
            edl = folder / f"{timeline.name}_{language.language}.edl"
            edl.write_text(edl_text(timeline, language), encoding="utf-8")
            for file in sorted(folder.iterdir()):
                archive.write(file, f"{language.language}/{file.name}")
                file.unlink()
    return path


def _cut(timeline: Timeline, language: LanguageClips, clips: tuple[Clip, ...], folder: Path, limits: Limits) -> None:
    """One FFmpeg run cutting ``clips`` from the language's stem, each to a Broadcast WAV of its own."""
    graph = f"[0:a]asplit={len(clips)}" + "".join(f"[s{i}]" for i in range(len(clips)))
    for i, clip in enumerate(clips):
        graph += f";[s{i}]atrim=start_sample={clip.start}:end_sample={clip.end},asetpts=PTS-STARTPTS[c{i}]"
    args = ["-i", file_arg(language.stem.path), "-filter_complex", graph]
    for i, clip in enumerate(clips):
        description = bext_description(timeline, language.stem, f"{clip_label(clip)}: {clip.text}")
        args += ["-map", f"[c{i}]", "-c:a", "pcm_s24le", "-write_bext", "1", "-map_metadata", "-1",
                 "-metadata", f"time_reference={timeline.start_samples + clip.start}",
                 "-metadata", f"description={description}", "-metadata", f"originator={ORIGINATOR}",
                 file_arg(folder / clip_file_name(timeline, clip))]  # fmt: skip
    run_ffmpeg(args, time_limit=limits.time_limit, cancel=limits.cancel)


def _write_csv(timeline: Timeline, language: LanguageClips, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for clip in language.clips:
            writer.writerow([
                clip.number, f"{timeline.seconds(clip.start):.6f}", f"{timeline.seconds(clip.end):.6f}",
                timecode_at(timeline, clip.start), clip.speaker, clip.text, clip_file_name(timeline, clip),
                clip.start, clip.end,
            ])  # fmt: skip


def edl_rate(timeline: Timeline) -> float:
    """The rate the EDL counts frames at: the exact rate at drop-frame, else the nominal one.

    OpenTimelineIO's CMX3600 writer numbers 29.97 as drop-frame; a non-drop 29.97 timecode counts
    its frames as 30 would, so the EDL is written at 30 (and at 24 for 23.976).
    """
    return float(timeline.exact_frame_rate) if timeline.drop_frame else float(round(timeline.frame_rate))


def edl_text(timeline: Timeline, language: LanguageClips) -> str:
    """The language's CMX3600 EDL: an audio event per segment, record and source at its timecode.

    Events follow the AAF's track (``stem_pieces``): an overlapped segment ends where the next begins,
    and a segment a shorter one interrupts goes on after it as a second event of the same clip. An event
    spans the frames its samples touch; a frame shared by two goes to the one that starts in it.
    """
    rate = edl_rate(timeline)
    track = otio.schema.Track(name=f"{language.stem.name} clips", kind=otio.schema.TrackKind.Audio)
    pieces = [p for p in stem_pieces(timeline, language.stem) if p.clip is not None]
    # A piece covers the frames its samples touch; a frame two pieces touch goes to the one starting in it.
    starts = [frame_at(timeline, p.start) for p in pieces]
    ends = [frame_at(timeline, p.end - 1) + 1 for p in pieces]
    cursor = 0
    for index, piece in enumerate(pieces):
        start, end = starts[index], min([ends[index], *starts[index + 1 : index + 2]])
        if end <= start:
            continue  # within a frame another segment starts in
        if start > cursor:
            track.append(otio.schema.Gap(duration=otio.opentime.RationalTime(start - cursor, rate)))
        clip = otio.schema.Clip(
            name=clip_label(piece.clip),
            media_reference=otio.schema.ExternalReference(target_url=clip_file_name(timeline, piece.clip)),
            source_range=otio.opentime.range_from_start_end_time(
                otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(end, rate)
            ),
            metadata={"cmx_3600": {"reel": f"{piece.clip.number:04d}"}},
        )
        track.append(clip)
        cursor = end
    # The adapter writes the first track and wants exactly one picture track: an empty one is added.
    picture = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    edl = otio.schema.Timeline(name=f"{timeline.name} {language.language}", tracks=[track, picture])
    return otio.adapters.write_to_string(edl, "cmx_3600", rate=rate, style="avid")
