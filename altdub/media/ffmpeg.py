"""The one place that runs FFmpeg: argument lists only (never a shell), progress, time limit."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import imageio_ffmpeg

_POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1
_MAX_LOG = 1 << 20  # bytes of FFmpeg's log kept: measurements print a few hundred


class FFmpegError(Exception):
    """FFmpeg exited non-zero; the message is the tail of what it printed."""


class FFmpegTimeout(FFmpegError):
    """FFmpeg ran past its time limit and was killed."""


class FFmpegCancelled(FFmpegError):
    """FFmpeg was killed because the process is shutting down."""


@dataclass(frozen=True)
class Limits:
    """How long one FFmpeg run may take, and what stops it early: a task's own limits, handed down."""

    time_limit: float | None = None
    cancel: threading.Event | None = None


@dataclass(frozen=True)
class FFmpegRun:
    """What a finished FFmpeg run left: its log, and how much media it wrote by its own count."""

    log: str
    written_seconds: float | None  # the output's end time, from FFmpeg's last progress report


class _ProgressReader(threading.Thread):
    """Reads FFmpeg's ``-progress`` report: passes the fraction done on, keeps the last time written.

    The report comes in blocks of ``key=value`` lines, each ending ``progress=continue`` or, the
    last, ``progress=end``. The last is not passed on: the run is over, and a caller that records
    progress (a database write) would only hold up the end of the task.
    """

    def __init__(self, stream: object, duration: float | None, on_progress: Callable[[float], None] | None) -> None:
        super().__init__(daemon=True)
        self._stream, self._duration, self._on_progress = stream, duration, on_progress
        self.written_seconds: float | None = None

    def run(self) -> None:
        for raw in self._stream:  # type: ignore[attr-defined]
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            if key == "out_time_us" and value.isdigit():  # "N/A" before the first packet
                self.written_seconds = int(value) / 1e6
            elif key == "progress" and value == "continue" and self.written_seconds is not None:
                self._report(self.written_seconds)

    def _report(self, seconds: float) -> None:
        if self._on_progress and self._duration:
            self._on_progress(min(1.0, seconds / self._duration))


@cache
def ffmpeg_executable() -> str:
    """The FFmpeg shipped by imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def file_arg(path: Path) -> str:
    """A path as FFmpeg's ``file:`` URL, so a name like ``-i`` or ``concat:x`` is never misread."""
    return f"file:{Path(path).resolve()}"


def run_ffmpeg(
    args: Sequence[str],
    *,
    duration: float | None = None,
    on_progress: Callable[[float], None] | None = None,
    time_limit: float | None = None,
    cancel: threading.Event | None = None,
    loglevel: str = "error",
) -> FFmpegRun:
    """Run ``ffmpeg ARGS``; call ``on_progress(fraction)`` as it goes; return what it logged and wrote.

    FFmpeg is killed at ``time_limit`` seconds (FFmpegTimeout) or when ``cancel`` is set
    (FFmpegCancelled).
    """
    command = [*_death_signal_wrapper(), ffmpeg_executable(), "-hide_banner", "-nostdin", "-nostats", "-y"]
    command += ["-progress", "pipe:1", "-loglevel", loglevel, *args]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=None if _death_signal_wrapper() else _die_with_parent_fallback(),
        )
        reader = _ProgressReader(proc.stdout, duration, on_progress)
        reader.start()
        deadline = time.monotonic() + time_limit if time_limit else None
        try:
            returncode = _wait(proc, deadline, cancel)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise FFmpegTimeout(f"conversion exceeded its time limit of {time_limit:g} s") from None
        except FFmpegCancelled:
            _kill(proc)
            raise
        except BaseException:
            _kill(proc)
            raise
        finally:
            reader.join(timeout=5)
            if proc.stdout:
                proc.stdout.close()
        if returncode != 0:
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - 2000))
            tail = stderr.read().decode("utf-8", "replace").strip()
            raise FFmpegError(tail.splitlines()[-1] if tail else f"ffmpeg exited with status {returncode}")
        stderr.seek(0)
        return FFmpegRun(stderr.read(_MAX_LOG).decode("utf-8", "replace"), reader.written_seconds)


@cache
def _death_signal_wrapper() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL --``: Linux SIGKILLs FFmpeg if the thread that started it dies.

    util-linux's setpriv sets the death signal and execs FFmpeg, so Python can start it with
    vfork; a ``preexec_fn`` forces a full fork of the server, ~10 ms with its threads and memory.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()


def _die_with_parent_fallback() -> Callable[[], None] | None:
    """Where setpriv is missing, the same death signal set in the forked child (Linux only)."""
    return _die_with_parent if sys.platform == "linux" else None


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait(proc: subprocess.Popen[bytes], deadline: float | None, cancel: threading.Event | None) -> int:
    """FFmpeg's exit status, seen the moment it exits; checks ``cancel`` and ``deadline`` as it waits."""
    exited = _exit_watch(proc)
    try:
        while True:
            step = _POLL_SECONDS if deadline is None else max(0.0, min(_POLL_SECONDS, deadline - time.monotonic()))
            if exited(step):
                return proc.wait()
            if cancel is not None and cancel.is_set():
                raise FFmpegCancelled("cancelled: the service is shutting down")
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(proc.args, step)
    finally:
        exited.close()


class _PidfdWatch:
    """Waits on a pidfd, which becomes readable when the process exits (Linux 5.3+).

    ``Popen.wait(timeout)`` polls in sleeps that grow to 50 ms: as much as a short export's
    whole overhead budget, spent after FFmpeg has finished.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __call__(self, timeout: float) -> bool:
        return bool(select.select([self._fd], [], [], timeout)[0])

    def close(self) -> None:
        os.close(self._fd)


class _PollingWatch:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc

    def __call__(self, timeout: float) -> bool:
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        pass


def _exit_watch(proc: subprocess.Popen[bytes]) -> _PidfdWatch | _PollingWatch:
    try:
        return _PidfdWatch(os.pidfd_open(proc.pid))
    except (AttributeError, OSError):  # not Linux, or an old kernel
        return _PollingWatch(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill FFmpeg and anything it started (it leads its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
