"""Encode once (issue 17): each AAC track of a deliverable is made from an intermediate, its encoded audio.

The intermediate of a (stored dub, stream, audio options, filter chain with the loudness filter) is
encoded once, stored beside the run's inputs (``audio/<digest>.m4a``), and stream-copied into every
deliverable that carries the same stream: aac, m4a, mp4, mov, masters and HLS/DASH renditions. A
second deliverable of the same language and options runs no audio encoder, only a remux. The tracks
of a master are encoded side by side, one FFmpeg each (every core), then remuxed once. A deliverable
of one track in an ISO BMFF file (mp4, mov, m4a) whose intermediate does not exist yet encodes it
itself, in its one FFmpeg run (``InPlace``): its audio stream is then copied out as the intermediate,
so the first deliverable costs what a plain encode costs, not an encode and a remux.

The QC meter rides on the encode that makes an intermediate, and its reading is kept with it: a
deliverable that copies the stream reuses the reading instead of measuring the same packets again.

Made once across processes: the process whose INSERT of the digest's row succeeds makes the file; any
other waits for the row to become ready (a maker that died is taken over by its own task's re-run, or by
anyone once its claim is older than a task's time limit). The storage lifecycle counts and removes
intermediates as it does exports (``lifecycle.py``); a use marks the row first, so no sweep removes one
that a remux is about to read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from altdub.db.models import AudioIntermediate, ExportTask, Run
from altdub.media import meter
from altdub.media.ffmpeg import FFmpegCancelled, FFmpegError, FFmpegTimeout, run_ffmpeg
from altdub.media.formats import (
    AAC_FORMATS,
    INTERMEDIATE_EXTENSION,
    INTERMEDIATE_HOLDERS,
    AudioTrack,
    ExportInputs,
    audio_chain,
    intermediate_from_plan,
    intermediate_plan,
    samples_unchanged,
)
from altdub.media.meter import Reading
from altdub.media.options import ExportOptions
from altdub.media.probe import StreamInfo
from altdub.service import qc
from altdub.service.context import Context, TaskCancel
from altdub.storage import StorageError

log = logging.getLogger(__name__)

WAIT_SECONDS = 0.25  # how often a process waiting for another's intermediate reads its row
ENCODE_SHARE = 0.9  # of the task's progress: the encodes; the remux takes the rest


def uses_intermediates(output_format: str) -> bool:
    return output_format in AAC_FORMATS


@dataclass(frozen=True)
class Encoded:
    """What an export's FFmpeg run is given for its audio."""

    inputs: ExportInputs  # each audio track replaced by its intermediate, to copy; as asked when made in place
    readings: list[Reading] | None  # each intermediate's reading, taken as it was encoded (None: not each has one)
    in_place: InPlace | None  # the run encodes its one track itself, and keeps it after (``InPlace.keep``)


class InPlace:
    """The claim on a track's intermediate that the deliverable makes itself, in its own FFmpeg run.

    ``keep`` copies the deliverable's audio out as the intermediate and marks it ready with the meter's
    reading of that run; a claim not kept is given up when ``encoded_inputs`` ends, so another makes it.
    """

    def __init__(self, ctx: Context, name: str, key: str, cancel: TaskCancel) -> None:
        self._ctx, self._name, self._key, self._cancel = ctx, name, key, cancel
        self.kept = False

    def keep(self, deliverable: Path, reading: Reading | None) -> None:
        """Store the deliverable's audio stream as the intermediate (a failure loses the reuse, not the export)."""
        scratch = Path(tempfile.mkdtemp(prefix="intermediate-", dir=self._ctx.settings.staging_dir))
        try:
            output = scratch / f"audio.{INTERMEDIATE_EXTENSION}"
            run_ffmpeg(
                intermediate_from_plan(deliverable, output),
                time_limit=self._ctx.settings.task_time_limit,
                cancel=self._cancel,
            )
            size = self._ctx.storage.put_file(self._key, output)
        except (FFmpegError, StorageError) as exc:
            if isinstance(exc, FFmpegCancelled):
                raise
            log.warning("intermediate %s not kept from its deliverable: %s", self._name, exc)
            return
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _publish(self._ctx, self._name, self._key, size, reading)
        self.kept = True


@contextmanager
def encoded_inputs(
    ctx: Context,
    task: ExportTask,
    inputs: ExportInputs,
    options: ExportOptions,
    cancel: TaskCancel,
    on_progress: Callable[[float], None],
) -> Iterator[Encoded]:
    """``inputs`` with every audio track replaced by its intermediate, to copy (made now, side by side, or reused),
    or, for one track made in place, ``inputs`` as they are.

    The intermediates' files stay readable until the context ends (a local copy of remote storage).
    """
    tracks = inputs.audio_tracks(options)
    measured = qc.readings_wanted(ctx.settings.qc_reports, options)
    with ctx.sessions() as session:
        run = session.get(Run, task.run_id)
        if run is None:  # deleted meanwhile: nothing to encode for
            raise FFmpegCancelled("the run was deleted")
        folder = f"{run.storage_prefix}audio/"
    if task.output_format in INTERMEDIATE_HOLDERS and len(tracks) == 1:
        name = digest(task.run_id, tracks[0], options, inputs.duration)
        key = f"{folder}{name}.{INTERMEDIATE_EXTENSION}"
        if _claim(ctx, name, task, key, measured=False).state == "mine":  # else as below (its reading read there)
            in_place = InPlace(ctx, name, key, cancel)
            try:
                yield Encoded(inputs, None, in_place)
            finally:
                if not in_place.kept:
                    _release(ctx, name)
            return
    progress = _Progress(len(tracks), on_progress)

    def stored(number: int) -> _Claim:
        track = tracks[number]
        return _stored(ctx, task, folder, track, options, inputs.duration, measured, cancel, progress.part(number))

    workers = max(1, min(len(tracks), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="intermediate") as pool:
        claims = list(pool.map(stored, range(len(tracks))))
    readings = [claim.reading for claim in claims]
    with ExitStack() as stack:
        paths = [stack.enter_context(ctx.storage.local_copy(claim.key)) for claim in claims]
        encoded = [_as_encoded(t, p, options, inputs.duration) for t, p in zip(tracks, paths, strict=True)]
        known = None if None in readings else [r for r in readings if r is not None]
        yield Encoded(inputs.with_audio(encoded), known, None)


def remux_progress(on_progress: Callable[[float], None]) -> Callable[[float], None]:
    """The remux's share of the task's progress, after the encodes'."""
    return lambda fraction: on_progress(ENCODE_SHARE + (1 - ENCODE_SHARE) * fraction)


def digest(run_id: int, track: AudioTrack, options: ExportOptions, duration: float) -> str:
    """What makes the encoded stream: the stored file (run, name, size), its stream, the samples' chain and the
    encoder's settings. The same digest is the same packets."""
    chain = None if samples_unchanged(track, options, duration) else audio_chain(track, options, duration)
    made_of = {
        "run": run_id,
        "file": track.path.name,
        "bytes": track.path.stat().st_size,
        "stream": track.stream.index,
        "chain": chain,
        "duration": f"{duration:.6f}",
        "codec": "aac_low",
        "bitrate": options.audio_bitrate,
        "rate": options.sample_rate,
        "channels": options.channels,
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()


def _as_encoded(track: AudioTrack, path: Path, options: ExportOptions, duration: float) -> AudioTrack:
    stream = StreamInfo(
        index=0,
        kind="audio",
        codec="aac",
        duration=duration,
        sample_rate=options.sample_rate,
        channels=options.channels,
    )
    return replace(track, path=path, stream=stream, duration=duration, loudnorm=None, encoded=True)


@dataclass(frozen=True)
class _Claim:
    state: str  # ``ready`` (its use recorded), ``mine`` (this process makes it) or ``theirs`` (another does)
    key: str
    reading: Reading | None = None  # a ready one's, when it has one and it is wanted


def _stored(
    ctx: Context,
    task: ExportTask,
    folder: str,
    track: AudioTrack,
    options: ExportOptions,
    duration: float,
    measured: bool,
    cancel: TaskCancel,
    on_progress: Callable[[float], None],
) -> _Claim:
    """The track's intermediate, ready (in ``folder``, beside the run's inputs: deleted with them, and apart from
    its exports: a failed export leaves none of its files): ready already, made here, or elsewhere. ``measured``:
    its reading is wanted (a QC report or a loudness target), taken as it is made here."""
    name = digest(task.run_id, track, options, duration)
    key = f"{folder}{name}.{INTERMEDIATE_EXTENSION}"
    deadline = time.monotonic() + ctx.settings.task_time_limit
    while True:
        claim = _claim(ctx, name, task, key, measured)
        if claim.state == "ready":
            on_progress(1.0)
            return claim
        if claim.state == "mine":
            try:
                size, reading = _make(ctx, track, options, duration, key, measured, cancel, on_progress)
            except BaseException:
                _release(ctx, name)
                raise
            _publish(ctx, name, key, size, reading)
            return _Claim("ready", key, reading)
        if cancel.is_set():
            raise FFmpegCancelled("cancelled while another process encodes the same audio")
        if time.monotonic() > deadline:
            limit = ctx.settings.task_time_limit
            raise FFmpegTimeout(f"the same audio, encoded elsewhere, was not ready within {limit:g} s")
        time.sleep(WAIT_SECONDS)


def _claim(ctx: Context, name: str, task: ExportTask, key: str, measured: bool) -> _Claim:
    """Ready (its use recorded, its reading read when ``measured``), this process's to make, or another's."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        used = session.execute(
            update(AudioIntermediate)
            .where(AudioIntermediate.id == name, AudioIntermediate.ready_at.is_not(None))
            .values(last_used_at=now)
        ).rowcount
        if used == 1:
            stored = None
            if measured:
                stored = session.scalar(select(AudioIntermediate.reading).where(AudioIntermediate.id == name))
            return _Claim("ready", key, Reading.from_dict(stored) if stored else None)
        abandoned = now - timedelta(seconds=ctx.settings.task_time_limit + 60)
        taken = session.execute(
            update(AudioIntermediate)
            .where(
                AudioIntermediate.id == name,
                AudioIntermediate.ready_at.is_(None),
                # its maker stopped long ago, or was this very task, run again after its process died
                (AudioIntermediate.claimed_at < abandoned) | (AudioIntermediate.claimed_by == task.id),
            )
            .values(claimed_at=now, claimed_by=task.id)
        ).rowcount
        if taken == 1:
            log.info("intermediate %s: its maker stopped; made here", name)
            return _Claim("mine", key)
    try:
        with ctx.sessions.begin() as session:
            session.add(
                AudioIntermediate(
                    id=name,
                    workspace_id=task.workspace_id,
                    run_id=task.run_id,
                    storage_key=key,
                    claimed_at=now,
                    claimed_by=task.id,
                )
            )
    except IntegrityError:  # another process claimed it first (or it exists: read again)
        return _Claim("theirs", key)
    return _Claim("mine", key)


def _make(
    ctx: Context,
    track: AudioTrack,
    options: ExportOptions,
    duration: float,
    key: str,
    measured: bool,
    cancel: TaskCancel,
    on_progress: Callable[[float], None],
) -> tuple[int, Reading | None]:
    """Encode the track into scratch (the meter on the encoder's output when ``measured``) and store it
    (atomically: readers see no file or the whole); its size and the meter's reading."""
    scratch = Path(tempfile.mkdtemp(prefix="intermediate-", dir=ctx.settings.staging_dir))
    try:
        output = scratch / f"audio.{INTERMEDIATE_EXTENSION}"
        tap = meter.Tap(scratch, [["0:0"]], duration) if measured else None
        args = intermediate_plan(track, options, duration, output)
        run_ffmpeg(
            [*args, *tap.args()] if tap else args,
            duration=duration,
            on_progress=on_progress,
            time_limit=ctx.settings.task_time_limit,
            cancel=cancel,
        )
        reading = tap.readings()[0] if tap else None
        return ctx.storage.put_file(key, output), reading
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _publish(ctx: Context, name: str, key: str, size: int, reading: Reading | None) -> None:
    """Mark the stored intermediate ready, with its reading; when its row went with its run meanwhile, drop the file."""
    now = ctx.clock()
    stored = reading.as_dict() if reading else None
    with ctx.sessions.begin() as session:
        marked = session.execute(
            update(AudioIntermediate)
            .where(AudioIntermediate.id == name)
            .values(ready_at=now, last_used_at=now, size=size, reading=stored)
        ).rowcount
    if marked != 1:
        ctx.storage.delete_prefix(key)


def _release(ctx: Context, name: str) -> None:
    """Give the claim up (the encode failed or was stopped): the next to ask makes it."""
    with ctx.sessions.begin() as session:
        session.execute(
            delete(AudioIntermediate).where(AudioIntermediate.id == name, AudioIntermediate.ready_at.is_(None))
        )


class _Progress:
    """The encodes' progress as one fraction (their mean), scaled to their share of the task's."""

    def __init__(self, parts: int, on_progress: Callable[[float], None]) -> None:
        self._fractions = [0.0] * parts
        self._on_progress = on_progress
        self._lock = threading.Lock()

    def part(self, number: int) -> Callable[[float], None]:
        def report(fraction: float) -> None:
            with self._lock:
                self._fractions[number] = fraction
                mean = sum(self._fractions) / len(self._fractions)
            self._on_progress(ENCODE_SHARE * mean)

        return report
