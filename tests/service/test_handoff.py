"""A run's hand-off timeline (service/handoff.py), from runs held in memory: stems, start timecode, clips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from altdub import languages
from altdub.db.models import FileRole, Run, RunFile, Transcript
from altdub.media.options import resolve_options
from altdub.media.probe import MediaInfo, StreamInfo
from altdub.media.timeline import Clip
from altdub.service import handoff

ES, FR, EN = (languages.lookup(code) for code in ("es-es", "fr-fr", "en-us"))
SECONDS = 4.0


def _probe(channels: int = 2, frame_rate: float | None = None, timecode: str | None = None) -> dict[str, object]:
    streams = [StreamInfo(index=0, kind="audio", codec="flac", duration=SECONDS, sample_rate=44100, channels=channels)]
    if frame_rate is not None:
        streams.insert(0, StreamInfo(index=0, kind="video", codec="h264", frame_rate=frame_rate))
        streams[1] = StreamInfo(index=1, kind="audio", codec="aac", duration=SECONDS, sample_rate=48000, channels=2)
    return MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", SECONDS, streams, {}, timecode).to_json()


def _file(role: FileRole, language: languages.Language | None, probe: dict[str, object]) -> RunFile:
    slot = role.value if language is None else f"{role.value}_{language.short_name}"
    return RunFile(role=role.value, language_id=language.id if language else None, storage_key=slot, probe=probe)


def _run(*files: RunFile, transcripts: dict[languages.Language, list[dict[str, object]]] | None = None) -> Run:
    run = Run(id=7, name="Episode 4", source_language_id=EN.id, has_video=True, duration=SECONDS)
    run.created_at = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)
    run.files = list(files)
    run.transcripts = [Transcript(language_id=lang.id, segments=s) for lang, s in (transcripts or {}).items()]
    return run


def _plan(run: Run, chosen: list[languages.Language], scratch: Path, **requested: object) -> handoff.HandoffPlan:
    dub = MediaInfo.from_json(run.file(FileRole.DUB, chosen[0].id).probe).audio[0]  # type: ignore[union-attr]
    options = resolve_options("tracks_zip", requested, dub)
    paths = {f.storage_key: scratch / f"stored-{f.storage_key}" for f in run.files}
    return handoff.plan(run, chosen, options, paths, scratch)


def _full(timecode: str | None = "10:00:00:00", frame_rate: float = 25.0) -> Run:
    return _run(
        _file(FileRole.SOURCE, None, _probe(frame_rate=frame_rate, timecode=timecode)),
        _file(FileRole.DUB, ES, _probe()),
        _file(FileRole.DUB, FR, _probe(channels=1)),
        _file(FileRole.VOICE, ES, _probe(channels=1)),
        _file(FileRole.BACKGROUND, None, _probe()),
        transcripts={
            ES: [
                {"start": 0.5, "end": 1.25, "text": "Hola.", "speaker": "Ana"},
                {"start": 1.5, "end": 2.0001, "text": "¿Qué?", "speaker": ""},
                {"start": 3.99, "end": 4.04, "text": "Fin.", "speaker": "Luis"},  # past the end by 40 ms
            ]
        },
    )


def test_stems_in_track_order_named_as_spec_5_says(tmp_path: Path) -> None:
    timeline = _plan(_full(), [FR, ES], tmp_path).timeline
    got = [(s.path.name, s.role, s.language, s.channels, s.name) for s in timeline.stems]
    assert got == [
        ("run-7_fr-fr_mix.wav", "mix", "fr-fr", 1, "French (France) mix"),
        ("run-7_es-es_mix.wav", "mix", "es-es", 2, "Spanish (Spain) mix"),
        ("run-7_es-es_voice.wav", "voice", "es-es", 1, "Spanish (Spain) voice"),
        ("run-7_ME.wav", "me", None, 2, "M&E"),
        ("run-7_en-us_original.wav", "original", "en-us", 2, "English (United States) original"),
    ]
    assert all(stem.path.parent == tmp_path for stem in timeline.stems)
    assert (timeline.name, timeline.duration, timeline.sample_rate) == ("run-7", 192_000, 48_000)


def test_each_stem_reads_its_stored_file(tmp_path: Path) -> None:
    args = _plan(_full(), [ES], tmp_path).args
    inputs = [args[i + 1] for i, arg in enumerate(args) if arg == "-i"]
    stored = ["dub_es-es", "voice_es-es", "background", "source"]
    assert inputs == [f"file:{tmp_path / f'stored-{name}'}" for name in stored]
    graphs = args[args.index("-filter_complex") + 1].split(";")
    assert [g.split("]")[0] for g in graphs] == ["[0:0", "[1:0", "[2:0", "[3:1"]  # the source's audio: stream 1


def test_a_run_without_stems_or_source_has_its_mixes_only(tmp_path: Path) -> None:
    run = _run(_file(FileRole.DUB, ES, _probe()), _file(FileRole.DUB, FR, _probe()))
    timeline = _plan(run, [ES, FR], tmp_path).timeline
    assert [s.path.name for s in timeline.stems] == ["run-7_es-es_mix.wav", "run-7_fr-fr_mix.wav"]
    assert (timeline.start_timecode, timeline.frame_rate, timeline.clips) == ("00:00:00:00", 25.0, ())


@pytest.mark.parametrize(
    ("source_timecode", "frame_rate", "option", "start"),
    [
        ("10:00:00:00", 25.0, None, "10:00:00:00"),  # the source's own
        ("10:00:00:00", 25.0, "01:00:00:00", "01:00:00:00"),  # the option wins
        (None, 25.0, None, "00:00:00:00"),  # neither: midnight
        ("01:00:00;00", 30000 / 1001, None, "01:00:00;00"),  # drop-frame kept
        ("00:00:00:29", 25.0, None, "00:00:00:00"),  # a source timecode invalid at its rate is not used
    ],
)
def test_start_timecode(
    tmp_path: Path, source_timecode: str | None, frame_rate: float, option: str | None, start: str
) -> None:
    requested = {"start_timecode": option} if option else {}
    timeline = _plan(_full(source_timecode, frame_rate), [ES], tmp_path, **requested).timeline
    assert (timeline.start_timecode, timeline.frame_rate) == (start, frame_rate)


def test_an_audio_source_counts_in_ebu_frames(tmp_path: Path) -> None:
    run = _run(_file(FileRole.SOURCE, None, _probe()), _file(FileRole.DUB, ES, _probe()))
    timeline = _plan(run, [ES], tmp_path, start_timecode="00:59:59:24").timeline
    assert (timeline.frame_rate, timeline.start_samples) == (25.0, (3599 * 25 + 24) * 1920)
    assert [s.role for s in timeline.stems] == ["mix", "original"]


def test_clips_cut_from_the_voice_stem_in_samples(tmp_path: Path) -> None:
    timeline = _plan(_full(), [FR, ES], tmp_path).timeline
    assert [c.language for c in timeline.clips] == ["es-es"]  # fr-fr has no transcript
    spanish = timeline.clips[0]
    assert spanish.stem.path.name == "run-7_es-es_voice.wav"
    assert spanish.clips == (
        Clip(1, 24_000, 60_000, "Ana", "Hola."),
        Clip(2, 72_000, 96_005, "", "¿Qué?"),  # 2.0001 s is sample 96004.8
        Clip(3, 191_520, 192_000, "Luis", "Fin."),  # ends with the programme
    )


def test_clips_without_a_voice_stem_are_cut_from_the_mix(tmp_path: Path) -> None:
    segments = [{"start": 1.0, "end": 2.0, "text": "Bonjour", "speaker": "Marie"}]
    run = _run(_file(FileRole.DUB, ES, _probe()), _file(FileRole.DUB, FR, _probe()), transcripts={FR: segments})
    (french,) = _plan(run, [ES, FR], tmp_path).timeline.clips
    assert (french.language, french.stem.path.name) == ("fr-fr", "run-7_fr-fr_mix.wav")
    assert french.clips == (Clip(1, 48_000, 96_000, "Marie", "Bonjour"),)
