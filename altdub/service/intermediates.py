"""Encode once (issue 17): each AAC track of a deliverable is made from an intermediate, its encoded audio.

The intermediate of a (stored dub, stream, audio options, filter chain with the loudness filter) is
encoded once, stored beside the run's inputs (``audio/<digest>.m4a``), and stream-copied into every
deliverable that carries the same stream: aac, m4a, mp4, mov, masters and HLS/DASH renditions. A
second deliverable of the same language and options runs no audio encoder, only a remux. The tracks
of a master are encoded side by side, one FFmpeg each (every core), then remuxed once.

Made once across processes: the process whose INSERT of the digest's row succeeds makes the file; any
other waits for the row to become ready (a maker that died is taken over once its claim is older than
a task's time limit). The storage lifecycle counts and removes intermediates as it does exports
(``lifecycle.py``); a use marks the row first, so no sweep removes one that a remux is about to read.
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
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from altdub.db.models import AudioIntermediate, ExportTask, Run
from altdub.media.ffmpeg import FFmpegCancelled, FFmpegTimeout, run_ffmpeg
from altdub.media.formats import (
    AAC_FORMATS,
    INTERMEDIATE_EXTENSION,
    AudioTrack,
    ExportInputs,
    audio_chain,
    intermediate_plan,
    samples_unchanged,
)
from altdub.media.options import ExportOptions
from altdub.media.probe import StreamInfo
from altdub.service.context import Context, TaskCancel

log = logging.getLogger(__name__)

WAIT_SECONDS = 0.25  # how often a process waiting for another's intermediate reads its row
ENCODE_SHARE = 0.9  # of the task's progress: the encodes; the remux takes the rest


def uses_intermediates(output_format: str) -> bool:
    return output_format in AAC_FORMATS


@contextmanager
def encoded_inputs(
    ctx: Context,
    task: ExportTask,
    inputs: ExportInputs,
    options: ExportOptions,
    cancel: TaskCancel,
    on_progress: Callable[[float], None],
) -> Iterator[ExportInputs]:
    """``inputs`` with every audio track replaced by its intermediate, to copy (made now, side by side, or reused).

    The intermediates' files stay readable until the context ends (a local copy of remote storage).
    """
    tracks = inputs.audio_tracks(options)
    progress = _Progress(len(tracks), on_progress)
    with ctx.sessions() as session:
        run = session.get(Run, task.run_id)
        if run is None:  # deleted meanwhile: nothing to encode for
            raise FFmpegCancelled("the run was deleted")
        folder = f"{run.storage_prefix}audio/"

    def stored(number: int) -> str:
        return _stored(ctx, task, folder, tracks[number], options, inputs.duration, cancel, progress.part(number))

    workers = max(1, min(len(tracks), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="intermediate") as pool:
        keys = list(pool.map(stored, range(len(tracks))))
    with ExitStack() as stack:
        paths = [stack.enter_context(ctx.storage.local_copy(key)) for key in keys]
        encoded = [_as_encoded(t, p, options, inputs.duration) for t, p in zip(tracks, paths, strict=True)]
        yield inputs.with_audio(encoded)


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


def _stored(
    ctx: Context,
    task: ExportTask,
    folder: str,
    track: AudioTrack,
    options: ExportOptions,
    duration: float,
    cancel: TaskCancel,
    on_progress: Callable[[float], None],
) -> str:
    """The storage key of the track's intermediate (in ``folder``, beside the run's inputs: deleted with them, and
    apart from its exports: a failed export leaves none of its files): ready already, made here, or elsewhere."""
    name = digest(task.run_id, track, options, duration)
    key = f"{folder}{name}.{INTERMEDIATE_EXTENSION}"
    deadline = time.monotonic() + ctx.settings.task_time_limit
    while True:
        state = _claim(ctx, name, task, key)
        if state == "ready":
            on_progress(1.0)
            return key
        if state == "mine":
            try:
                size = _make(ctx, track, options, duration, key, cancel, on_progress)
            except BaseException:
                _release(ctx, name)
                raise
            _publish(ctx, name, key, size)
            return key
        if cancel.is_set():
            raise FFmpegCancelled("cancelled while another process encodes the same audio")
        if time.monotonic() > deadline:
            limit = ctx.settings.task_time_limit
            raise FFmpegTimeout(f"the same audio, encoded elsewhere, was not ready within {limit:g} s")
        time.sleep(WAIT_SECONDS)


def _claim(ctx: Context, name: str, task: ExportTask, key: str) -> str:
    """``ready`` (its use recorded), ``mine`` (this process makes it) or ``theirs`` (another does)."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        used = session.execute(
            update(AudioIntermediate)
            .where(AudioIntermediate.id == name, AudioIntermediate.ready_at.is_not(None))
            .values(last_used_at=now)
        ).rowcount
        if used == 1:
            return "ready"
        abandoned = now - timedelta(seconds=ctx.settings.task_time_limit + 60)
        taken = session.execute(
            update(AudioIntermediate)
            .where(
                AudioIntermediate.id == name,
                AudioIntermediate.ready_at.is_(None),
                AudioIntermediate.claimed_at < abandoned,
            )
            .values(claimed_at=now)
        ).rowcount
        if taken == 1:
            log.info("intermediate %s: its maker stopped; made here", name)
            return "mine"
    try:
        with ctx.sessions.begin() as session:
            session.add(
                AudioIntermediate(
                    id=name, workspace_id=task.workspace_id, run_id=task.run_id, storage_key=key, claimed_at=now
                )
            )
    except IntegrityError:  # another process claimed it first (or it exists: read again)
        return "theirs"
    return "mine"


def _make(
    ctx: Context,
    track: AudioTrack,
    options: ExportOptions,
    duration: float,
    key: str,
    cancel: TaskCancel,
    on_progress: Callable[[float], None],
) -> int:
    """Encode the track into scratch and store it (atomically: readers see no file or the whole); its size."""
    scratch = Path(tempfile.mkdtemp(prefix="intermediate-", dir=ctx.settings.staging_dir))
    try:
        output = scratch / f"audio.{INTERMEDIATE_EXTENSION}"
        run_ffmpeg(
            intermediate_plan(track, options, duration, output),
            duration=duration,
            on_progress=on_progress,
            time_limit=ctx.settings.task_time_limit,
            cancel=cancel,
        )
        return ctx.storage.put_file(key, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _publish(ctx: Context, name: str, key: str, size: int) -> None:
    """Mark the stored intermediate ready; when its row went with its run meanwhile, drop the file."""
    now = ctx.clock()
    with ctx.sessions.begin() as session:
        marked = session.execute(
            update(AudioIntermediate)
            .where(AudioIntermediate.id == name)
            .values(ready_at=now, last_used_at=now, size=size)
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
