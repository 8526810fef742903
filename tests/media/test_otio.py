"""The hand-off OTIOZ read back with OpenTimelineIO: structure, sample-exact ranges, relative media in the zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import opentimelineio as otio
import pytest

from altdub.media.otio import write_otio
from tests.media.handoff_stems import ES_VOICE_TRACK, FR_MIX_TRACK, SAMPLES, Programme, make_programme


@pytest.fixture(scope="module")
def programme(tmp_path_factory: pytest.TempPathFactory) -> Programme:
    return make_programme(tmp_path_factory.mktemp("otio-stems"))


def _pieces(track: otio.schema.Track, media_start: int) -> list[tuple[int, int, str | None, str | None]]:
    """(start, end, clip name or None for a gap, media path) in samples, the source range checked against
    the position: a clip plays its stem's samples where it sits."""
    pieces = []
    for item in track:
        span = track.range_of_child(item)
        start, end = span.start_time.value, span.end_time_exclusive().value
        assert span.start_time.rate == span.duration.rate == 48000
        if isinstance(item, otio.schema.Gap):
            pieces.append((start, end, None, None))
            continue
        assert item.source_range.start_time.rate == 48000
        assert item.source_range.start_time.value - media_start == start  # sample-exact
        assert item.media_reference.available_range.start_time.value == media_start
        assert item.media_reference.available_range.duration.value == SAMPLES
        pieces.append((start, end, item.name, item.media_reference.target_url))
    return pieces


@pytest.mark.parametrize(
    ("start", "rate", "media_start"),
    [("10:00:00:00", 25.0, 36000 * 48000), ("00:59:59;28", 29.97, round(107890 * 48000 * 1001 / 30000))],
)
def test_otioz(programme: Programme, tmp_path: Path, start: str, rate: float, media_start: int) -> None:
    path = write_otio(programme.timeline(start, rate), tmp_path)
    timeline = otio.adapters.read_from_file(str(path))
    assert timeline.name == "run-7"
    exact = 30000 / 1001 if rate == 29.97 else rate
    assert timeline.global_start_time.to_timecode(exact, ";" in start) == start
    assert [t.name for t in timeline.tracks] == [
        "Spanish (Spain) mix", "Spanish (Spain) voice", "French (France) mix", "M&E", "English (US) original",
    ]  # fmt: skip
    assert all(t.kind == otio.schema.TrackKind.Audio for t in timeline.tracks)
    assert [t.metadata["altdub"]["channels"] for t in timeline.tracks] == [2, 2, 1, 2, 1]
    es_voice, fr_mix = timeline.tracks[1], timeline.tracks[2]
    stems = [programme.es_mix, programme.es_voice, programme.fr_mix, programme.me, programme.original]
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for track, stem in zip(timeline.tracks, stems, strict=True):
            pieces = _pieces(track, media_start)
            media = f"media/{stem.path.name}"
            layout = {id(es_voice): ES_VOICE_TRACK, id(fr_mix): FR_MIX_TRACK}.get(id(track), [(0, SAMPLES, stem.name)])
            assert [(s, e, n) for s, e, n, _ in pieces] == layout
            assert {url for *_, url in pieces} - {None} == {media}  # relative, inside the zip
            assert media in names
            assert archive.read(media) == stem.path.read_bytes()
    bob = es_voice[2]
    assert bob.metadata["altdub"] == {"number": 2, "speaker": "Bob", "text": "¿Qué, tú?"}
    assert names == {"content.otio", "version.txt", *(f"media/{s.path.name}" for s in stems)}


def test_otioz_unpacked_resolves_its_media(programme: Programme, tmp_path: Path) -> None:
    path = write_otio(programme.bare_timeline(), tmp_path)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    timeline = otio.adapters.read_from_file(str(path), extract_to_directory=str(unpacked))
    (track,) = timeline.tracks
    (clip,) = track
    assert (unpacked / otio.url_utils.filepath_from_url(clip.media_reference.target_url)).read_bytes() == (
        programme.fr_mix.path.read_bytes()
    )
    assert timeline.global_start_time.to_timecode(25, False) == "00:00:00:00"
