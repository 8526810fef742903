"""Encode once (issue 17): a dub's AAC audio is encoded once per (file, options) and stream-copied into every
deliverable that carries it. Real FFmpeg runs; a spy on process starts counts the audio encoders that ran."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import threading
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import undefer

from altdub.db.models import AudioIntermediate
from altdub.media.ffmpeg import run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, build_plan, intermediate_plan
from altdub.media.options import resolve_options
from altdub.media.probe import probe
from altdub.service import intermediates
from tests.conftest import Media, auth, download, export, make_run, wait_for_task


def _spy_commands(monkeypatch: pytest.MonkeyPatch, wanted: Any) -> list[list[str]]:
    """The FFmpeg commands started from now on for which ``wanted(command)`` holds (the real processes run)."""
    seen: list[list[str]] = []
    lock = threading.Lock()
    real = subprocess.Popen

    def spy(args: Any, *rest: Any, **options: Any) -> subprocess.Popen:
        command = [str(a) for a in args]
        if wanted(command):
            with lock:
                seen.append(command)
        return real(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", spy)
    return seen


@pytest.fixture
def aac_encodes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The FFmpeg commands started from now on that encode audio to AAC."""
    return _spy_commands(monkeypatch, lambda command: any(
        a.startswith("-c:a") and b == "aac" for a, b in itertools.pairwise(command)
    ))  # fmt: skip


@pytest.fixture
def meter_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The FFmpeg commands started from now on that run the QC meter (media/meter.py: ebur128 in a graph)."""
    return _spy_commands(monkeypatch, lambda command: any("ebur128" in a for a in command))


def _audio_packets(path: Path) -> str:
    """A digest of the audio stream's packets: the AAC frames, without ADTS's own headers."""
    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for packet in container.demux(audio=0):
            data = bytes(packet)
            if data[:2] in (b"\xff\xf1", b"\xff\xf9"):  # an ADTS frame: a 7-byte header (9 with its CRC)
                data = data[7 if data[1] & 1 else 9 :]
            if data:
                digest.update(data)
    return digest.hexdigest()


def _file(client: TestClient, key: str, run_id: int, output_format: str, tmp_path: Path) -> Path:
    status = export(client, key, run_id, "es-es", output_format)
    assert status["status"] == "SUCCESS", status
    return download(client, status["output_url"], tmp_path / f"out.{output_format}")


def test_a_second_deliverable_of_the_same_dub_and_options_runs_no_audio_encoder(
    client: TestClient, api_key: str, media: Media, tmp_path: Path, aac_encodes: list[list[str]]
) -> None:
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    mp4 = _file(client, api_key, run_id, "mp4", tmp_path)
    assert len(aac_encodes) == 1, aac_encodes  # the mp4 encodes its audio itself, kept as the intermediate
    assert "-c:v" in aac_encodes[0], "the mp4 was a remux after a separate encode: two runs, not one"
    packets = {"mp4": _audio_packets(mp4)}
    for output_format in ("m4a", "mov", "aac"):
        packets[output_format] = _audio_packets(_file(client, api_key, run_id, output_format, tmp_path))
    assert len(aac_encodes) == 1, f"an audio encoder ran again: {aac_encodes[1:]}"
    assert len(set(packets.values())) == 1, packets  # one stream, copied into each

    # and it is the stream a direct encode writes (the plan without an intermediate)
    dub, source = probe(media.dub_wav), probe(media.video)
    inputs = ExportInputs(
        dubs=(AudioTrack(media.dub_wav, dub.audio[0], dub.duration, "spa"),),
        duration=source.duration,
        title="t",
        video_path=media.video,
        video=source.video[0],
    )
    direct = tmp_path / "direct.mp4"
    run_ffmpeg(build_plan("mp4", inputs, resolve_options("mp4", {}, dub.audio[0]), direct).args)
    assert _audio_packets(direct) == packets["mp4"]


def test_a_padded_dub_made_in_place_is_the_stream_its_copies_carry(
    client: TestClient, api_key: str, media: Media, tmp_path: Path, aac_encodes: list[list[str]]
) -> None:
    """A dub 50 ms short is padded (a filter graph): the mp4 encodes it in place, the m4a copies that stream,
    and both hold the stream the intermediate's own plan writes."""
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_short_ok})
    mp4 = _file(client, api_key, run_id, "mp4", tmp_path)
    m4a = _file(client, api_key, run_id, "m4a", tmp_path)
    assert len(aac_encodes) == 1 and "-filter_complex" in aac_encodes[0], aac_encodes
    assert _audio_packets(mp4) == _audio_packets(m4a)
    dub, source = probe(media.dub_short_ok), probe(media.video)
    track = AudioTrack(media.dub_short_ok, dub.audio[0], dub.duration, "spa")
    alone = tmp_path / "alone.m4a"
    run_ffmpeg(intermediate_plan(track, resolve_options("mp4", {}, dub.audio[0]), source.duration, alone))
    assert _audio_packets(alone) == _audio_packets(mp4)
    assert abs(probe(m4a).duration - source.duration) < 0.03


def test_other_options_make_another_intermediate(
    client: TestClient, api_key: str, media: Media, aac_encodes: list[list[str]]
) -> None:
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    assert export(client, api_key, run_id, "es-es", "mp4")["status"] == "SUCCESS"
    answer = client.post(
        f"/dub-alt-format/{run_id}/es-es", headers=auth(api_key), json={"output_format": "m4a", "audio_bitrate": "96k"}
    ).json()
    assert wait_for_task(client, api_key, answer["task_id"])["status"] == "SUCCESS"
    assert len(aac_encodes) == 2 and ("96000" in aac_encodes[1])


def test_two_deliverables_asked_at_once_encode_once(
    client: TestClient, api_key: str, media: Media, aac_encodes: list[list[str]]
) -> None:
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    tasks = [
        client.post(f"/dub-alt-format/{run_id}/es-es", headers=auth(api_key), json={"output_format": f}).json()
        for f in ("mp4", "mov")
    ]  # two workers: both conversions start together and claim the same intermediate
    assert [wait_for_task(client, api_key, t["task_id"])["status"] for t in tasks] == ["SUCCESS", "SUCCESS"]
    assert len(aac_encodes) == 1, aac_encodes


def test_a_master_encodes_only_the_languages_not_encoded_yet_and_packages_reuse_them(
    client: TestClient, api_key: str, media: Media, aac_encodes: list[list[str]]
) -> None:
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac})
    assert export(client, api_key, run_id, "es-es", "mp4")["status"] == "SUCCESS"
    assert len(aac_encodes) == 1
    body = {"output_format": "mp4", "languages": ["es-es", "fr-fr"]}
    answer = client.post(f"/runs/{run_id}/exports", headers=auth(api_key), json=body).json()
    assert wait_for_task(client, api_key, answer["task_id"])["status"] == "SUCCESS"
    assert len(aac_encodes) == 2 and file_arg_of(aac_encodes[1]).endswith(".flac")  # French only
    body = {"output_format": "hls", "languages": ["es-es", "fr-fr"], "audio_bitrate": "192k"}
    answer = client.post(f"/runs/{run_id}/exports", headers=auth(api_key), json=body).json()
    assert wait_for_task(client, api_key, answer["task_id"])["status"] == "SUCCESS"
    assert len(aac_encodes) == 2, "the package encoded its renditions again"


def file_arg_of(command: list[str]) -> str:
    return command[command.index("-i") + 1]


def _stored_intermediates(client: TestClient) -> list[AudioIntermediate]:
    ready = select(AudioIntermediate).where(AudioIntermediate.ready_at.is_not(None))
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        return list(session.scalars(ready.options(undefer(AudioIntermediate.reading))))


def test_the_meter_runs_once_per_stream_and_copies_reuse_its_reading(
    client: TestClient, api_key: str, media: Media, tmp_path: Path, meter_runs: list[list[str]]
) -> None:
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})

    def report(output_format: str) -> dict[str, Any]:
        """The QC report of a new export of the run's Spanish dub."""
        path = f"/dub-alt-format/{run_id}/es-es"
        task_id = client.post(path, headers=auth(api_key), json={"output_format": output_format}).json()["task_id"]
        assert wait_for_task(client, api_key, task_id)["status"] == "SUCCESS"
        return client.get(f"/runs/{run_id}/exports/{task_id}/qc", headers=auth(api_key)).json()

    reports = {"mp4": report("mp4")}
    assert len(meter_runs) == 1 and "-dec" in meter_runs[0], meter_runs  # on the mp4's own encoder (a tap)
    [stored] = _stored_intermediates(client)
    assert stored.reading is not None and stored.reading["integrated"] < 0
    reports |= {output_format: report(output_format) for output_format in ("m4a", "mov")}
    assert len(meter_runs) == 1, f"the copied stream was measured again: {meter_runs[1:]}"
    figures = {f: (r["tracks"][0]["integrated"], r["tracks"][0]["true_peak"]) for f, r in reports.items()}
    assert len(set(figures.values())) == 1, figures  # one reading, of the packets each file holds


def test_a_master_measures_each_language_as_it_is_encoded_and_a_package_reuses_the_readings(
    client: TestClient, api_key: str, media: Media, meter_runs: list[list[str]], aac_encodes: list[list[str]]
) -> None:
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav, "dub_fr-fr": media.dub_flac})
    for output_format in ("mp4", "hls"):
        body = {"output_format": output_format, "languages": ["es-es", "fr-fr"], "audio_bitrate": "192k"}
        answer = client.post(f"/runs/{run_id}/exports", headers=auth(api_key), json=body).json()
        assert wait_for_task(client, api_key, answer["task_id"])["status"] == "SUCCESS"
    assert len(aac_encodes) == 2 and all("-dec" in c for c in aac_encodes), aac_encodes  # each with its meter
    assert len(meter_runs) == 2, meter_runs  # the same two runs: nothing measured after, nor for the package
    assert all(row.reading is not None for row in _stored_intermediates(client))


def test_an_intermediate_not_kept_from_its_deliverable_is_made_by_the_next(
    client: TestClient, api_key: str, media: Media, monkeypatch: pytest.MonkeyPatch, aac_encodes: list[list[str]]
) -> None:
    """Copying the stream out of the mp4 fails (a stream the file has not): the mp4 is delivered all the same,
    and the claim is given up, so the next deliverable encodes the audio."""
    monkeypatch.setattr(
        intermediates, "intermediate_from_plan", lambda deliverable, output: ["-i", str(deliverable), "-map", "0:a:7",
                                                                            "-c", "copy", str(output)]
    )  # fmt: skip
    run_id = make_run(client, api_key, {"source": media.video, "dub_es-es": media.dub_wav})
    assert export(client, api_key, run_id, "es-es", "mp4")["status"] == "SUCCESS"
    assert _stored_intermediates(client) == []
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(AudioIntermediate)).all() == []  # no claim left behind
    assert export(client, api_key, run_id, "es-es", "m4a")["status"] == "SUCCESS"
    assert len(aac_encodes) == 2, aac_encodes
