"""The hand-off OpenTimelineIO bundle (spec DELIVERIES §5): the AAF's timeline, zipped with its media.

The file is an OTIOZ, OpenTimelineIO's own bundle written by its ``otioz`` adapter: a zip holding
``content.otio``, ``version.txt`` and the stems under ``media/``, each clip referencing its stem by
the relative path ``media/<file>.wav``. No Final Cut Pro XML beside it: FCP 7 XML counts time in
frames, and its adapter cannot write media at 48000 a second (it needs an SMPTE rate), so it could not
keep the sample positions.

Layout: ``global_start_time`` is the start timecode (frames at the picture's rate); one audio track per
stem (a stereo stem is one stereo track: OpenTimelineIO has no channel of a file to point at), in the
timeline's stem order and named as the AAF's tracks without the channel; the pieces are the AAF's
(``stem_pieces``) at 48000 a second, so every position is a sample: a segment is a Clip named "0001 Alice"
(its speaker, text and number in the clip's ``altdub`` metadata), a gap between lines on a voice stem is
a Gap, a stem without segments one Clip. A stem's time counts from its BWF time stamp (``available_range``
starts at the start timecode in samples, as the stems' ``TimeReference``), so a clip's ``source_range``
is where its samples are in the stem as a DAW reads the file's time.
"""

from __future__ import annotations

from pathlib import Path

import opentimelineio as otio
from opentimelineio.opentime import RationalTime, TimeRange

from altdub.media import timecode
from altdub.media.ffmpeg import Limits
from altdub.media.timeline import Stem, Timeline
from altdub.media.timeline_layout import clip_label, stem_pieces


def build_otio(timeline: Timeline) -> otio.schema.Timeline:
    """The timeline as OpenTimelineIO objects, its clips referencing the stems where they are."""
    rate = float(timeline.exact_frame_rate)
    start = RationalTime(timecode.frame_count(timeline.start_timecode, timeline.frame_rate), rate)
    result = otio.schema.Timeline(name=timeline.name, global_start_time=start)
    result.metadata["altdub"] = {"start_timecode": timeline.start_timecode, "sample_rate": timeline.sample_rate}
    for stem in timeline.stems:
        track = otio.schema.Track(name=stem.name, kind=otio.schema.TrackKind.Audio)
        track.metadata["altdub"] = {"role": stem.role, "language": stem.language, "channels": stem.channels}
        for piece in stem_pieces(timeline, stem):
            span = TimeRange(_media_time(timeline, piece.start), _samples(timeline, piece.length))
            if piece.silent:
                track.append(otio.schema.Gap(source_range=span))
                continue
            name = stem.name if piece.clip is None else clip_label(piece.clip)
            clip = otio.schema.Clip(name=name, media_reference=_reference(timeline, stem), source_range=span)
            if piece.clip is not None:
                segment = piece.clip
                clip.metadata["altdub"] = {"number": segment.number, "speaker": segment.speaker, "text": segment.text}
            track.append(clip)
        result.tracks.append(track)
    return result


def write_otio(timeline: Timeline, scratch: Path, limits: Limits = Limits()) -> Path:
    """``<scratch>/<name>.otioz``: the timeline and its stems; the adapter copies the stems in chunks.

    ``limits`` is the hand-off writers' one signature: this writer runs no FFmpeg.
    """
    path = scratch / f"{timeline.name}.otioz"
    path.unlink(missing_ok=True)  # the adapter refuses to overwrite
    otio.adapters.write_to_file(build_otio(timeline), str(path), adapter_name="otioz")
    return path


def _samples(timeline: Timeline, count: int) -> RationalTime:
    return RationalTime(count, timeline.sample_rate)


def _media_time(timeline: Timeline, sample: int) -> RationalTime:
    """Where ``sample`` of a stem is in the stem's own time: its BWF time stamp (the start timecode) on."""
    return _samples(timeline, timeline.start_samples + sample)


def _reference(timeline: Timeline, stem: Stem) -> otio.schema.ExternalReference:
    return otio.schema.ExternalReference(
        target_url=otio.url_utils.url_from_filepath(str(stem.path.resolve())),
        available_range=TimeRange(_media_time(timeline, 0), _samples(timeline, timeline.duration)),
    )
