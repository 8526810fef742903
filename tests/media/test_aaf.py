"""The hand-off AAF read back with pyaaf2, its embedded essence decoded from the bytes and compared to the stems."""

from __future__ import annotations

from pathlib import Path

import aaf2
import numpy as np
import opentimelineio as otio
import pytest

from altdub.media.aaf import write_aaf
from tests.media.handoff_stems import (
    ES_VOICE_TRACK,
    FR_MIX_TRACK,
    SAMPLES,
    Programme,
    int24_samples,
    make_programme,
    wav_samples,
)


@pytest.fixture(scope="module")
def programme(tmp_path_factory: pytest.TempPathFactory) -> Programme:
    return make_programme(tmp_path_factory.mktemp("aaf-stems"))


def _essence(source_mob: aaf2.mobs.SourceMob) -> np.ndarray:
    """The embedded mono PCM of a source mob, decoded from its bytes."""
    descriptor = source_mob.descriptor
    assert (descriptor["Channels"].value, descriptor["QuantizationBits"].value) == (1, 24)
    assert float(descriptor["SampleRate"].value) == 48000
    assert descriptor["ContainerFormat"].value.name == "ContainerDef_AAF"  # embedded in this file
    return int24_samples(source_mob.essence.open("r").read(), 1)[:, 0]


def _track(slot: aaf2.mobslots.TimelineMobSlot) -> tuple[list[tuple[int, int, str | None]], np.ndarray, set[str]]:
    """The track's pieces, the samples it plays (Filler: zeros) through master clip to embedded essence, and
    the embedded source mobs it plays."""
    pieces, played, sources, position = [], np.zeros(slot.segment.length, dtype=np.int32), set(), 0
    for component in slot.segment.components:
        end = position + component.length
        if isinstance(component, aaf2.components.Filler):
            pieces.append((position, end, None))
        else:
            master = component.mob
            assert isinstance(master, aaf2.mobs.MasterMob)
            file_clip = master.slot_at(component.slot_id).segment.components[0]
            assert isinstance(file_clip.mob, aaf2.mobs.SourceMob)
            offset = file_clip.start + component.start
            played[position:end] = _essence(file_clip.mob)[offset : offset + component.length]
            pieces.append((position, end, master.name))
            sources.add(file_clip.mob.name)
        position = end
    return pieces, played, sources


@pytest.mark.parametrize(
    ("start", "rate", "frames", "fps", "drop"),
    [
        ("10:00:00:00", 25.0, 900000, 25, False),
        ("00:59:59;28", 29.97, 107890, 30, True),
        ("00:00:00:00", 25.0, 0, 25, False),
    ],
)
def test_aaf_layout_positions_and_essence(
    programme: Programme, tmp_path: Path, start: str, rate: float, frames: int, fps: int, drop: bool
) -> None:
    path = write_aaf(programme.timeline(start, rate), tmp_path)
    assert list(tmp_path.iterdir()) == [path]  # the channels split for embedding are gone
    with aaf2.open(str(path), "r") as f:
        compositions = list(f.content.compositionmobs())
        assert [c.name for c in compositions] == ["run-7"]
        assert [c.name for c in f.content.toplevel()] == ["run-7"]
        slots = list(compositions[0].slots)
        timecode = slots[0].segment
        assert (slots[0].name, timecode.start, timecode.fps, timecode.drop) == ("TC1", frames, fps, drop)
        assert float(slots[0].edit_rate) == pytest.approx(rate, abs=0.001)
        names = [s.name for s in slots[1:]]
        assert names == [
            "Spanish (Spain) mix L", "Spanish (Spain) mix R", "Spanish (Spain) voice L", "Spanish (Spain) voice R",
            "French (France) mix", "M&E L", "M&E R", "English (US) original",
        ]  # fmt: skip
        assert [s["PhysicalTrackNumber"].value for s in slots[1:]] == list(range(1, 9))
        stems = [programme.es_mix] * 2 + [programme.es_voice] * 2 + [programme.fr_mix] + [programme.me] * 2
        channels = [0, 1, 0, 1, 0, 0, 1, 0]
        for slot, stem, channel in zip(slots[1:], [*stems, programme.original], channels, strict=True):
            assert slot.edit_rate == 48000 and slot.segment.length == SAMPLES
            pieces, played, sources = _track(slot)
            expected = wav_samples(stem.path)[:, channel]
            assert len(sources) == 1  # one embedded channel per track
            if stem is programme.es_voice:
                assert pieces == ES_VOICE_TRACK
                for begin, end, name in pieces:
                    wanted = expected[begin:end] if name else np.zeros(end - begin, dtype=np.int32)
                    assert np.array_equal(played[begin:end], wanted), (slot.name, begin)
            else:
                assert pieces == (FR_MIX_TRACK if stem is programme.fr_mix else [(0, SAMPLES, stem.name)])
                assert np.array_equal(played, expected), slot.name
                assert np.array_equal(expected, programme.samples[stem.path][:, channel])  # PyAV read the stem right
        speakers = {m.name: m.comments["Speaker"] for m in f.content.mastermobs() if "Speaker" in m.comments}
        assert speakers["0005 Zoë"] == "Zoë" and speakers["0004"] == ""


def test_aaf_as_opentimelineio_reads_it(programme: Programme, tmp_path: Path) -> None:
    """OpenTimelineIO's AAF reader walks the composition as an importing tool does: the start timecode,
    every track by name, each clip's name, place and source sample."""
    path = write_aaf(programme.timeline("00:59:59;28", 29.97), tmp_path)
    timeline = otio.adapters.read_from_file(str(path), adapter_name="AAF")
    assert timeline.name == "run-7"
    assert timeline.global_start_time.to_timecode(30000 / 1001, True) == "00:59:59;28"
    tracks = {track.name: track for track in timeline.tracks}
    assert len(tracks) == 8 and all(t.kind == otio.schema.TrackKind.Audio for t in timeline.tracks)
    for name, layout in (("Spanish (Spain) voice R", ES_VOICE_TRACK), ("French (France) mix", FR_MIX_TRACK)):
        track = tracks[name]
        placed = []
        for clip in track.find_clips():
            span = track.range_of_child(clip)
            assert span.start_time.rate == clip.source_range.start_time.rate == 48000
            assert clip.source_range.start_time.value == span.start_time.value  # the stem's sample where it sits
            placed.append((span.start_time.value, span.end_time_exclusive().value, clip.name))
        assert placed == [piece for piece in layout if piece[2] is not None]


def test_aaf_of_a_single_mono_mix_without_clips(programme: Programme, tmp_path: Path) -> None:
    path = write_aaf(programme.bare_timeline("01:00:00:00"), tmp_path)
    with aaf2.open(str(path), "r") as f:
        (composition,) = f.content.toplevel()
        slots = list(composition.slots)
        assert [s.name for s in slots] == ["TC1", "French (France) mix"]
        assert slots[0].segment.start == 90000
        pieces, played, _ = _track(slots[1])
        assert pieces == [(0, SAMPLES, "French (France) mix")]
        assert np.array_equal(played, programme.samples[programme.fr_mix.path][:, 0])
        assert len(list(f.content.mastermobs())) == 1


def test_a_stem_shorter_than_the_timeline_is_refused(programme: Programme, tmp_path: Path) -> None:
    line = programme.bare_timeline()
    longer = type(line)(line.name, SAMPLES + 1, line.start_timecode, line.frame_rate, line.stems)
    with pytest.raises(ValueError, match=f"has {SAMPLES} samples, the timeline {SAMPLES + 1}"):
        write_aaf(longer, tmp_path)
