"""The hand-off clips zip: clip WAVs equal to the stem's samples, their bext read from the bytes, clips.csv,
and the EDL read back with OpenTimelineIO's CMX3600 adapter."""

from __future__ import annotations

import csv
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest

from altdub.media.clips import CSV_COLUMNS, edl_rate, write_clips_zip
from tests.media.handoff_stems import ES_CLIPS, FR_CLIPS, Programme, make_programme, wav_samples

ES_TIMECODES = {
    "10:00:00:00": ["10:00:00:02", "10:00:00:10", "10:00:01:03", "10:00:01:06", "10:00:02:00"],
    "00:59:59;28": ["01:00:00;00", "01:00:00;10", "01:00:01;02", "01:00:01;05", "01:00:01;27"],
}
ES_FILES = {
    start: [f"{c.number:04d}_{tc.replace(':', '').replace(';', '')}_{speaker}.wav"
            for c, tc, speaker in zip(ES_CLIPS, codes, ["Alice", "Bob", "Carol", "unknown", "Zoe"], strict=True)]
    for start, codes in ES_TIMECODES.items()
}  # fmt: skip


@pytest.fixture(scope="module")
def programme(tmp_path_factory: pytest.TempPathFactory) -> Programme:
    return make_programme(tmp_path_factory.mktemp("clips-stems"))


def _bext(data: bytes) -> tuple[str, int]:
    """A Broadcast WAV's bext description and TimeReference, parsed from the RIFF chunks."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    offset = 12
    while offset < len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"bext":
            body = data[offset + 8 : offset + 8 + size]
            low, high = struct.unpack_from("<II", body, 338)  # description 256, originator 32 + 32, date 10, time 8
            return body[:256].rstrip(b"\0").decode("utf-8"), low | high << 32
        offset += 8 + size + size % 2
    raise AssertionError("no bext chunk")


def _read(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize(
    ("start", "rate", "start_samples"),
    [("10:00:00:00", 25.0, 36000 * 48000), ("00:59:59;28", 29.97, round(107890 * 48000 * 1001 / 30000))],
)
def test_clips_zip(programme: Programme, tmp_path: Path, start: str, rate: float, start_samples: int) -> None:
    timeline = programme.timeline(start, rate)
    path = write_clips_zip(timeline, tmp_path)
    assert list(tmp_path.iterdir()) == [path]
    entries = _read(path)
    for language, stem, clips in (("es-es", programme.es_voice, ES_CLIPS), ("fr-fr", programme.fr_mix, FR_CLIPS)):
        rows = list(csv.DictReader(io.StringIO(entries[f"{language}/clips.csv"].decode("utf-8"))))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert [(int(r["index"]), r["speaker"], r["text"]) for r in rows] == [
            (c.number, c.speaker, c.text) for c in clips
        ]
        assert [(int(r["start_sample"]), int(r["end_sample"])) for r in rows] == [(c.start, c.end) for c in clips]
        assert [float(r["end"]) for r in rows] == pytest.approx([c.end / 48000 for c in clips], abs=1e-6)
        wavs = sorted(name for name in entries if name.startswith(f"{language}/") and name.endswith(".wav"))
        assert wavs == [f"{language}/{r['file']}" for r in rows]
        others = {f"{language}/clips.csv", f"{language}/run-7_{language}.edl"}
        assert {name for name in entries if name.startswith(f"{language}/")} == {*wavs, *others}
        stem_samples = wav_samples(stem.path)
        for clip, row in zip(clips, rows, strict=True):
            clip_path = tmp_path / row["file"]
            clip_path.write_bytes(entries[f"{language}/{row['file']}"])
            assert np.array_equal(wav_samples(clip_path), stem_samples[clip.start : clip.end]), row["file"]
            description, time_reference = _bext(clip_path.read_bytes())
            assert time_reference == start_samples + clip.start
            assert description.startswith(f"run-7 {stem.name}: {clip.number:04d}") and description.isascii()
            assert row["start_timecode"].replace(":", "").replace(";", "") == row["file"].split("_")[1]
    rows = list(csv.DictReader(io.StringIO(entries["es-es/clips.csv"].decode("utf-8"))))
    # hand-counted: a frame is 1920 samples at 25 fps, 1601.6 at 29.97; 00:59:59;28 + 2 frames is the hour
    assert [r["file"] for r in rows] == ES_FILES[start]
    assert [r["start_timecode"] for r in rows] == ES_TIMECODES[start]


EDL_EVENTS = {  # hand-counted: (name, record in, record out, source in, reel); source in = record in (the clips'
    # time stamps); an event spans the frames its samples touch, a frame two touch goes to the one starting in it
    "10:00:00:00": [
        ("0001 Alice", "10:00:00:02", "10:00:00:10", "10:00:00:02", "0001"),  # ends where Bob starts
        ("0002 Bob", "10:00:00:10", "10:00:01:02", "10:00:00:10", "0002"),
        ("0003 Carol", "10:00:01:03", "10:00:01:06", "10:00:01:03", "0003"),
        ("0004", "10:00:01:06", "10:00:01:11", "10:00:01:06", "0004"),
        ("0003 Carol", "10:00:01:11", "10:00:01:22", "10:00:01:11", "0003"),  # Carol goes on after it
        ("0005 Zoë", "10:00:02:00", "10:00:02:01", "10:00:02:00", "0005"),  # 1234 samples: part of a frame
    ],
    "00:59:59;28": [
        ("0001 Alice", "01:00:00;00", "01:00:00;10", "01:00:00;00", "0001"),
        ("0002 Bob", "01:00:00;10", "01:00:01;00", "01:00:00;10", "0002"),
        ("0003 Carol", "01:00:01;02", "01:00:01;05", "01:00:01;02", "0003"),
        ("0004", "01:00:01;05", "01:00:01;11", "01:00:01;05", "0004"),
        ("0003 Carol", "01:00:01;11", "01:00:01;25", "01:00:01;11", "0003"),
        ("0005 Zoë", "01:00:01;27", "01:00:01;29", "01:00:01;27", "0005"),
    ],
}
# non-drop 29.97 numbers every frame: the same events, labelled ':' (the EDL counts them at 30)
EDL_EVENTS["00:59:59:28"] = [tuple(v.replace(";", ":") for v in e) for e in EDL_EVENTS["00:59:59;28"]]


@pytest.mark.parametrize(("start", "rate"), [("10:00:00:00", 25.0), ("00:59:59;28", 29.97), ("00:59:59:28", 29.97)])
def test_edl_read_back(programme: Programme, tmp_path: Path, start: str, rate: float) -> None:
    timeline = programme.timeline(start, rate)
    path = write_clips_zip(timeline, tmp_path)
    text = _read(path)["es-es/run-7_es-es.edl"].decode("utf-8")
    read = otio.adapters.read_from_string(text, "cmx_3600", rate=edl_rate(timeline))
    (track,) = [t for t in read.tracks if t.kind == otio.schema.TrackKind.Audio]
    events = []
    for clip in track.find_clips():
        record = track.range_of_child(clip)  # the reader starts the track's source_range at minus the first record in
        record = otio.opentime.TimeRange(record.start_time - track.source_range.start_time, record.duration)
        events.append((
            clip.name,
            otio.opentime.to_timecode(record.start_time, edl_rate(timeline)),
            otio.opentime.to_timecode(record.end_time_exclusive(), edl_rate(timeline)),
            otio.opentime.to_timecode(clip.source_range.start_time, edl_rate(timeline)),
            clip.metadata["cmx_3600"]["reel"],
        ))  # fmt: skip
    assert events == EDL_EVENTS[start]
    assert [e[0] for e in events] == ["0001 Alice", "0002 Bob", "0003 Carol", "0004", "0003 Carol", "0005 Zoë"]
