"""altdub's benchmark: altdub against bare FFmpeg and a bare FastAPI endpoint, in the same run.

    .venv/bin/python -m bench.run                   # the full run (10-minute 1080p source)
    .venv/bin/python -m bench.run --minutes 2       # a quicker run on a 2-minute source
    .venv/bin/python -m bench.run --quick           # targets 1 (no MXF), 3, 4, 12 once, 1-minute source: ~2 minutes
    .venv/bin/python -m bench.run --only 8          # one target (8: the four-language mp4 master)
    .venv/bin/python -m bench.run --only 9          # 9: the three-language HLS package
    .venv/bin/python -m bench.run --only 10         # 10: a one-language tracks_zip and aaf (hand-off)
    .venv/bin/python -m bench.run --only 11         # 11: the QC report's cost on an mp4 export
    .venv/bin/python -m bench.run --only 12         # 12: encode once (a second deliverable, an 8-language master)
    .venv/bin/python -m bench.run --only 13         # 13: a title's hour (8-language master, HLS, plain floor; 60 min)

Generates its own media under bench/work/, runs each scenario --repeats times, and writes
bench/REPORT.md: medians, spreads (min-max) and ratios against baselines measured in the
same run. Ratios are the targets: this machine is shared and noisy. A partial run (--only) keeps the
previous report's rows of the targets it did not run, marked "(earlier run)", with when each was measured.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import av
import httpx

from altdub import languages
from altdub.media.catalogue import CATALOGUE
from altdub.media.ffmpeg import ffmpeg_executable, file_arg, run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, _xdcam_hd422_args, build_plan, intermediate_plan
from altdub.media.options import resolve_options
from altdub.media.packaging import SEGMENT_SECONDS, package_plan
from altdub.media.probe import probe
from altdub.service.intermediates import uses_intermediates

ROOT = Path(__file__).resolve().parent
ALTDUB = Path(sys.executable).parent / "altdub"
UVICORN = Path(sys.executable).parent / "uvicorn"
MIB = 1024 * 1024


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Row:
    target: str
    figure: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None  # None: informational

    def markdown(self) -> str:
        verdict = {True: "met", False: "**not met**", None: "—"}[self.met]
        return f"| {self.target} | {self.figure} | {self.baseline} | {self.ratio} | {self.goal} | {verdict} |"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(row.markdown(), flush=True)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f}, n={len(values)})"


# --- media -----------------------------------------------------------------------------------------


def make_media(work: Path, minutes: float) -> tuple[Path, Path]:
    """A test-pattern 1080p H.264 video with a stereo 48 kHz tone, and a dub of the same length."""
    seconds = minutes * 60
    video = work / f"source-{minutes:g}min.mp4"
    dub = work / f"dub-{minutes:g}min.wav"
    if not video.exists():
        print(f"generating {video.name} …", flush=True)
        partial = video.with_suffix(".part.mp4")
        run_ffmpeg([
            "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50",
            "-c:a", "aac", "-b:a", "192k", "-shortest", file_arg(partial),
        ])  # fmt: skip
        partial.rename(video)
    if not dub.exists():
        run_ffmpeg([
            "-f", "lavfi", "-i", f"sine=frequency=660:sample_rate=48000:duration={seconds}",
            "-ac", "2", "-c:a", "pcm_s16le", file_arg(dub),
        ])  # fmt: skip
    return video, dub


def concat_media(work: Path, video: Path, dub: Path, times: int, minutes: float) -> tuple[Path, Path]:
    """A longer source made by repeating one (stream copy: quick to make, same content per minute)."""
    long_video, long_dub = work / f"source-{minutes:g}min.mp4", work / f"dub-{minutes:g}min.wav"
    for source, target in ((video, long_video), (dub, long_dub)):
        if target.exists():
            continue
        listing = work / f"{target.stem}.txt"
        listing.write_text("".join(f"file '{source}'\n" for _ in range(times)))
        run_ffmpeg(["-f", "concat", "-safe", "0", "-i", file_arg(listing), "-c", "copy", file_arg(target)])
    return long_video, long_dub


def cut_media(work: Path, video: Path, dub: Path, minutes: float) -> tuple[Path, Path]:
    short_video, short_dub = work / f"source-{minutes:g}min.mp4", work / f"dub-{minutes:g}min.wav"
    if not short_video.exists():
        run_ffmpeg(["-i", file_arg(video), "-t", str(minutes * 60), "-c", "copy", file_arg(short_video)])
    if not short_dub.exists():
        run_ffmpeg(["-i", file_arg(dub), "-t", str(minutes * 60), "-c", "copy", file_arg(short_dub)])
    return short_video, short_dub


# --- servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    key: str
    data_dir: Path
    http: httpx.Client  # one client, kept: making one costs ~40 ms (its TLS context), which no request should carry

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


@contextmanager
def altdub_server(data_dir: Path, *, keep: bool = False, **env: str) -> Iterator[Server]:
    """``altdub serve`` as a user runs it (uvicorn, one process, in-process workers).

    Its data directory is removed when it stops, unless ``keep``: a full run makes ~60 GB.
    """
    shutil.rmtree(data_dir, ignore_errors=True)
    port = free_port()
    environment = os.environ | {"ALTDUB_DATA_DIR": str(data_dir), "ALTDUB_CREATE_DEMO": "false"}
    environment |= {"ALTDUB_MAX_UPLOAD_BYTES": str(64 * 1024**3)} | env  # the 60-minute source is 6 GB
    process = subprocess.Popen(
        [str(ALTDUB), "serve", "--port", str(port)], env=environment, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    key = ""
    for line in process.stdout:
        if line.strip().startswith("altdub_"):
            key = line.strip()
        if "Uvicorn running" in line:
            break
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=60) as http:
            yield Server(process, url, key, data_dir, http)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def import_run(server: Server, video: Path | None, dub: Path | dict[str, Path], *, name: str = "") -> int:
    """A new run: the source and one dub (Spanish), or a dub per language (in track order)."""
    dubs = dub if isinstance(dub, dict) else {"es-es": dub}
    files = {f"dub_{short_name}": path for short_name, path in dubs.items()} | ({"source": video} if video else {})
    handles = {field: (path.name, path.open("rb")) for field, path in files.items()}
    form = {"source_language": "en-us"} | ({"name": name} if name else {})
    try:
        response = server.http.post("/runs", data=form, files=handles, timeout=None)
    finally:
        for _, handle in handles.values():
            handle.close()
    response.raise_for_status()
    return response.json()["run_id"]


def request_export(server: Server, run_id: int, output_format: str, **options: object) -> str:
    answer = server.http.post(f"/dub-alt-format/{run_id}/es-es", json={"output_format": output_format, **options})
    return answer.json()["task_id"]


def wait_for(server: Server, task_id: str) -> dict:
    """The task's final status, waited for by long polling (answered the moment it ends)."""
    while True:
        status = server.http.get(f"/dub-alt-format/{task_id}", params={"wait": 30}).json()
        if status["status"] != "PENDING":
            if status["status"] != "SUCCESS":
                raise RuntimeError(f"task {task_id}: {status}")
            return status


def export_seconds(server: Server, run_id: int, output_format: str, **options: object) -> tuple[float, dict]:
    """Seconds from the export request to SUCCESS, as a client waiting by long polling sees them."""
    started = time.perf_counter()
    status = wait_for(server, request_export(server, run_id, output_format, **options))
    return time.perf_counter() - started, status


# The codec a user names for each format's audio (the catalogue's first): the same codec altdub writes.
PLAIN_EXTRA = {  # what a user adds for the same file: faststart (moov first) and ADTS's ID3 tag, as altdub writes
    "m4a": ["-movflags", "+faststart"], "mp4": ["-movflags", "+faststart"], "mov": ["-movflags", "+faststart"],
    "aac": ["-write_id3v2", "1"],
}  # fmt: skip
PLAIN_TITLE = "bench (Spanish (Spain))"


def bare_command(output_format: str, video: Path, dub: Path, out: Path) -> list[str]:
    """The plainest FFmpeg command a user types for an equivalent file: same codec, bitrate, container, tags.

    ``ffmpeg -i dub.wav -c:a libmp3lame -b:a 192k out.mp3``; for video, ``-map 0:v -map 1:a -c:v copy``
    and the audio codec (``-c copy`` for mkv, which keeps the WAV's PCM as altdub does). No filters, no
    ``-t``: the dub is as long as the picture. MXF: the XDCAM HD422 recipe, and the stereo dub split
    into two 24-bit mono tracks, the one filter a user needs for that layout.
    """
    fmt = CATALOGUE[output_format]
    options = resolve_options(output_format, {}, probe(dub).audio[0])
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    if not fmt.is_video:
        command += ["-i", file_arg(dub), "-c:a", fmt.audio_codecs[0]]
        if options.audio_bitrate:
            command += ["-b:a", str(options.audio_bitrate)]
        command += ["-map_metadata", "-1", "-metadata", f"title={PLAIN_TITLE}", "-metadata", "language=spa"]
        command += ["-metadata:s:a:0", "language=spa", "-metadata:s:a:0", "title=Spanish (Spain)"]
        return [*command, *PLAIN_EXTRA.get(output_format, []), file_arg(out)]
    command += ["-i", file_arg(video), "-i", file_arg(dub)]
    if output_format == "mxf":
        command += ["-filter_complex", "[1:a]channelsplit=channel_layout=stereo[L][R]"]
        command += ["-map", "0:v", "-map", "[L]", "-map", "[R]", *_xdcam_hd422_args(), "-c:a", "pcm_s24le"]
        command += ["-metadata", f"material_package_name={PLAIN_TITLE}"]
    else:
        command += ["-map", "0:v", "-map", "1:a", "-c:v", "copy"]
        command += ["-c:a", "copy"] if output_format == "mkv" else ["-c:a", "aac", "-b:a", str(options.audio_bitrate)]
        command += ["-metadata:s:a:0", "language=spa", "-metadata:s:a:0", "title=Spanish (Spain)"]
        command += ["-disposition:a:0", "default"]
    command += ["-map_metadata", "-1", "-metadata", f"title={PLAIN_TITLE}"]
    return [*command, *PLAIN_EXTRA.get(output_format, []), file_arg(out)]


def timed_run(command: list[str], out: Path) -> float:
    """Seconds the command takes to make ``out`` anew (as altdub, it writes a new file)."""
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def bare_ffmpeg_seconds(output_format: str, video: Path, dub: Path, out: Path) -> float:
    return timed_run(bare_command(output_format, video, dub, out), out)


# --- scenarios -------------------------------------------------------------------------------------


QUICK_SECONDS = 5.0  # formats whose conversion takes less are measured at least QUICK_REPEATS times
QUICK_REPEATS = 7
# --quick: every target once on a 1-minute source, small enough to run in about two minutes
QUICK_SETTINGS: dict[str, object] = {
    "minutes": 1, "repeats": 1, "min_repeats": 1, "scaling": [0.25, 0.5, 1], "encode_seconds": 10,
    "memory_gib": 0.25, "wrk_seconds": 2, "only": "1,3,4,12",
    "formats": [f for f in CATALOGUE if f != "mxf" and CATALOGUE[f].package_entry is None],
}  # fmt: skip


def stored_inputs(server: Server, run_id: int) -> tuple[Path, Path]:
    """The run's source and dub as altdub stored them, for a baseline that reads the very files altdub reads.

    A file just written (an import) reads measurably slower than one long in the page cache: 146 vs
    135 ms of FFmpeg's own time for a 10-minute WAV. The baseline must not get the warmer copy.
    """
    with sqlite3.connect(server.data_dir / "altdub.db") as db:
        keys = dict(db.execute("SELECT role, storage_key FROM run_files WHERE run_id = ?", (run_id,)).fetchall())
    root = server.data_dir / "files"
    return root / keys["source"], root / keys["dub"]


def conversion_overhead(
    report: Report,
    args: argparse.Namespace,
    video: Path,
    dub: Path,
    *,
    label: str = "1. plain floor",
    formats: list[str] | None = None,
    repeats: int | None = None,
    min_repeats: int | None = None,
    data_dir: str = "data-overhead",
) -> dict[str, float]:
    """Target 1: request-to-SUCCESS over the bare FFmpeg command, per format (≤ 1.05).

    Each export and its bare command run back to back, on the same stored inputs, alternating which
    goes first; the ratio is the median of these pairs' ratios, so that a machine getting slower or
    faster during the run moves both sides of each pair. Target 13 runs the same pairs on the hour's
    source (its own ``label``, formats and repeats: every run imported up front costs the source's size).

    Like for like: the plain command writes no QC report, so the pairs' server runs with
    ``ALTDUB_QC_REPORTS=false``. After each pair the same export on a server as shipped (reports on) is
    timed too: its ratio to the plain command is the QC meter's cost on that format (no goal here; target 11
    holds the report's goal).
    """
    formats = args.formats if formats is None else formats
    repeats = args.repeats if repeats is None else repeats
    min_repeats = args.min_repeats if min_repeats is None else min_repeats
    medians: dict[str, float] = {}
    with (
        altdub_server(args.work / data_dir, ALTDUB_QC_REPORTS="false") as server,
        altdub_server(args.work / f"{data_dir}-shipped") as shipped,
    ):
        # a run per repeat (an export that exists is answered, not made), all imported before timing
        count = max(repeats, min_repeats)
        runs = [import_run(server, video, dub, name="bench") for _ in range(count)]
        shipped_runs = [import_run(shipped, video, dub, name="bench") for _ in range(count)]
        os.sync()
        aac_encoded = False  # whether the runs' dubs were encoded to AAC by an earlier format
        for output_format in formats:
            if uses_intermediates(output_format):
                # On runs whose dub an AAC format already encoded, this one would copy that audio (encode once,
                # target 12): the floor is about a first deliverable, so it gets runs of its own.
                if aac_encoded:
                    runs = [import_run(server, video, dub, name="bench") for _ in range(count)]
                    shipped_runs = [import_run(shipped, video, dub, name="bench") for _ in range(count)]
                    os.sync()
                aac_encoded = True
            ours: list[float] = []
            bare: list[float] = []
            as_shipped: list[float] = []
            outputs: list[Path] = []
            first_task = ""
            repeat = 0
            while repeat < repeats or (repeat < min_repeats and statistics.median(bare) < QUICK_SECONDS):
                stored_video, stored_dub = stored_inputs(server, runs[repeat])
                # kept, as altdub keeps its: a file deleted gives its page cache back, and the next write
                # then finds free memory where altdub's has to reclaim it (1 GB mkv: 0.9 vs 2.0 s)
                out = args.work / f"bare-{repeat}.{CATALOGUE[output_format].extension}"
                outputs.append(out)
                if repeat % 2:
                    os.sync()
                    bare.append(bare_ffmpeg_seconds(output_format, stored_video, stored_dub, out))
                os.sync()  # each starts with nothing left to write back: altdub keeps its outputs, bare does not
                started = time.perf_counter()
                task_id = request_export(server, runs[repeat], output_format)
                wait_for(server, task_id)
                ours.append(time.perf_counter() - started)
                first_task = first_task or task_id
                if not repeat % 2:
                    os.sync()
                    bare.append(bare_ffmpeg_seconds(output_format, stored_video, stored_dub, out))
                os.sync()
                as_shipped.append(export_seconds(shipped, shipped_runs[repeat], output_format)[0])
                repeat += 1
            differences = compare_masters(stored_export(server, first_task), outputs[0])
            for out in outputs:
                out.unlink()
            ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
            medians[output_format] = statistics.median(ours)
            same = "same streams, tags and packets" if not differences else "differs: " + "; ".join(differences)
            report.add(Row(f"{label}, {output_format}", spread(ours), f"{spread(bare)}, plain `ffmpeg` ({same})",
                           f"{ratio:.3f}", "≤ 1.05", ratio <= 1.05))  # fmt: skip
            with_qc = statistics.median(o / b for o, b in zip(as_shipped, bare, strict=True))
            report.add(Row(f"{label}, {output_format}, QC report on (the default)", spread(as_shipped),
                           f"{spread(bare)}, plain `ffmpeg` (the pairs above)", f"{with_qc:.3f}",
                           "— (the meter's cost; the report's goal is target 11's)", None))  # fmt: skip
    return medians


def stream_copy(report: Report, args: argparse.Namespace, video: Path, export_medians: dict[str, float]) -> None:
    """Target 2: mp4/mov/mkv exports ≤ 5 % of an H.264 re-encode of the picture (x264 at FFmpeg's default)."""
    seconds = min(args.encode_seconds, probe(video).duration)
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        run_ffmpeg(["-i", file_arg(video), "-t", str(seconds), "-map", "0:v:0", "-c:v", "libx264",
                    "-preset", args.encode_preset, "-f", "null", "-"])  # fmt: skip
        times.append(time.perf_counter() - started)
    full = statistics.median(times) * probe(video).duration / seconds
    baseline = f"{full:.1f} s (x264 -preset {args.encode_preset}: {seconds:g} s timed, scaled to the length)"
    for output_format in [f for f in ("mp4", "mov", "mkv") if f in export_medians]:
        ratio = export_medians[output_format] / full
        report.add(Row(f"2. stream copy, {output_format}", f"{export_medians[output_format]:.2f} s", baseline,
                       f"{ratio:.1%}", "≤ 5 %", ratio <= 0.05))  # fmt: skip


WRK_POST = """
wrk.method = "POST"
wrk.body = '{"output_format": "mp3"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "%s"
"""


def wrk_executable() -> str:
    """The load generator: ``wrk`` on PATH, else Debian's package installed (as root), else the reason why not.

    Debian and Ubuntu ship it (``apt-get install wrk``, 4.1.0 here); the bench installs it itself only
    where it may (root, apt-get present), as it generates its own media: one command runs the benchmark.
    """
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("`wrk` is not installed and could not be: install it (apt-get install wrk) and run again")
    return found


def wrk(url: str, script: Path, seconds: int, server_pid: int | None = None) -> tuple[float, float, int, float]:
    """(requests per second, p99 latency in ms, errors, the server's CPU ms per request) at 64 connections and
    2 threads, after a 2 s warm-up. CPU per request (from the server's /proc) does not depend on the load beside."""
    command = [wrk_executable(), "-t2", "-c64", "--latency", "-s", str(script), url]
    subprocess.run([*command[:1], "-d2s", *command[1:]], capture_output=True, check=True)
    cpu_before = sum(process_cpu(server_pid)) if server_pid else 0.0
    done = subprocess.run([*command[:1], f"-d{seconds}s", *command[1:]], capture_output=True, text=True, check=True)
    cpu = sum(process_cpu(server_pid)) - cpu_before if server_pid else 0.0
    lines = done.stdout.splitlines()
    requests = next(int(line.split()[0]) for line in lines if "requests in" in line)
    rps = next(float(line.split()[1]) for line in lines if line.startswith("Requests/sec"))
    p99 = next(line.split()[1] for line in lines if line.strip().startswith("99%"))
    errors = 0
    for line in lines:
        if "Socket errors" in line:
            errors += sum(int(part.strip().split()[-1]) for part in line.split(":", 1)[1].split(","))
        if "Non-2xx" in line:
            errors += int(line.split()[-1])
    unit = next(u for u in ("us", "ms", "s") if p99.endswith(u))
    p99_ms = float(p99[: -len(unit)]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99_ms, errors, cpu * 1000 / max(requests, 1)


@contextmanager
def served_as_shipped(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A server started the way its users start it, its log (the access log included) written to ``log``.

    ``altdub serve`` with its default logging, or ``uvicorn app`` with uvicorn's defaults (access log
    on, level info, its own loop choice); both log lines go to a file, as a terminal or journal takes them.
    """
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=os.environ | (env or {}), cwd=ROOT.parent, stdout=sink, stderr=sink
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield url, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def cached_requests(report: Report, args: argparse.Namespace, dub: Path) -> None:
    """Target 3: the cached POST of `altdub serve` as shipped vs a bare FastAPI endpoint under uvicorn's defaults.

    Alternating pairs: ``altdub serve`` (its own loop, protocol and access log with secrets redacted)
    and ``uvicorn bench.bare_app:app`` (access log on), each freshly started, 64 connections.
    """
    data_dir = args.work / "data-cached"
    with altdub_server(data_dir, keep=True) as server:  # make the export, then serve it as a user does
        run_id = import_run(server, None, dub)
        export_seconds(server, run_id, "mp3")
        key = server.key
    env = {"ALTDUB_DATA_DIR": str(data_dir), "ALTDUB_CREATE_DEMO": "false"}
    script = args.work / "post.lua"
    script.write_text(WRK_POST % key)
    results: dict[str, list[tuple[float, float, int, float]]] = {"altdub": [], "bare": []}
    path = f"/dub-alt-format/{run_id}/es-es"

    def altdub_side() -> None:
        with served_as_shipped([str(ALTDUB), "serve"], args.work / "access-altdub.log", env) as (url, pid):
            httpx.post(f"{url}{path}", headers={"x-api-key": key}, json={"output_format": "mp3"},
                       timeout=10).raise_for_status()  # fmt: skip
            results["altdub"].append(wrk(f"{url}{path}", script, args.wrk_seconds, pid))

    def bare_side() -> None:
        with served_as_shipped([str(UVICORN), "bench.bare_app:app"], args.work / "access-bare.log") as (url, pid):
            results["bare"].append(wrk(f"{url}/constant", script, args.wrk_seconds, pid))

    loads = []
    for repeat in range(args.repeats):
        loads.append(os.getloadavg()[0])
        for side in (altdub_side, bare_side) if repeat % 2 == 0 else (bare_side, altdub_side):
            side()
    shutil.rmtree(data_dir, ignore_errors=True)
    rps_ratio = statistics.median(a[0] / b[0] for a, b in zip(results["altdub"], results["bare"], strict=True))
    p99_ratio = statistics.median(a[1] / b[1] for a, b in zip(results["altdub"], results["bare"], strict=True))
    ours_rps = statistics.median(r[0] for r in results["altdub"])
    bare_rps = statistics.median(r[0] for r in results["bare"])
    ours_p99 = statistics.median(r[1] for r in results["altdub"])
    bare_p99 = statistics.median(r[1] for r in results["bare"])
    errors = sum(r[2] for r in results["altdub"]), sum(r[2] for r in results["bare"])
    ours_cpu = statistics.median(r[3] for r in results["altdub"])
    bare_cpu = statistics.median(r[3] for r in results["bare"])
    report.add(Row("3. cached POST as shipped, throughput", f"{ours_rps:.0f} req/s ({errors[0]} errors)",
                   f"{bare_rps:.0f} req/s, bare FastAPI under uvicorn's defaults ({errors[1]} errors)",
                   f"{rps_ratio:.2f}", "≥ 0.80", rps_ratio >= 0.8 and errors[0] == 0))  # fmt: skip
    report.add(Row("3. cached POST as shipped, p99 latency", f"{ours_p99:.1f} ms", f"{bare_p99:.1f} ms (bare FastAPI)",
                   f"{p99_ratio:.2f}", "≤ 1.50", p99_ratio <= 1.5))  # fmt: skip
    report.add(Row("3. cached POST as shipped, server CPU per request", f"{ours_cpu:.3f} ms",
                   f"{bare_cpu:.3f} ms (bare FastAPI)", f"{bare_cpu / ours_cpu:.2f} (bare ÷ altdub)",
                   "the throughput ratio a saturated server's CPU allows", None))  # fmt: skip
    report.notes.append(f"3: load average (1 min) at the start of each pair: {', '.join(f'{x:.2f}' for x in loads)}.")


def concurrent_identical(report: Report, args: argparse.Namespace, video: Path, dub: Path) -> None:
    """Target 4: 200 concurrent POSTs for one new export start exactly one conversion."""
    with altdub_server(args.work / "data-concurrent") as server:
        run_id = import_run(server, video, dub)
        barrier = threading.Barrier(200)

        def post(_: int) -> str:
            barrier.wait()
            answer = httpx.post(f"{server.url}/dub-alt-format/{run_id}/es-es", headers={"x-api-key": server.key},
                                json={"output_format": "mkv"}, timeout=120).json()  # fmt: skip
            return answer.get("task_id") or answer["output_url"]

        with ThreadPoolExecutor(200) as pool:
            answers = set(pool.map(post, range(200)))
        task_ids = {a for a in answers if not a.startswith("http")}
        with sqlite3.connect(server.data_dir / "altdub.db") as db:
            rows, attempts = db.execute("SELECT count(*), sum(attempts) FROM export_tasks").fetchone()
    figure = f"{len(task_ids)} task id, {rows} task row, {attempts} conversion"
    report.add(Row("4. 200 identical concurrent POSTs", figure, "—", "—", "exactly 1 conversion",
                   rows == 1 and attempts == 1))  # fmt: skip


def parallel_exports(report: Report, args: argparse.Namespace, video: Path, dub: Path) -> None:
    """Target 5: 8 different exports on the default workers vs the same 8 commands, same parallelism.

    Both take the exports in the same order: altdub's are requested one after the other (each
    request answers at once with a task) and then waited for together.
    """
    formats = ["flac", "wav", "mp3", "aac", "m4a", "mp4", "mov", "mkv"]
    workers = 2  # altdub's default ALTDUB_WORKERS
    ours, bare = [], []
    for repeat in range(args.repeats):
        with altdub_server(args.work / f"data-parallel-{repeat}") as server:
            run_id = import_run(server, video, dub)
            stored_video, stored_dub = stored_inputs(server, run_id)
            os.sync()
            started = time.perf_counter()
            tasks = [request_export(server, run_id, output_format) for output_format in formats]
            with ThreadPoolExecutor(len(tasks)) as pool:
                list(pool.map(partial(wait_for, server), tasks))
            ours.append(time.perf_counter() - started)
            # the plain script, on the same stored inputs, while the idle server still holds them
            outputs = [args.work / f"par-{repeat}.{CATALOGUE[f].extension}" for f in formats]  # kept, as altdub's
            commands = [bare_command(f, stored_video, stored_dub, o) for f, o in zip(formats, outputs, strict=True)]
            os.sync()
            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(timed_run, commands, outputs))
            bare.append(time.perf_counter() - started)
            for output in outputs:
                output.unlink()
    ratio = statistics.median(ours) / statistics.median(bare)
    report.add(Row("5. 8 parallel exports", spread(ours), spread(bare) + f" ({workers} at a time)", f"{ratio:.3f}",
                   "≤ 1.15", ratio <= 1.15))  # fmt: skip


def memory(report: Report, args: argparse.Namespace) -> None:
    """Target 6: importing and downloading a 2 GiB file raise the service's RSS by ≤ 64 MiB."""
    big = args.work / f"big-dub-{args.memory_gib:g}GiB.wav"  # by size: --quick makes a smaller one
    seconds = (args.memory_gib * 1024**3) / (48000 * 2 * 2)
    if not big.exists():
        run_ffmpeg(["-f", "lavfi", "-i", f"sine=frequency=500:sample_rate=48000:duration={seconds:.0f}", "-ac", "2",
                    "-c:a", "pcm_s16le", "-rf64", "auto", file_arg(big)])  # fmt: skip
    size = big.stat().st_size
    with altdub_server(args.work / "data-memory") as server:
        server.http.get("/runs")  # warm up
        before = server.rss()
        peak = [before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak.append(server.rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run_id = import_run(server, None, big)
        after_import = max(peak)
        peak[:] = [server.rss()]
        _, status = export_seconds(server, run_id, "wav")
        with server.http.stream("GET", status["output_url"], timeout=None) as response:
            received = sum(len(chunk) for chunk in response.iter_raw(1 << 20))
        after_download = max(peak)
        stop.set()
        sampler.join()
    rise_import, rise_download = (after_import - before) / MIB, (after_download - peak[0]) / MIB
    figure = f"{size / 1024**3:.2f} GiB file"
    report.add(Row("6. memory, import", f"+{rise_import:.1f} MiB RSS ({figure})", f"{before / MIB:.0f} MiB at rest",
                   "—", "≤ 64 MiB", rise_import <= 64))  # fmt: skip
    report.add(Row("6. memory, download", f"+{rise_download:.1f} MiB RSS ({received / 1024**3:.2f} GiB sent)",
                   f"{before / MIB:.0f} MiB at rest", "—", "≤ 64 MiB", rise_download <= 64))  # fmt: skip


def scaling(report: Report, args: argparse.Namespace, base_video: Path, base_dub: Path, base_minutes: float) -> None:
    """Target 7: mp4 export time of 1-, 10- and 60-minute sources grows linearly."""
    points: list[tuple[float, float]] = []
    for minutes in args.scaling:
        if minutes < base_minutes:
            video, dub = cut_media(args.work, base_video, base_dub, minutes)
        elif minutes == base_minutes:
            video, dub = base_video, base_dub
        else:
            video, dub = concat_media(args.work, base_video, base_dub, round(minutes / base_minutes), minutes)
        with altdub_server(args.work / f"data-scaling-{minutes:g}") as server:
            times = [export_seconds(server, import_run(server, video, dub), "mp4")[0] for _ in range(args.repeats)]
        points.append((minutes, statistics.median(times)))
    slope, intercept = linear_fit(points)
    worst = max(abs(t - (slope * m + intercept)) / max(t, 1e-9) for m, t in points)
    per_minute = [t / m for m, t in points]
    superlinear = per_minute[-1] > per_minute[0] * 1.25 and per_minute[-1] > per_minute[-2] * 1.25
    figure = ", ".join(f"{m:g} min: {t:.2f} s" for m, t in points)
    report.add(Row("7. scaling with length (mp4)", figure, f"slope {slope:.3f} s per source minute",
                   f"max deviation from the line {worst:.0%}", "linear, no super-linear step",
                   not superlinear))  # fmt: skip


# Target 8's languages in track order: (short_name, the ISO 639-2 tag MP4 carries, display name, dub tone in Hz).
Dubs = tuple[tuple[str, str, str, int], ...]
MASTER_DUBS: Dubs = (
    ("es-es", "spa", "Spanish (Spain)", 660),
    ("fr-fr", "fre", "French (France)", 550),
    ("de-de", "ger", "German (Germany)", 770),
    ("it-it", "ita", "Italian (Italy)", 880),
)
MASTER_RUN_NAME = "bench"
MASTER_TITLE = f"{MASTER_RUN_NAME} ({', '.join(name for _, _, name, _ in MASTER_DUBS)})"
MASTER_BITRATE = "192k"  # what a user types; altdub's default for stereo AAC (the file comparison checks it)
MASTER_QUICK_PAIRS = 5  # pairs at least when the master takes under QUICK_SECONDS
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PACKAGE_DUBS = MASTER_DUBS[:3]  # target 9's languages: es-es (the default), fr-fr, de-de
PACKAGE_BITRATE = "128k"  # what a user types; altdub's default for a package's stereo AAC renditions
PACKAGE_AFTER_MASTER = 3  # target 9: at most this many runs timed for a master and then the package


def make_tone(work: Path, minutes: float, frequency: int) -> Path:
    """A dub as dubs arrive: a stereo 48 kHz 16-bit WAV, here a tone of its own per language."""
    path = work / f"tone-{frequency}-{minutes:g}min.wav"
    if not path.exists():
        run_ffmpeg([
            "-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=48000:duration={minutes * 60}",
            "-ac", "2", "-c:a", "pcm_s16le", file_arg(path),
        ])  # fmt: skip
    return path


def process_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process: its own threads', and its reaped children's.

    From /proc/<pid>/stat: utime+stime (fields 14-15) and cutime+cstime (16-17). The children's
    figure grows when a child is waited for (any thread of the process), by everything that
    child used. altdub waits for FFmpeg before it marks the task done, so by the time a client
    sees SUCCESS the conversion's CPU time is in it. setpriv execs FFmpeg in its own process.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()  # fields[0] is field 3
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def machine_cpu() -> tuple[float, float]:
    """(all, idle) CPU seconds of the whole machine since boot, from /proc/stat (idle counts iowait)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks) / CLOCK_TICKS, (ticks[3] + ticks[4]) / CLOCK_TICKS


class ThreadSampler(threading.Thread):
    """The CPU seconds of each thread of an FFmpeg process, read from /proc every 0.25 s while it runs.

    FFmpeg names its threads (``enc0:1:aac``, ``mux0:mp4``, ``af#0:1`` …): the encoders' figures show
    whether the four encodes run side by side. The last reading before FFmpeg exits stands (≤ 0.25 s short).
    """

    def __init__(self, find: Callable[[], int | None]) -> None:
        super().__init__(daemon=True)
        self._find = find
        self._done = threading.Event()
        self.seconds: dict[tuple[int, int, str], float] = {}  # (pid, tid, thread name): CPU seconds
        self.timeline: list[tuple[float, float]] = []  # (monotonic seconds, the process's CPU seconds so far)
        self.waited: dict[tuple[int, int], float] = {}  # (pid, tid): seconds runnable but not running (schedstat)

    def run(self) -> None:
        while not self._done.wait(0.25):
            pid = self._find()
            if pid is None:
                continue
            try:
                self.timeline.append((time.monotonic(), process_cpu(pid)[0]))
            except OSError:
                continue
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    stat = (task / "stat").read_text()
                    waited = int((task / "schedstat").read_text().split()[1]) / 1e9
                except OSError:  # the thread, or the process, has ended
                    continue
                self.waited[(pid, int(task.name))] = waited
                fields = stat.rpartition(")")[2].split()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                self.seconds[(pid, int(task.name), name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak(self, window: float = 1.0) -> float:
        """The most CPU seconds per second the process used over any ``window`` seconds (2.0: both cores)."""
        rates = []
        for start, (t0, cpu0) in enumerate(self.timeline):
            later = next(((t, cpu) for t, cpu in self.timeline[start + 1 :] if t - t0 >= window), None)
            if later is not None:
                rates.append((later[1] - cpu0) / (later[0] - t0))
        return max(rates, default=0.0)

    def stop(self) -> dict[str, float]:
        """The threads' CPU seconds by name (summed over FFmpeg processes, of which there is one here)."""
        self._done.set()
        self.join()
        by_name: dict[str, float] = {}
        for (_, _, name), seconds in self.seconds.items():
            by_name[name] = by_name.get(name, 0.0) + seconds
        return by_name


def ffmpeg_child(pid: int) -> int | None:
    """The FFmpeg process a process (the server) runs now, if any, from /proc/<pid>/task/*/children."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                if Path(f"/proc/{child}/comm").read_text().startswith("ffmpeg"):
                    return int(child)
            except OSError:
                continue
    return None


@dataclass
class Timed:
    """One side of a pair: wall seconds, the FFmpeg process's CPU seconds, and (altdub) the server's own."""

    wall: float
    ffmpeg_cpu: float
    machine_busy: float  # the share of the whole machine's CPU time that was not idle meanwhile
    threads: dict[str, float]  # FFmpeg's threads' CPU seconds, by name
    peak: float  # FFmpeg's most CPU ÷ wall over one second
    waited: float  # seconds FFmpeg's threads were ready to run but waited for a core (summed over threads)
    server_cpu: float = 0.0

    def encoders(self) -> list[float]:
        return [seconds for name, seconds in self.threads.items() if name.startswith("enc")]


def stored_master_inputs(server: Server, run_id: int, dubs: Dubs = MASTER_DUBS) -> tuple[Path, list[Path]]:
    """The run's stored source and dubs (in ``dubs`` order), the very files altdub reads."""
    with sqlite3.connect(server.data_dir / "altdub.db") as db:
        rows = db.execute("SELECT role, language_id, storage_key FROM run_files WHERE run_id = ?", (run_id,)).fetchall()
    root = server.data_dir / "files"
    source = next(root / key for role, _, key in rows if role == "source")
    stored = {languages.by_id(language).short_name: root / key for role, language, key in rows if role == "dub"}
    return source, [stored[short_name] for short_name, _, _, _ in dubs]


def stored_export(server: Server, task_id: str) -> Path:
    with sqlite3.connect(server.data_dir / "altdub.db") as db:
        (key,) = db.execute("SELECT storage_key FROM export_tasks WHERE id = ?", (task_id,)).fetchone()
    return server.data_dir / "files" / key


def master_seconds(
    server: Server, run_id: int, output_format: str = "mp4", dubs: Dubs = MASTER_DUBS
) -> tuple[Timed, str]:
    """An export of ``dubs`` (target 8: the four-language mp4 master), from the request to SUCCESS.

    CPU from the server's /proc (see process_cpu).
    """
    own_before, children_before = process_cpu(server.process.pid)
    machine_before = machine_cpu()
    sampler = ThreadSampler(partial(ffmpeg_child, server.process.pid))
    sampler.start()
    started = time.perf_counter()
    body = {"output_format": output_format, "languages": [short_name for short_name, _, _, _ in dubs]}
    answer = server.http.post(f"/runs/{run_id}/exports", json=body)
    answer.raise_for_status()
    task_id = answer.json()["task_id"]
    wait_for(server, task_id)
    wall = time.perf_counter() - started
    own_after, children_after = process_cpu(server.process.pid)
    busy = busy_share(machine_before, machine_cpu())
    threads = sampler.stop()
    ffmpeg_cpu, waited = children_after - children_before, sum(sampler.waited.values())
    timed = Timed(wall, ffmpeg_cpu, busy, threads, sampler.peak(), waited, own_after - own_before)
    return timed, task_id


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    return 1 - (after[1] - before[1]) / max(after[0] - before[0], 1e-9)


def master_command(video: Path, dubs: list[Path], out: Path) -> list[str]:
    """The four-language master as a user types it: one ``-i`` per file, no filters.

    Same codecs, bitrate, tags, titles, default flag and faststart as altdub's (compare_masters checks
    the files); the global title, and ``-map_metadata -1`` so the source's own tags do not come along.
    """
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-i", file_arg(video)]
    for dub in dubs:
        command += ["-i", file_arg(dub)]
    command += ["-map", "0:v"] + [arg for n in range(len(dubs)) for arg in ("-map", f"{n + 1}:a")]
    command += ["-c:v", "copy", "-c:a", "aac", "-b:a", MASTER_BITRATE]
    for n, (_, iso639_2, name, _) in enumerate(MASTER_DUBS):
        command += [f"-metadata:s:a:{n}", f"language={iso639_2}", f"-metadata:s:a:{n}", f"title={name}"]
        command += [f"-disposition:a:{n}", "default" if n == 0 else "0"]
    command += ["-map_metadata", "-1", "-metadata", f"title={MASTER_TITLE}", "-movflags", "+faststart"]
    return [*command, file_arg(out)]


def timed_child(command: list[str], out: Path) -> Timed:
    """Wall seconds and the child's own CPU seconds (os.wait4's rusage: that one process, nothing else)."""
    out.unlink(missing_ok=True)
    machine_before = machine_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(command)
    sampler = ThreadSampler(lambda: process.pid)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    busy = busy_share(machine_before, machine_cpu())
    threads = sampler.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{command[0]} exited with {process.returncode}")
    return Timed(wall, usage.ru_utime + usage.ru_stime, busy, threads, sampler.peak(), sum(sampler.waited.values()))


def top_level_boxes(path: Path) -> list[str]:
    """The ISO BMFF boxes at the top of a file, in order (faststart: moov before mdat)."""
    boxes = []
    with path.open("rb") as handle:
        while len(header := handle.read(8)) == 8:
            size, kind = struct.unpack(">I4s", header)
            boxes.append(kind.decode("latin-1"))
            if size == 0:
                break
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0] - 8
            handle.seek(size - 8, os.SEEK_CUR)
    return boxes


def describe_master(path: Path) -> dict[str, object]:
    """What makes two masters the same file: streams, codecs, tags, flags, length, layout, every packet's bytes."""
    with av.open(str(path)) as container:
        streams = []
        for stream in container.streams:
            codec = stream.codec_context
            streams.append({
                "type": stream.type, "codec": codec.name, "profile": codec.profile,
                "sample_rate": getattr(codec, "sample_rate", None), "channels": getattr(codec, "channels", None),
                "width": getattr(codec, "width", None), "height": getattr(codec, "height", None),
                "frames": stream.frames, "metadata": dict(stream.metadata),
                "default": bool(stream.disposition & av.stream.Disposition.default),
                "kbps": round((stream.bit_rate or 0) / 1000),
            })  # fmt: skip
        digests = [hashlib.sha256() for _ in container.streams]
        for packet in container.demux():
            if packet.size:
                digests[packet.stream.index].update(bytes(packet))
        for stream, digest in zip(streams, digests, strict=True):
            stream["packets"] = digest.hexdigest()[:16]  # the same encoder on the same samples: the same bytes
        return {
            "streams": streams,
            "metadata": dict(container.metadata),
            "duration": round((container.duration or 0) / av.time_base, 2),
            "boxes": [b for b in top_level_boxes(path) if b in ("moov", "mdat")],
        }


def compare_masters(ours: Path, bare: Path) -> list[str]:
    """Where the two files differ (none: the same file)."""
    a, b = describe_master(ours), describe_master(bare)
    differences = [f"{key}: {a[key]} vs {b[key]}" for key in ("metadata", "duration", "boxes") if a[key] != b[key]]
    if len(a["streams"]) != len(b["streams"]):  # type: ignore[arg-type]
        return [*differences, f"{len(a['streams'])} vs {len(b['streams'])} streams"]  # type: ignore[arg-type]
    for number, (x, y) in enumerate(zip(a["streams"], b["streams"], strict=True)):  # type: ignore[call-overload]
        for key in x:
            if key == "kbps" and abs(x[key] - y[key]) <= max(2, 0.01 * y[key]):
                continue
            if x[key] != y[key]:
                differences.append(f"stream {number} {key}: {x[key]} vs {y[key]}")
    return differences


@dataclass
class Pairs:
    """Paired alternating runs of an export and its bare FFmpeg command, each pair on a run of its own."""

    ours: list[Timed] = field(default_factory=list)
    bare: list[Timed] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # load average (1 min) at the start of each pair
    first_task: str = ""  # the first pair's export task, to compare with first_bare
    first_bare: Path | None = None

    def ratio(self) -> float:
        return statistics.median(o.wall / b.wall for o, b in zip(self.ours, self.bare, strict=True))

    def walls(self) -> tuple[list[float], list[float]]:
        return [t.wall for t in self.ours], [t.wall for t in self.bare]


def paired_exports(
    server: Server,
    args: argparse.Namespace,
    video: Path,
    dubs: Dubs,
    output_format: str,
    bare_side: Callable[[Path, list[Path], int], tuple[list[str], Path]],
) -> Pairs:
    """``args.repeats`` pairs (at least MASTER_QUICK_PAIRS when the bare command takes under QUICK_SECONDS).

    A new run per pair (an export that exists is answered, not made), imported before timing; pairs
    alternate which side goes first. ``bare_side(source, dubs, repeat)`` gives the bare command on the
    run's stored files and the file it writes, kept until the caller removes it, as altdub keeps its.
    """
    files = {short_name: make_tone(args.work, args.minutes, tone) for short_name, _, _, tone in dubs}
    pairs = Pairs()
    runs = [import_run(server, video, files, name=MASTER_RUN_NAME) for _ in range(args.repeats)]
    os.sync()
    repeat = 0
    while repeat < args.repeats or (
        repeat < MASTER_QUICK_PAIRS and statistics.median(t.wall for t in pairs.bare) < QUICK_SECONDS
    ):
        if repeat == len(runs):  # a quick export: more pairs, on runs imported now
            runs += [import_run(server, video, files, name=MASTER_RUN_NAME) for _ in range(MASTER_QUICK_PAIRS - repeat)]
            os.sync()
        stored_video, stored_dubs = stored_master_inputs(server, runs[repeat], dubs)
        command, out = bare_side(stored_video, stored_dubs, repeat)
        pairs.loads.append(os.getloadavg()[0])
        if repeat % 2:
            os.sync()
            pairs.bare.append(timed_child(command, out))
        os.sync()
        timed, task_id = master_seconds(server, runs[repeat], output_format, dubs)
        pairs.ours.append(timed)
        if not repeat % 2:
            os.sync()
            pairs.bare.append(timed_child(command, out))
        if repeat == 0:
            pairs.first_task, pairs.first_bare = task_id, out
        repeat += 1
    return pairs


def cpu_usage(sides: list[Timed]) -> str:
    """FFmpeg's CPU time, its encoder threads, CPU ÷ wall and the machine's busy share, medians over ``sides``."""
    cpu = statistics.median(t.ffmpeg_cpu for t in sides)
    per_wall = statistics.median(t.ffmpeg_cpu / t.wall for t in sides)
    busy = statistics.median(t.machine_busy for t in sides)
    encoders = [seconds for t in sides for seconds in t.encoders()]
    threads = f"{len(sides[0].encoders())} encoder threads, {min(encoders):.1f}-{max(encoders):.1f} s each"
    peak = statistics.median(t.peak for t in sides)
    wanted = statistics.median((t.ffmpeg_cpu + t.waited) / t.wall for t in sides)
    return (
        f"FFmpeg {cpu:.1f} s CPU ({threads}), CPU ÷ wall {per_wall:.2f} (peak second {peak:.2f}; "
        f"with the time its threads waited for a core {wanted:.2f}), machine {busy:.0%} busy"
    )


def cpu_row(report: Report, target: str, pairs: Pairs) -> None:
    server_cpu = statistics.median(t.server_cpu for t in pairs.ours)
    cpu_ratio = statistics.median(o.ffmpeg_cpu / b.ffmpeg_cpu for o, b in zip(pairs.ours, pairs.bare, strict=True))
    report.add(Row(target, f"{cpu_usage(pairs.ours)}; server {server_cpu:.2f} s CPU", cpu_usage(pairs.bare),
                   f"{cpu_ratio:.3f} (FFmpeg CPU)", "both cores: CPU ÷ wall near 2", None))  # fmt: skip


def master_export(report: Report, args: argparse.Namespace, video: Path) -> None:
    """Target 8: a four-language mp4 master against the bare FFmpeg command that makes the same file (≤ 1.05).

    Paired runs (paired_exports); CPU ÷ wall shows whether the four AAC encodes use both cores.
    """

    def bare_side(source: Path, dubs: list[Path], repeat: int) -> tuple[list[str], Path]:
        out = args.work / f"master-bare-{repeat}.mp4"
        return master_command(source, dubs, out), out

    with altdub_server(args.work / "data-master") as server:
        pairs = paired_exports(server, args, video, MASTER_DUBS, "mp4", bare_side)
        assert pairs.first_bare is not None
        differences = compare_masters(stored_export(server, pairs.first_task), pairs.first_bare)
    for out in args.work.glob("master-bare-*.mp4"):
        out.unlink()
    ratio, walls = pairs.ratio(), pairs.walls()
    same = "same file" if not differences else "**files differ**: " + "; ".join(differences)
    report.add(Row("8. 4-language mp4 master", spread(walls[0]), f"{spread(walls[1])}, bare `ffmpeg` ({same})",
                   f"{ratio:.3f}", "≤ 1.05", ratio <= 1.05 and not differences))  # fmt: skip
    cpu_row(report, "8. master, CPU time", pairs)
    report.notes.append(
        f"8: load average (1 min) at the start of each pair: {', '.join(f'{load:.2f}' for load in pairs.loads)}."
    )


def package_command(video: Path, dubs: list[Path], folder: Path) -> tuple[list[str], Path]:
    """The HLS package's segments as a user makes them: FFmpeg's DASH muxer with ``-hls_playlist``, no filters.

    The same mapping, codecs, bitrate, language tags, segment duration, adaptation sets, templates and
    names as altdub's plan (packaging.package_plan); FFmpeg's own HLS master and MPD are left as they come
    (altdub's finishing of them is its own cost). Makes ``folder``; returns the command and the MPD it writes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-i", file_arg(video)]
    for dub in dubs:
        command += ["-i", file_arg(dub)]
    command += ["-map", "0:v"] + [arg for n in range(len(dubs)) for arg in ("-map", f"{n + 1}:a")]
    command += ["-c:v", "copy", "-c:a", "aac", "-b:a", PACKAGE_BITRATE]
    for n, (_, iso639_2, _, _) in enumerate(PACKAGE_DUBS[: len(dubs)]):
        command += [f"-metadata:s:a:{n}", f"language={iso639_2}"]
    sets = " ".join(["id=0,streams=v", *(f"id={n + 1},streams={n + 1}" for n in range(len(dubs)))])
    out = folder / "manifest.mpd"
    command += [
        "-map_metadata", "-1", "-f", "dash", "-seg_duration", str(SEGMENT_SECONDS), "-use_template", "1",
        "-use_timeline", "1", "-adaptation_sets", sets, "-hls_playlist", "1",
        "-init_seg_name", "init-$RepresentationID$.m4s", "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
        file_arg(out),
    ]  # fmt: skip
    return command, out


def representation_packets(folder: Path, representation: str) -> str:
    """A digest of every packet's bytes of one representation: its init segment and chunks read as one file."""
    data = (folder / f"init-{representation}.m4s").read_bytes()
    data += b"".join(p.read_bytes() for p in sorted(folder.glob(f"chunk-{representation}-*.m4s")))
    digest = hashlib.sha256()
    with av.open(io.BytesIO(data), format="mp4") as container:
        for packet in container.demux():
            if packet.size:
                digest.update(bytes(packet))
    return digest.hexdigest()


def segment_representation(name: str) -> str:
    """The representation a segment belongs to: ``init-2.m4s`` and ``chunk-2-00007.m4s`` are both 2's."""
    return name.split("-")[1].removesuffix(".m4s")


def compare_packages(ours: Path, bare: Path) -> tuple[list[str], str]:
    """Where two packages' segments differ (none: the same segments), and what was compared.

    The same list of files (the manifests are altdub's own, so only their names count), every
    video segment byte-identical, and every audio representation's packets identical (its
    segments' bytes too, when they are).
    """
    names = sorted(p.name for p in ours.iterdir()), sorted(p.name for p in bare.iterdir())
    differences = []
    if names[0] != names[1]:
        only = set(names[0]) ^ set(names[1])
        differences.append(f"file lists differ ({len(names[0])} vs {len(names[1])} files: {sorted(only)[:4]})")
    segments = [n for n in names[0] if n.endswith(".m4s") and n in names[1]]
    unequal = {n for n in segments if (ours / n).read_bytes() != (bare / n).read_bytes()}
    representations = sorted({segment_representation(n) for n in segments})
    for representation in representations:
        mine = {n for n in unequal if segment_representation(n) == representation}
        if not mine:
            continue
        if representation == "0":
            differences.append(f"{len(mine)} video segments differ")
        elif representation_packets(ours, representation) != representation_packets(bare, representation):
            differences.append(f"representation {representation}: packets differ")
    video = sum(1 for n in segments if segment_representation(n) == "0")
    compared = f"{len(names[0])} files, {len(segments)} segments ({video} video) " + (
        "byte-identical" if not unequal else f"of which {len(unequal)} differ in bytes"
    )
    return differences, compared


def package_export(report: Report, args: argparse.Namespace, video: Path) -> None:
    """Target 9: a three-language HLS package against the bare FFmpeg command that makes the same segments (≤ 1.05).

    Paired runs (paired_exports). Then, on runs of their own, an mp4 master of the same languages
    and the package after it, both timed: nothing is reused yet (encode-once is issue 17).
    """

    def bare_side(source: Path, dubs: list[Path], repeat: int) -> tuple[list[str], Path]:
        return package_command(source, dubs, args.work / f"package-bare-{repeat}")

    files = {short_name: make_tone(args.work, args.minutes, tone) for short_name, _, _, tone in PACKAGE_DUBS}
    with altdub_server(args.work / "data-package") as server:
        pairs = paired_exports(server, args, video, PACKAGE_DUBS, "hls", bare_side)
        assert pairs.first_bare is not None
        ours = stored_export(server, pairs.first_task).parent  # the entry (master.m3u8) is in the package's folder
        differences, compared = compare_packages(ours, pairs.first_bare.parent)
        for folder in args.work.glob("package-bare-*"):
            shutil.rmtree(folder)
        count = max(1, min(args.repeats, PACKAGE_AFTER_MASTER))
        runs = [import_run(server, video, files, name=MASTER_RUN_NAME) for _ in range(count)]
        masters, packages = [], []
        for run_id in runs:
            os.sync()
            masters.append(master_seconds(server, run_id, "mp4", PACKAGE_DUBS)[0].wall)
            os.sync()
            packages.append(master_seconds(server, run_id, "hls", PACKAGE_DUBS)[0].wall)
    ratio, walls = pairs.ratio(), pairs.walls()
    same = f"same segments: {compared}" if not differences else "**segments differ**: " + "; ".join(differences)
    report.add(Row("9. 3-language HLS package", spread(walls[0]), f"{spread(walls[1])}, bare `ffmpeg` ({same})",
                   f"{ratio:.3f}", "≤ 1.05", ratio <= 1.05 and not differences))  # fmt: skip
    cpu_row(report, "9. package, CPU time", pairs)
    after = statistics.median(packages) / statistics.median(walls[0])
    report.add(Row("9. package after a master", f"mp4 master {spread(masters)}, then the package {spread(packages)}",
                   f"the package alone (above): {spread(walls[0])}", f"{after:.3f} (package after ÷ alone)",
                   "time reported; no reuse yet (encode-once is issue 17): a baseline for it", None))  # fmt: skip
    report.notes.append(
        f"9: load average (1 min) at the start of each pair: {', '.join(f'{load:.2f}' for load in pairs.loads)}."
    )


def handoff_command(video: Path, dub: Path, mix: Path, original: Path) -> list[str]:
    """The two 48 kHz 24-bit WAVs of a one-language tracks_zip as a user types them: no bext, no padding, no zip."""
    return [
        ffmpeg_executable(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-i", file_arg(dub),
        "-i", file_arg(video), "-map", "0:a", "-c:a", "pcm_s24le", "-ar", "48000", file_arg(mix),
        "-map", "1:a", "-c:a", "pcm_s24le", "-ar", "48000", file_arg(original),
    ]  # fmt: skip


def high_water_mark(pid: int) -> int:
    """The most resident memory a process has used (VmHWM), in bytes; 0 once it has ended."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")), 0)


def sampled_export(server: Server, run_id: int, output_format: str) -> tuple[float, dict, float, float]:
    """An export timed as ``export_seconds``, with the server's RSS rise and FFmpeg's peak RSS, in MiB.

    Both sampled every 50 ms while it runs.
    """
    before = server.rss()
    server_peak, ffmpeg_peak = [before], [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            server_peak.append(server.rss())
            child = ffmpeg_child(server.process.pid)
            if child is not None:
                ffmpeg_peak.append(high_water_mark(child))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        seconds, status = export_seconds(server, run_id, output_format)
    finally:
        stop.set()
        sampler.join()
    return seconds, status, (max(server_peak) - before) / MIB, max(ffmpeg_peak) / MIB


HANDOFF_FORMATS = ("tracks_zip", "aaf")  # the zip streamed from disk; the AAF written by pyaaf2 in the server


def handoff_export(report: Report, args: argparse.Namespace, video: Path, dub: Path) -> None:
    """Target 10: a tracks_zip and an AAF of the source with one language, their time and the memory they take.

    Their stems (the Spanish mix, the original) are 48 kHz 24-bit WAVs, zipped by streaming from disk or
    embedded by pyaaf2 channel by channel: the server's RSS must not grow with the file's size. The
    baseline writes the same two WAVs with bare FFmpeg.
    """
    with altdub_server(args.work / "data-handoff") as server:
        runs = [import_run(server, video, dub) for _ in range(args.repeats)]
        os.sync()
        mix, original = args.work / "bare-mix.wav", args.work / "bare-original.wav"
        for output_format in HANDOFF_FORMATS:
            walls, bare, rises, ffmpeg_peaks, sizes = [], [], [], [], []
            for repeat, run_id in enumerate(runs):
                command = handoff_command(*stored_inputs(server, run_id), mix, original)
                if repeat % 2:  # alternate which goes first, as target 1
                    bare.append(timed_run(command, mix))
                seconds, status, rise, ffmpeg_peak = sampled_export(server, run_id, output_format)
                walls.append(seconds)
                rises.append(rise)
                ffmpeg_peaks.append(ffmpeg_peak)
                with server.http.stream("GET", status["output_url"], timeout=None) as response:
                    sizes.append(sum(len(chunk) for chunk in response.iter_raw(1 << 20)))
                if not repeat % 2:
                    bare.append(timed_run(command, mix))
            ratio = statistics.median(walls) / statistics.median(bare)
            memory_figure = f"server +{max(rises):.1f} MiB RSS; FFmpeg peak {max(ffmpeg_peaks):.0f} MiB"
            report.add(Row(f"10. {output_format}, one language", spread(walls),
                           spread(bare) + " (bare FFmpeg, the two WAVs)", f"{ratio:.3f}", "—", None))  # fmt: skip
            report.add(Row(f"10. {output_format}, memory", memory_figure, f"{max(sizes) / MIB:.0f} MiB file", "—",
                           "server ≤ 64 MiB", max(rises) <= 64))  # fmt: skip
        mix.unlink()
        original.unlink()


QC_QUICK_PAIRS = 5  # pairs at least on --quick: a 1-minute export takes a second or two


def qc_cost(report: Report, args: argparse.Namespace, video: Path, dub: Path) -> None:
    """Target 11: the QC report's added cost, an mp4 export with reports on over the same with them off (≤ 1.10).

    Two servers side by side, one with ``ALTDUB_QC_REPORTS=false``; a new run on each per pair (an export that
    exists is answered, not made), imported before timing; pairs alternate which server goes first, and the
    ratio is the median of the pairs' ratios.
    """
    count = max(args.repeats, QC_QUICK_PAIRS if args.minutes < 2 else 1)
    with (
        altdub_server(args.work / "data-qc-on") as on,
        altdub_server(args.work / "data-qc-off", ALTDUB_QC_REPORTS="false") as off,
    ):
        runs = {server.url: [import_run(server, video, dub) for _ in range(count)] for server in (on, off)}
        os.sync()
        timed: dict[str, list[float]] = {on.url: [], off.url: []}
        cpu: dict[str, list[float]] = {on.url: [], off.url: []}  # FFmpeg's CPU seconds (the server's reaped children)
        loads, tasks = [], []
        for repeat in range(count):
            loads.append(os.getloadavg()[0])
            for server in (on, off) if repeat % 2 == 0 else (off, on):
                os.sync()
                children = process_cpu(server.process.pid)[1]
                started = time.perf_counter()
                task_id = request_export(server, runs[server.url][repeat], "mp4")
                wait_for(server, task_id)
                timed[server.url].append(time.perf_counter() - started)
                cpu[server.url].append(process_cpu(server.process.pid)[1] - children)
                if server is on:
                    tasks.append(task_id)
        with sqlite3.connect(on.data_dir / "altdub.db") as db:
            sizes = [
                db.execute("SELECT length(qc_report) FROM export_tasks WHERE id = ?", (t,)).fetchone()[0] for t in tasks
            ]
            (first,) = db.execute("SELECT qc_report FROM export_tasks WHERE id = ?", (tasks[0],)).fetchone()
    ratio = statistics.median(a / b for a, b in zip(timed[on.url], timed[off.url], strict=True))
    verdict = json.loads(first)["passed"]
    cpu_ratio = statistics.median(a / b for a, b in zip(cpu[on.url], cpu[off.url], strict=True))
    report.add(Row("11. QC report, mp4", spread(timed[on.url]), f"{spread(timed[off.url])}, reports off",
                   f"{ratio:.3f}", "≤ 1.10", ratio <= 1.10 and all(sizes)))  # fmt: skip
    report.add(Row("11. QC report, FFmpeg CPU time", f"{statistics.median(cpu[on.url]):.2f} s",
                   f"{statistics.median(cpu[off.url]):.2f} s, reports off", f"{cpu_ratio:.3f} (FFmpeg CPU)",
                   "the meter's own work, beside the encoder", None))  # fmt: skip
    report.notes.append(
        f"11: the report of each export stored ({statistics.median(sizes) / 1024:.1f} KiB of JSON; the first one "
        f"{'passes' if verdict else 'fails'}); load average (1 min) at the start of each pair: "
        f"{', '.join(f'{load:.2f}' for load in loads)}."
    )


# Target 12's eight languages: target 8's four and four more, a tone each.
EIGHT_DUBS: Dubs = (
    *MASTER_DUBS,
    ("pt-pt", "por", "Portuguese (Portugal)", 990),
    ("nl-nl", "dut", "Dutch (Netherlands)", 1100),
    ("pl-pl", "pol", "Polish (Poland)", 1210),
    ("sv-se", "swe", "Swedish (Sweden)", 1320),
)
REUSE_GOAL = 0.15  # a second deliverable of the same language and options: at most this share of the first's time


def child_cpu(command: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one FFmpeg command, its CPU from os.wait4 (that process alone)."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{command[:3]} failed")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def encode_once(report: Report, args: argparse.Namespace, video: Path) -> None:
    """Target 12 (issue 17, encode once): a second deliverable of the same dub and options reuses the encoded
    audio (≤ 15 % of the first's time), and an 8-language mp4 master encodes its languages side by side, then
    remuxes once: wall ≤ 1.10 x (the per-language encodes' CPU ÷ cores + the remux).

    The ideal is measured on the run's stored files with altdub's own commands run by hand: each language's
    intermediate encode (CPU from os.wait4, whatever ran beside it), then the remux of the eight (wall).
    """
    dub = make_tone(args.work, args.minutes, 660)
    firsts, seconds = [], {"m4a": [], "mov": []}
    with altdub_server(args.work / "data-encode-once") as server:
        for _ in range(args.repeats):
            run_id = import_run(server, video, dub, name=MASTER_RUN_NAME)
            os.sync()
            firsts.append(export_seconds(server, run_id, "mp4")[0])
            for output_format, times in seconds.items():
                os.sync()
                times.append(export_seconds(server, run_id, output_format)[0])
        for output_format, times in seconds.items():
            share = statistics.median(t / f for t, f in zip(times, firsts, strict=True))
            report.add(Row(f"12. encode once: {output_format} after an mp4 (same dub, same options)", spread(times),
                           f"the mp4 first: {spread(firsts)}", f"{share:.3f}", f"≤ {REUSE_GOAL:.2f}",
                           share <= REUSE_GOAL))  # fmt: skip

        files = {short_name: make_tone(args.work, args.minutes, tone) for short_name, _, _, tone in EIGHT_DUBS}
        run_id = import_run(server, video, files, name=MASTER_RUN_NAME)
        os.sync()
        shipped, _ = master_seconds(server, run_id, "mp4", EIGHT_DUBS)  # reports on: the meter on every encode
    walls, per_wall, ideals = [], [], []
    with altdub_server(args.work / "data-encode-once-master", ALTDUB_QC_REPORTS="false") as server:
        for _ in range(args.repeats):  # like for like: the ideal makes no QC report
            run_id = import_run(server, video, files, name=MASTER_RUN_NAME)
            os.sync()
            timed, _ = master_seconds(server, run_id, "mp4", EIGHT_DUBS)
            walls.append(timed.wall)
            per_wall.append(timed.ffmpeg_cpu / timed.wall)
            ideals.append(ideal_seconds(server, run_id, args.work))
    ratio = statistics.median(w / i for w, i in zip(walls, ideals, strict=True))
    cores = os.cpu_count() or 1
    report.add(Row("12. 8-language mp4 master, encodes side by side", f"{spread(walls)}, FFmpeg CPU ÷ wall "
                   f"{statistics.median(per_wall):.2f}", f"{spread(ideals)}: per-language encodes' CPU ÷ {cores} "
                   "cores + the remux", f"{ratio:.3f}", "≤ 1.10", ratio <= 1.10))  # fmt: skip
    report.add(Row("12. 8-language mp4 master, QC report on (the default)", f"{shipped.wall:.2f} s (n=1), FFmpeg CPU "
                   f"÷ wall {shipped.ffmpeg_cpu / shipped.wall:.2f}", f"the ideal above: {spread(ideals)}",
                   f"{shipped.wall / statistics.median(ideals):.3f}",
                   "— (the meter on each encode: no core is left to hide it)", None))  # fmt: skip


def ideal_seconds(
    server: Server, run_id: int, work: Path, output_format: str = "mp4", dubs: Dubs = EIGHT_DUBS
) -> float:
    """The per-language encodes' CPU ÷ cores plus the wall of the command on their intermediates, on the run's
    stored files (altdub's own plans): the remux of an mp4 master (build_plan), or the packaging of an HLS or
    DASH package (package_plan). What encode once can reach: the encodes on every core, then one copy."""
    source, stored = stored_master_inputs(server, run_id, dubs)
    source_info = probe(source)
    base = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    folder = work / "ideal"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    cpu, tracks = 0.0, []
    for number, (path, (_, iso639_2, name, _)) in enumerate(zip(stored, dubs, strict=True)):
        info = probe(path)
        track = AudioTrack(path, info.audio[0], info.duration, iso639_2, name)
        options = resolve_options(output_format, {}, info.audio[0])
        out = folder / f"ideal-{number}.m4a"
        cpu += child_cpu([*base, *intermediate_plan(track, options, source_info.duration, out)])[1]
        encoded = probe(out)
        tracks.append(AudioTrack(out, encoded.audio[0], encoded.duration, iso639_2, name, encoded=True))
    title = f"{MASTER_RUN_NAME} ({', '.join(name for _, _, name, _ in dubs)})"
    inputs = ExportInputs(dubs=tuple(tracks), duration=source_info.duration, title=title, video_path=source,
                          video=source_info.video[0])  # fmt: skip
    options = resolve_options(output_format, {}, probe(stored[0]).audio[0])
    if CATALOGUE[output_format].package_entry is None:
        plan = build_plan(output_format, inputs, options, folder / f"ideal.{CATALOGUE[output_format].extension}")
    else:
        (folder / "package").mkdir()
        plan = package_plan(output_format, inputs, options, folder / "package")
    wall, _ = child_cpu([*base, *plan.args])
    shutil.rmtree(folder)
    return cpu / (os.cpu_count() or 1) + wall


def hour_media(args: argparse.Namespace, base_video: Path, base_dub: Path, base_minutes: float) -> tuple[Path, Path]:
    """The hour's source and dub: the base repeated (round(hour ÷ base) times, as target 7), or cut when shorter."""
    if args.hour_minutes < base_minutes:
        return cut_media(args.work, base_video, base_dub, args.hour_minutes)
    if args.hour_minutes == base_minutes:
        return base_video, base_dub
    return concat_media(args.work, base_video, base_dub, round(args.hour_minutes / base_minutes), args.hour_minutes)


def delete_run(server: Server, run_id: int) -> None:
    """The run and its files removed now: the hour's run holds ~12 GB of inputs, and its export as much again."""
    server.http.delete(f"/runs/{run_id}").raise_for_status()


def title_hour(report: Report, args: argparse.Namespace, base_video: Path, base_dub: Path, base_minutes: float) -> None:
    """Target 13 (a title's hour): an 8-language mp4 master and HLS package of the 60-minute source, each wall
    ≤ 1.10 x (its per-language encodes' CPU ÷ cores + the remux or packaging), CPU ÷ wall showing both cores
    busy; and the plain floor (target 1's pairs) on that source, ≤ 1.05.

    The master and the package each on a run of its own (nothing reused between them), deleted once timed.
    The work files this target makes are removed at the end (the hour's source is ~6 GB, its dubs 5.5 GB);
    the servers' data directories go with their servers (altdub_server).
    """
    before = set(args.work.iterdir())  # files there before (the base source, other targets' tones) stay
    try:
        video, _ = hour_media(args, base_video, base_dub, base_minutes)
        # Dubs as long as the source's container: a repeated 1-minute source ends an AAC frame (21 ms) after its
        # picture, and a dub that much shorter would be padded by altdub, not by the plain command (not the same file).
        length = probe(video).duration / 60
        files = {short_name: make_tone(args.work, length, tone) for short_name, _, _, tone in EIGHT_DUBS}
        dub = files[EIGHT_DUBS[0][0]]  # 660 Hz, as make_media's dub
        names = {"mp4": "mp4 master", "hls": "HLS package"}
        timings: dict[str, tuple[list[Timed], list[float]]] = {output_format: ([], []) for output_format in names}
        loads: list[float] = []
        with altdub_server(args.work / "data-hour", ALTDUB_QC_REPORTS="false") as server:  # as the ideal: no QC
            for _ in range(args.hour_repeats):
                for output_format, (timed, ideals) in timings.items():
                    run_id = import_run(server, video, files, name=MASTER_RUN_NAME)
                    os.sync()
                    loads.append(os.getloadavg()[0])
                    timed.append(master_seconds(server, run_id, output_format, EIGHT_DUBS)[0])
                    os.sync()
                    ideals.append(ideal_seconds(server, run_id, args.work, output_format, EIGHT_DUBS))
                    delete_run(server, run_id)
        cores = os.cpu_count() or 1
        for output_format, (timed, ideals) in timings.items():
            walls = [t.wall for t in timed]
            ratio = statistics.median(w / i for w, i in zip(walls, ideals, strict=True))
            per_wall = statistics.median(t.ffmpeg_cpu / t.wall for t in timed)
            busy = statistics.median(t.machine_busy for t in timed)
            then = "the remux" if output_format == "mp4" else "the packaging"
            report.add(Row(f"13. 8-language {names[output_format]}, {length:.0f}-minute source",
                           f"{spread(walls)}, FFmpeg CPU ÷ wall {per_wall:.2f} (machine {busy:.0%} busy)",
                           f"{spread(ideals)}: per-language encodes' CPU ÷ {cores} cores + {then}", f"{ratio:.3f}",
                           "≤ 1.10", ratio <= 1.10))  # fmt: skip
        report.notes.append(
            "13: load average (1 min) at the start of each export (the mp4 master, then the HLS package, per "
            f"repeat): {', '.join(f'{load:.2f}' for load in loads)}."
        )
        conversion_overhead(report, args, video, dub, label=f"13. plain floor on the {length:.0f}-minute source",
                            formats=args.hour_formats, repeats=args.hour_repeats, min_repeats=args.hour_repeats,
                            data_dir="data-hour-floor")  # fmt: skip
    finally:
        for path in set(args.work.iterdir()) - before:
            if path.is_file():  # the data directories went with their servers
                path.unlink()


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
    return slope, mean_y - slope * mean_x


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a ~2-minute sanity check (targets 1 without MXF, 3, 4, 12): {QUICK_SETTINGS}",
    )
    parser.add_argument("--minutes", type=float, default=10, help="length of the 1080p source")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-repeats", type=int, default=QUICK_REPEATS, help="target 1's repeats of quick formats")
    parser.add_argument("--scaling", type=lambda s: [float(x) for x in s.split(",")], default=[1, 10, 60])
    parser.add_argument("--encode-seconds", type=float, default=60, help="length timed for the re-encode baseline")
    parser.add_argument("--encode-preset", default="medium", help="x264 preset of the re-encode baseline")
    parser.add_argument("--memory-gib", type=float, default=2.0)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    one_plan = [f.name for f in CATALOGUE.values() if f.package_entry is None and not f.handoff]  # one FFmpeg plan
    parser.add_argument("--formats", type=lambda s: s.split(","), default=one_plan, help="formats of target 1")
    parser.add_argument("--hour-minutes", type=float, default=60, help="target 13's source length (the base repeated)")
    parser.add_argument("--hour-repeats", type=int, default=1, help="target 13's repeats (each is long)")
    parser.add_argument("--hour-formats", type=lambda s: s.split(","), default=["mp3", "mp4", "mkv"],
                        help="target 13's plain-floor formats")  # fmt: skip
    parser.add_argument("--only", default="", help="comma-separated scenario numbers to run (default: all)")
    parser.add_argument("--work", type=Path, default=ROOT / "work")
    parser.add_argument("--out", type=Path, default=ROOT / "REPORT.md")
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**QUICK_SETTINGS)
        args = parser.parse_args()  # what the command line sets still wins
    args.work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else {str(number) for number in range(1, 14)}
    report = Report()
    started, load_at_start = time.time(), os.getloadavg()[0]
    video, dub = make_media(args.work, args.minutes)
    scenarios: list[tuple[str, Callable[[], object]]] = []
    medians: dict[str, float] = {}

    def overhead() -> None:
        medians.update(conversion_overhead(report, args, video, dub))

    scenarios += [("1", overhead)]
    scenarios += [
        ("2", lambda: stream_copy(report, args, video, medians or conversion_overhead(report, args, video, dub)))
    ]
    scenarios += [("3", lambda: cached_requests(report, args, dub))]
    scenarios += [("4", lambda: concurrent_identical(report, args, video, dub))]
    scenarios += [("5", lambda: parallel_exports(report, args, video, dub))]
    scenarios += [("6", lambda: memory(report, args))]
    scenarios += [("7", lambda: scaling(report, args, video, dub, args.minutes))]
    scenarios += [("8", lambda: master_export(report, args, video))]
    scenarios += [("9", lambda: package_export(report, args, video))]
    scenarios += [("10", lambda: handoff_export(report, args, video, dub))]
    scenarios += [("11", lambda: qc_cost(report, args, video, dub))]
    scenarios += [("12", lambda: encode_once(report, args, video))]
    scenarios += [("13", lambda: title_hour(report, args, video, dub, args.minutes))]
    for number, scenario in scenarios:
        if number in only:
            try:
                scenario()
            except Exception as exc:  # one scenario's failure must not lose the others' figures
                report.add(Row(f"{number}. (failed)", f"{exc.__class__.__name__}: {exc}", "—", "—", "—", False))
    ran = {int(number) for number, _ in scenarios if number in only}
    write_report(args, report, time.time() - started, (load_at_start, os.getloadavg()[0]), ran)


def ffmpeg_version() -> str:
    return subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True).stdout.split()[2]


def method(args: argparse.Namespace) -> list[str]:
    """How each target is measured, for the report's notes."""
    return [
        "1: altdub's time runs from the export request to the answer that says SUCCESS, the client waiting by "
        "long polling (`GET /dub-alt-format/{task}?wait=30`) over one kept HTTP connection; the baseline is the "
        "plainest command a user types for an equivalent file (same codec, bitrate, container, tags: `ffmpeg -i "
        "dub.wav -c:a libmp3lame -b:a 192k out.mp3`; `-map 0:v -map 1:a -c:v copy` and the audio codec for video, "
        "`-c copy` for mkv; no filters, no `-t`; `-movflags +faststart` where altdub's file has it; MXF: the XDCAM "
        "recipe and a channelsplit), run on the same stored input files, writing a new file; the first pair's two "
        "files are compared (streams, tags, every packet). "
        "Each pair runs back to back, alternating which goes first; the ratio is the median of the pairs' ratios. "
        f"Conversions under {QUICK_SECONDS:g} s are repeated at least {args.min_repeats} times. Like for like, the "
        "pairs' server runs with `ALTDUB_QC_REPORTS=false` (the plain command makes no QC report); after each pair "
        "the same export on a second server as shipped (reports on) is timed: the rows 'QC report on' give the "
        "meter's cost per format against the same plain command.",
        "2: the re-encode baseline is x264 at FFmpeg's default preset (medium) over the first 60 s of the source, "
        "scaled to its length. mp4 and mov exports encode the dub to AAC, which is most of their time; the picture "
        "is copied.",
        "3: `wrk -t2 -c64` (Debian's wrk 4.1; the bench finds it on PATH, or installs it with `apt-get install wrk` "
        "when run as root) for the set seconds after a 2 s warm-up, in alternating pairs, each server started anew: "
        "`altdub serve` as shipped (its loop, its HTTP limits, its access log with secrets redacted) against "
        "`uvicorn bench.bare_app:app` with uvicorn's defaults (access log on, level info); both logs go to a file. "
        "Ratios are medians of the pairs' ratios.",
        "5: altdub's 8 exports are requested one after the other (each answers at once with a task) and waited for "
        "together; the bare script runs the same 8 FFmpeg commands on the same stored inputs in the same order, 2 at a "
        "time (altdub's default workers).",
        "6: resident memory of the server process sampled every 50 ms while a 2 GiB WAV is imported, exported to wav "
        "and the 2 GiB result downloaded.",
        "7: the 60-minute source is the 10-minute one repeated (stream copy); slope from a least-squares line through "
        "the medians.",
        "8: one run per pair, imported before timing: the source and four stereo 48 kHz 16-bit WAV dubs as long as"
        " it (a tone each: 660, 550, 770, 880 Hz). altdub's time runs from `POST /runs/{id}/exports` "
        '`{"output_format": "mp4", "languages": ["es-es", "fr-fr", "de-de", "it-it"]}` to SUCCESS (long poll). The'
        " baseline is the command a user types for the same file, on the run's stored files: `ffmpeg -i source -i "
        "es.wav -i fr.wav -i de.wav -i it.wav -map 0:v -map 1:a … -map 4:a -c:v copy -c:a aac -b:a 192k` with "
        "`-metadata:s:a:N language=… title=…` and `-disposition:a:N` per track, `-map_metadata -1 -metadata "
        "title=… -movflags +faststart`; no filters, no `-t`. The first pair's two files are compared: streams, "
        "codecs, profiles, frames, bitrates (within 1 %), tags, titles, default flags, length, moov before mdat, "
        "and every packet's bytes per stream (same file). CPU time: the baseline's from `os.wait4` (that FFmpeg "
        "process alone); altdub's FFmpeg from the server's `/proc/<pid>/stat` cutime+cstime before the request and"
        " after SUCCESS (the children the server reaped meanwhile: altdub waits for FFmpeg before it marks the "
        "task done, and nothing else runs), the server's own work (HTTP, database, output check) from its "
        "utime+stime. CPU ÷ wall: FFmpeg's CPU over the side's wall time (2.00 is both cores); its busiest second "
        "(the process's CPU read every 0.25 s); and, adding the time its threads were ready to run but waited for "
        "a core (`schedstat` of each thread), the cores it asked for. Encoder threads: FFmpeg's `enc0:N:aac` "
        "threads, read from `/proc`. Machine busy: the non-idle share of both cores over the same time "
        "(`/proc/stat`), other processes included.",
        "9: as 8 (paired runs, CPU time), with three dubs (660, 550, 770 Hz: es-es, the default, fr-fr, de-de). "
        'altdub: `POST /runs/{id}/exports` `{"output_format": "hls", "languages": ["es-es", "fr-fr", "de-de"]}` to '
        "SUCCESS (long poll): FFmpeg's DASH muxer with `-hls_playlist`, then altdub writes the HLS master and the "
        "MPD's languages and roles, drops the media playlists' program dates, checks the package and publishes the "
        "folder. The baseline is the command a user types for the same segments, on the run's stored files: "
        "`ffmpeg -i source -i es.wav -i fr.wav -i de.wav -map 0:v -map 1:a -map 2:a -map 3:a -c:v copy -c:a aac "
        f"-b:a {PACKAGE_BITRATE}` with `-metadata:s:a:N language=…`, `-map_metadata -1 -f dash -seg_duration "
        f"{SEGMENT_SECONDS} -use_template 1 -use_timeline 1 -adaptation_sets 'id=0,streams=v id=1,streams=1 …' "
        "-hls_playlist 1 -init_seg_name init-$RepresentationID$.m4s -media_seg_name "
        "chunk-$RepresentationID$-$Number%05d$.m4s manifest.mpd`; no filters, no `-t`, FFmpeg's manifests as they "
        "come. The first pair's two folders are compared: the same list of files, every segment's bytes, and for an "
        "audio representation whose bytes differ, its packets. Then, on runs of their own, an mp4 master of the "
        "same three languages and the HLS package after it, each timed from request to SUCCESS: altdub reuses "
        "nothing between them yet (encode-once is issue 17), so the package after a master is a baseline for it.",
        "10: one run per repeat (the source and the Spanish WAV dub), imported before timing; altdub's time runs "
        'from `POST /dub-alt-format/{id}/es-es` `{"output_format": "tracks_zip"}` (then `"aaf"` on the same runs) to '
        "SUCCESS (long poll): one FFmpeg run rendering the mix and the original as 48 kHz 24-bit Broadcast WAV padded "
        "to the programme, each probed and measured (the QC report), then zipped (stored) from disk, or split into "
        "mono channels and embedded in the AAF by pyaaf2. The baseline writes the same two WAVs with bare FFmpeg "
        "(`-map 0:a -c:a pcm_s24le -ar 48000 mix.wav -map 1:a … original.wav`; no bext, no padding, no zip). "
        "Memory: the server's RSS sampled every 50 ms during the export (its rise over the RSS before), and "
        "FFmpeg's VmHWM.",
        "11: two `altdub serve` side by side, one with `ALTDUB_QC_REPORTS=false`; per pair a new run on each, "
        'imported before timing, and `POST /dub-alt-format/{id}/es-es` `{"output_format": "mp4"}` timed to '
        "SUCCESS (long poll) on each, alternating which goes first. With reports on, the meter runs on the "
        "audio as the file holds it: inside the encoding FFmpeg run on its encoders' output (loopback decoders): "
        "the mp4's own run, which encodes its audio and keeps it as the intermediate (encode once); a deliverable "
        "that copies an intermediate reuses the reading stored with it.",
        "12: on runs of their own: the mp4 of a dub, then the m4a and the mov of the same dub and options (they "
        "copy its encoded audio: the ratio is the second's time over the first's, median of the runs); then an "
        "8-language mp4 master (tones of 660-1320 Hz), against the ideal on the same stored files: each language's "
        "intermediate encode by hand (altdub's own command; its CPU from os.wait4) ÷ the cores, plus the remux of "
        "the eight (wall). CPU ÷ wall: FFmpeg's CPU (the server's reaped children) over the master's wall. The "
        "masters timed against the ideal run on a server with `ALTDUB_QC_REPORTS=false` (the ideal makes no report); "
        "one more master, on a server as shipped, shows the meter's cost.",
        f"13: the {args.hour_minutes:g}-minute source is the {args.minutes:g}-minute one repeated (stream copy, as 7), "
        "with eight stereo 48 kHz WAV dubs as long as its container (the tones of 12; 660 Hz is the plain floor's "
        "dub). One `altdub serve` with `ALTDUB_QC_REPORTS=false` (like for like: the ideal makes no report); "
        "per repeat "
        f"({args.hour_repeats}), a new run for the 8-language mp4 master and another for the 8-language HLS package "
        "(nothing reused between them), each imported before timing, timed from `POST /runs/{id}/exports` to "
        "SUCCESS (long poll), then measured against its ideal on the same stored files: each language's "
        "intermediate encode by hand (altdub's own command, the master's or the package's bitrate; CPU from "
        "os.wait4) ÷ the cores, plus the wall of the remux (`build_plan`) or the packaging command "
        "(`packaging.package_plan`, FFmpeg's DASH muxer) on the eight intermediates, without altdub's manifest "
        "finishing, QC or publishing; the run is deleted after. CPU ÷ wall: FFmpeg's CPU (the server's reaped "
        "children) over the export's wall; machine busy as 8. Then target 1's pairs, one per format "
        f"({', '.join(args.hour_formats)}), on the same source and its dub, on a server of their own.",
        "What was changed to reach the targets, with before/after figures, and the causes of what is still missed: "
        "[FINDINGS.md](FINDINGS.md).",
    ]


ROUND_ONE = "## Round one"  # the previous round's report, kept below each new run's figures
ROUND_TWO = "## Round two (issue 17): the plain-FFmpeg floor, the cached POST as shipped, encode once"
TABLE_HEADER = "| target | altdub | baseline | ratio | goal | verdict |"
BASELINES_LINE = "Baselines ran in the same run on the same machine; the ratios are the targets."
EARLIER = "(earlier run)"  # appended to the first cell of a row carried over from a previous report
MEASURED_INTRO = "This run measured "  # the line before the list of when each target in the table was measured
WORDS_INTRO = "The earlier report's own words, kept with its rows:"
METHOD_HEADING = "How each target is measured:"
WHEN = "%Y-%m-%d %H:%M UTC"
MEASURED_LINE = re.compile(r"^- (\d+(?:, \d+)*): (\d{4}-\d\d-\d\d \d\d:\d\d UTC), (.*)$")


@dataclass
class Earlier:
    """A previous report's round two, read for the targets this run does not measure (a partial run keeps them)."""

    rows: dict[int, list[str]] = field(default_factory=dict)  # target: its table rows, in order
    notes: dict[int, list[str]] = field(default_factory=dict)  # target: its run's notes (load averages), no method
    measured: dict[int, tuple[str, str]] = field(default_factory=dict)  # target: (when, by what)
    words: list[str] = field(default_factory=list)  # what a person added to its header (where the rows came from)


def target_number(text: str) -> int | None:
    """The target a table row or a note is about: a row's first cell starts ``N.``, a note ``N:``."""
    match = re.match(r"(?:\|\s*)?(\d+)[.:]", text)
    return int(match.group(1)) if match else None


def read_round_two(text: str) -> Earlier:
    """The rows, run notes, per-target dates and hand-written header lines of a report's round two.

    Reports before per-target dates: every target's date is the report's own, and its method notes
    follow the run's notes in the same list, target 1's first (target 1 writes no run notes).
    """
    lines = text.splitlines()
    if TABLE_HEADER not in lines:
        return Earlier()
    header_at = lines.index(TABLE_HEADER)
    table_end = next((n for n in range(header_at + 1, len(lines)) if not lines[n].strip()), len(lines))
    earlier = Earlier()
    for line in lines[header_at + 1 : table_end]:
        number = target_number(line)  # None: the |---| line
        if number is not None:
            earlier.rows.setdefault(number, []).append(line)
    notes_at = next((n + 1 for n in range(table_end, len(lines)) if lines[n] == "Notes:"), len(lines))
    legacy = METHOD_HEADING not in lines
    for line in lines[notes_at:]:
        if not line.startswith("- ") or (legacy and line.startswith("- 1: ")):
            break
        number = target_number(line[2:])
        if number is not None:
            earlier.notes.setdefault(number, []).append(line[2:])
    made = re.search(r"Made by `([^`]*)`", text)
    when = re.search(r"\bon (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", text)
    fallback = (
        when.group(1) if when else "date unknown",
        f"in the report of that date, made by `{made.group(1) if made else '?'}`",
    )
    listed: dict[int, tuple[str, str]] = {}
    for line in lines[:header_at]:
        if match := MEASURED_LINE.match(line):
            listed |= {int(number): (match.group(2), match.group(3)) for number in match.group(1).split(", ")}
    earlier.measured = {number: listed.get(number, fallback) for number in earlier.rows}
    after = lines.index(BASELINES_LINE) + 1 if BASELINES_LINE in lines[:header_at] else header_at
    generated = (MEASURED_INTRO, WORDS_INTRO)
    earlier.words = [
        line for line in lines[after:header_at] if not line.startswith(generated) and not MEASURED_LINE.match(line)
    ]
    while earlier.words and not earlier.words[0].strip():
        earlier.words.pop(0)
    while earlier.words and not earlier.words[-1].strip():
        earlier.words.pop()
    return earlier


def carried_row(line: str) -> str:
    """An earlier report's row, its first cell marked as such (once)."""
    first, _, rest = line.removeprefix("| ").partition(" | ")
    return f"| {first if EARLIER in first else f'{first} {EARLIER}'} | {rest}"


def numbers(targets: list[int]) -> str:
    return ", ".join(str(number) for number in targets) or "none"


def named(targets: list[int]) -> str:
    """``target 4``, ``targets 1, 3``, ``no target``."""
    return {0: "no target", 1: "target "}.get(len(targets), "targets ") + (numbers(targets) if targets else "")


def write_report(
    args: argparse.Namespace, report: Report, elapsed: float, loads: tuple[float, float], ran: set[int]
) -> None:
    """This run's figures (round two's targets) above the previous round's report, kept as it was.

    A partial run (``--only``) keeps the previous report's round-two rows, and their run notes, of every
    target it did not run (``ran``, and any target it wrote rows for), marked as from an earlier run; each
    target's date and command are listed above the table and carried from report to report.
    """
    previous = args.out.read_text() if args.out.exists() else ""
    if ROUND_ONE in previous:
        kept = previous[previous.index(ROUND_ONE) :]
        earlier = read_round_two(previous[: previous.index(ROUND_ONE)])
    elif "## Round two" in previous:
        kept, earlier = "", read_round_two(previous)
    elif previous:
        kept = f"{ROUND_ONE} (issues 1-15: baselines were altdub's own FFmpeg commands run by hand)\n\n"
        kept += previous.replace("# altdub benchmark report\n", "", 1).strip() + "\n"
        earlier = Earlier()
    else:
        kept, earlier = "", Earlier()
    measured = ran | {number for row in report.rows if (number := target_number(f"| {row.target}")) is not None}
    carried = sorted(number for number in earlier.rows if number not in measured)
    rows = [(target_number(f"| {row.target}") or 0, row.markdown()) for row in report.rows]
    rows += [(number, carried_row(line)) for number in carried for line in earlier.rows[number]]
    rows.sort(key=lambda row: row[0])  # stable: a target's rows keep their order
    notes = [(target_number(note) or 0, note) for note in report.notes]
    notes += [(number, note) for number in carried for note in earlier.notes.get(number, [])]
    notes.sort(key=lambda note: note[0])
    command, now = f".venv/bin/python -m bench.run {' '.join(sys.argv[1:])}", time.strftime(WHEN, time.gmtime())
    when: dict[tuple[str, str], list[int]] = {(now, f"`{command}`"): sorted(measured)}
    for number in carried:
        when.setdefault(earlier.measured[number], []).append(number)
    lines = [
        "# altdub benchmark report",
        "",
        ROUND_TWO,
        "",
        f"Made by `{command}`",
        f"on {now} in {elapsed / 60:.1f} minutes:",
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, FFmpeg {ffmpeg_version()}.",
        f"Machine load (load average, 1 min): {loads[0]:.2f} at the start, {loads[1]:.2f} at the end (other",
        "processes' work on the same cores slows both sides of a pair; the more load, the noisier the ratios).",
        f"Source: {args.minutes:g}-minute 1920x1080 25 fps H.264 test pattern with stereo 48 kHz audio; dub: a",
        f"{args.minutes:g}-minute stereo 48 kHz PCM WAV. Each scenario ran {args.repeats} times (quick conversions",
        "more): medians (min-max, n).",
        BASELINES_LINE,
        "",
        f"{MEASURED_INTRO}{named(sorted(measured))}; carried over from earlier runs, their first cell marked "
        f'"{EARLIER}" and their notes kept: {named(carried)}. When and by what each target was measured:',
        *[f"- {numbers(targets)}: {date}, {how}" for (date, how), targets in when.items()],
        "",
        *([WORDS_INTRO, "", *earlier.words, ""] if carried and earlier.words else []),
        TABLE_HEADER,
        "|---|---|---|---|---|---|",
        *[line for _, line in rows],
        "",
        *(["Notes:", *[f"- {note}" for _, note in notes], ""] if notes else []),
        METHOD_HEADING,
        *[f"- {note}" for note in method(args)],
        "",
        kept,
    ]
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
