"""The hand-off AAF (spec DELIVERIES §5), written with pyaaf2: one composition a mixer opens in Pro Tools.

Layout (Avid's: a composition of master clips over embedded file media):
- one top-level CompositionMob named after the timeline; slot 1 a timecode track at the start
  timecode (drop-frame kept), at the picture's frame rate;
- one mono sound track per channel of each stem, in the timeline's stem order, at 48000 edits a second
  (positions exact to the sample): "Spanish (Spain) voice L", "... voice R", "M&E L", ..., the original;
- on the stem a language's segments are cut from, one SourceClip per segment at its sample, referencing
  a MasterMob named "0001 Alice" (Avid and Pro Tools name a clip after its master clip) that holds
  the segment; gaps between lines on a voice stem are Filler; every other track is one SourceClip of its
  stem's MasterMob ("Spanish (Spain) mix");
- each channel's audio embedded as mono 24-bit PCM in a SourceMob of its own, so the file opens alone.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aaf2

from altdub.media import timecode
from altdub.media.ffmpeg import Limits, file_arg, run_ffmpeg
from altdub.media.timeline import HANDOFF_SAMPLE_RATE, Clip, Stem, Timeline
from altdub.media.timeline_layout import channel_labels, clip_label, stem_pieces, track_name

Channels = Sequence["aaf2.mobs.SourceMob"]


def write_aaf(timeline: Timeline, scratch: Path, limits: Limits = Limits()) -> Path:
    """``<scratch>/<name>.aaf``: the timeline as one AAF with its audio embedded."""
    path = scratch / f"{timeline.name}.aaf"
    with tempfile.TemporaryDirectory(prefix="aaf-", dir=scratch) as channels_dir, aaf2.open(str(path), "w") as f:
        composition = f.create.CompositionMob(timeline.name)
        composition.usage = "Usage_TopLevel"
        f.content.mobs.append(composition)
        _timecode_track(f, composition, timeline)
        track_number = 0
        for stem in timeline.stems:
            channels = _embedded_channels(f, timeline, stem, Path(channels_dir), limits)
            stem_master = _master(f, stem.name, channels, 0, timeline.duration)
            clip_masters: dict[Clip, aaf2.mobs.MasterMob] = {}
            for channel, label in enumerate(channel_labels(stem.channels)):
                track_number += 1
                slot = composition.create_sound_slot(edit_rate=timeline.sample_rate)
                slot.name = track_name(stem, label)
                slot["PhysicalTrackNumber"].value = track_number
                for piece in stem_pieces(timeline, stem):
                    if piece.silent:
                        slot.segment.components.append(f.create.Filler("sound", piece.length))
                    elif piece.clip is None:
                        clip = stem_master.create_source_clip(channel + 1, start=piece.start, length=piece.length)
                        slot.segment.components.append(clip)
                    else:
                        segment = piece.clip
                        if segment not in clip_masters:
                            clip_masters[segment] = _clip_master(f, segment, channels)
                        offset = piece.start - segment.start  # a segment split by one inside it goes on after it
                        clip = clip_masters[segment].create_source_clip(channel + 1, start=offset, length=piece.length)
                        slot.segment.components.append(clip)
                slot.segment.length = timeline.duration
    return path


def _timecode_track(f: aaf2.file.AAFFile, composition: aaf2.mobs.CompositionMob, timeline: Timeline) -> None:
    """Slot 1: the start timecode, counted in frames at the picture's rate (the AAF's "TC1")."""
    rate = timeline.exact_frame_rate
    slot = composition.create_timeline_slot(edit_rate=f"{rate.numerator}/{rate.denominator}")
    slot.name = "TC1"
    slot["PhysicalTrackNumber"].value = 1
    length = math.ceil(timeline.duration * rate / timeline.sample_rate)
    slot.segment = f.create.Timecode(math.ceil(rate), drop=timeline.drop_frame, length=length)
    slot.segment.start = timecode.frame_count(timeline.start_timecode, timeline.frame_rate)


def _embedded_channels(f: aaf2.file.AAFFile, timeline: Timeline, stem: Stem, scratch: Path, limits: Limits) -> Channels:
    """One SourceMob per channel of ``stem``, its samples embedded as mono PCM (FFmpeg splits the channels)."""
    labels = channel_labels(stem.channels)
    monos = [scratch / f"{index}.wav" for index in range(stem.channels)]
    args = ["-i", file_arg(stem.path)]
    for index, mono in enumerate(monos):
        args += ["-map", "0:a:0", "-af", f"pan=mono|c0=c{index}", "-c:a", "pcm_s24le", file_arg(mono)]
    run_ffmpeg(args, time_limit=limits.time_limit, cancel=limits.cancel)
    sources = []
    for mono, label in zip(monos, labels, strict=True):
        source = f.create.SourceMob(f"{track_name(stem, label)}.PHYS")
        f.content.mobs.append(source)
        slot = source.import_audio_essence(str(mono), edit_rate=timeline.sample_rate)
        # pyaaf2 names the container of the picture essence it embeds, not of the sound: the essence is in this file
        source.descriptor["ContainerFormat"].value = f.dictionary.lookup_containerdef("AAF")
        if slot.segment.length != timeline.duration:
            raise ValueError(f"{stem.path.name} has {slot.segment.length} samples, the timeline {timeline.duration}")
        mono.unlink()
        sources.append(source)
    return sources


def _clip_master(f: aaf2.file.AAFFile, segment: Clip, channels: Channels) -> aaf2.mobs.MasterMob:
    """The segment as a master clip "0001 Alice", its speaker and text in the clip's comments (Avid's bin columns)."""
    master = _master(f, clip_label(segment), channels, segment.start, segment.end)
    master.comments["Speaker"] = segment.speaker
    master.comments["Text"] = segment.text
    return master


def _master(f: aaf2.file.AAFFile, name: str, channels: Channels, start: int, end: int) -> aaf2.mobs.MasterMob:
    """A master clip of samples ``start`` to ``end`` of the embedded channels: one sound slot per channel."""
    master = f.create.MasterMob(name)
    f.content.mobs.append(master)
    for source in channels:
        slot = master.create_sound_slot(edit_rate=HANDOFF_SAMPLE_RATE)
        slot.segment.components.append(source.create_source_clip(1, start=start, length=end - start))
        slot.segment.length = end - start
    return master
