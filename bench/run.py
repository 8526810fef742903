"""altdub's benchmark: altdub against bare FFmpeg and a bare FastAPI endpoint, in the same run.

    .venv/bin/python -m bench.run                   # the full run (10-minute 1080p source)
    .venv/bin/python -m bench.run --minutes 2       # a quicker run on a 2-minute source

Generates its own media under bench/work/, runs each scenario --repeats times, and writes
bench/REPORT.md: medians, spreads (min-max) and ratios against baselines measured in the
same run. Ratios are the targets: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
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

import httpx

from altdub.api.app import EVENT_LOOP
from altdub.media.catalogue import CATALOGUE
from altdub.media.ffmpeg import ffmpeg_executable, file_arg, run_ffmpeg
from altdub.media.formats import AudioTrack, ExportInputs, build_plan
from altdub.media.options import resolve_options
from altdub.media.probe import probe

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


@contextmanager
def uvicorn_app(app: str, *, factory: bool = False, env: dict[str, str] | None = None) -> Iterator[str]:
    """An ASGI app under uvicorn, one process, no access log: the same way for altdub and the bare app."""
    port = free_port()
    args = [str(UVICORN), app, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    args += ["--loop", EVENT_LOOP]  # altdub serve's loop, for both apps
    process = subprocess.Popen(
        [*args, *(["--factory"] if factory else [])], env=os.environ | (env or {}), cwd=ROOT.parent
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def import_run(server: Server, video: Path | None, dub: Path) -> int:
    files = {"dub_es-es": dub} | ({"source": video} if video else {})
    handles = {name: (path.name, path.open("rb")) for name, path in files.items()}
    try:
        response = server.http.post("/runs", data={"source_language": "en-us"}, files=handles, timeout=None)
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


def bare_command(output_format: str, video: Path, dub: Path, out: Path) -> list[str]:
    """The same FFmpeg command altdub runs (same plan), as a user would run it by hand."""
    source_info, dub_info = probe(video), probe(dub)
    options = resolve_options(output_format, {}, dub_info.audio[0])
    inputs = ExportInputs(
        audio=AudioTrack(dub, dub_info.audio[0], dub_info.duration, "spa"),
        duration=source_info.duration,
        title="bench (Spanish)",
        video_path=video,
        video=source_info.video[0],
    )
    plan = build_plan(output_format, inputs, options, out)
    return [ffmpeg_executable(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *plan.args]


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


def stored_inputs(server: Server, run_id: int) -> tuple[Path, Path]:
    """The run's source and dub as altdub stored them, for a baseline that reads the very files altdub reads.

    A file just written (an import) reads measurably slower than one long in the page cache: 146 vs
    135 ms of FFmpeg's own time for a 10-minute WAV. The baseline must not get the warmer copy.
    """
    with sqlite3.connect(server.data_dir / "altdub.db") as db:
        keys = dict(db.execute("SELECT role, storage_key FROM run_files WHERE run_id = ?", (run_id,)).fetchall())
    root = server.data_dir / "files"
    return root / keys["source"], root / keys["dub"]


def conversion_overhead(report: Report, args: argparse.Namespace, video: Path, dub: Path) -> dict[str, float]:
    """Target 1: request-to-SUCCESS over the bare FFmpeg command, per format (≤ 1.05).

    Each export and its bare command run back to back, on the same stored inputs, alternating which
    goes first; the ratio is the median of these pairs' ratios, so that a machine getting slower or
    faster during the run moves both sides of each pair.
    """
    medians: dict[str, float] = {}
    with altdub_server(args.work / "data-overhead") as server:
        # a run per repeat (an export that exists is answered, not made), all imported before timing
        runs = [import_run(server, video, dub) for _ in range(max(args.repeats, QUICK_REPEATS))]
        os.sync()
        for output_format in args.formats:
            ours: list[float] = []
            bare: list[float] = []
            outputs: list[Path] = []
            repeat = 0
            while repeat < args.repeats or (repeat < QUICK_REPEATS and statistics.median(bare) < QUICK_SECONDS):
                stored_video, stored_dub = stored_inputs(server, runs[repeat])
                # kept, as altdub keeps its: a file deleted gives its page cache back, and the next write
                # then finds free memory where altdub's has to reclaim it (1 GB mkv: 0.9 vs 2.0 s)
                out = args.work / f"bare-{repeat}.{CATALOGUE[output_format].extension}"
                outputs.append(out)
                if repeat % 2:
                    os.sync()
                    bare.append(bare_ffmpeg_seconds(output_format, stored_video, stored_dub, out))
                os.sync()  # each starts with nothing left to write back: altdub keeps its outputs, bare does not
                ours.append(export_seconds(server, runs[repeat], output_format)[0])
                if not repeat % 2:
                    os.sync()
                    bare.append(bare_ffmpeg_seconds(output_format, stored_video, stored_dub, out))
                repeat += 1
            for out in outputs:
                out.unlink()
            ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
            medians[output_format] = statistics.median(ours)
            report.add(Row(f"1. overhead, {output_format}", spread(ours), spread(bare), f"{ratio:.3f}", "≤ 1.05",
                           ratio <= 1.05))  # fmt: skip
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


def wrk(url: str, script: Path, seconds: int) -> tuple[float, float, int]:
    """(requests per second, p99 latency in ms, errors) at 64 connections and 2 threads, after a 2 s warm-up."""
    command = ["wrk", "-t2", "-c64", "--latency", "-s", str(script), url]
    subprocess.run([*command[:1], "-d2s", *command[1:]], capture_output=True, check=True)
    done = subprocess.run([*command[:1], f"-d{seconds}s", *command[1:]], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    rps = next(float(line.split()[1]) for line in lines if line.startswith("Requests/sec"))
    p99 = next(line.split()[1] for line in lines if line.strip().startswith("99%"))
    errors = 0
    for line in lines:
        if "Socket errors" in line:
            errors += sum(int(part.strip().split()[-1]) for part in line.split(":", 1)[1].split(","))
        if "Non-2xx" in line:
            errors += int(line.split()[-1])
    unit = next(u for u in ("us", "ms", "s") if p99.endswith(u))
    return rps, float(p99[: -len(unit)]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], errors


def cached_requests(report: Report, args: argparse.Namespace, dub: Path) -> None:
    """Target 3: the signed-URL POST vs a bare FastAPI endpoint, same server, same workers."""
    if shutil.which("wrk") is None:
        report.notes.append("3. cached requests: skipped, `wrk` is not installed (apt-get install wrk).")
        return
    data_dir = args.work / "data-cached"
    with altdub_server(data_dir, keep=True) as server:  # make the export, then serve it through plain uvicorn
        run_id = import_run(server, None, dub)
        export_seconds(server, run_id, "mp3")
        key = server.key
    env = {"ALTDUB_DATA_DIR": str(data_dir), "ALTDUB_CREATE_DEMO": "false"}
    script = args.work / "post.lua"
    script.write_text(WRK_POST % key)
    results: dict[str, list[tuple[float, float, int]]] = {"altdub": [], "bare": []}
    for _ in range(args.repeats):
        with uvicorn_app("altdub.api.app:create_app", factory=True, env=env) as url:
            httpx.post(f"{url}/dub-alt-format/{run_id}/es-es", headers={"x-api-key": key},
                       json={"output_format": "mp3"}, timeout=10).raise_for_status()  # fmt: skip
            results["altdub"].append(wrk(f"{url}/dub-alt-format/{run_id}/es-es", script, args.wrk_seconds))
        with uvicorn_app("bench.bare_app:app") as url:
            results["bare"].append(wrk(f"{url}/constant", script, args.wrk_seconds))
    ours_rps = statistics.median(r for r, _, _ in results["altdub"])
    bare_rps = statistics.median(r for r, _, _ in results["bare"])
    ours_p99 = statistics.median(p for _, p, _ in results["altdub"])
    bare_p99 = statistics.median(p for _, p, _ in results["bare"])
    errors = sum(e for _, _, e in results["altdub"]), sum(e for _, _, e in results["bare"])
    report.add(Row("3. cached POST, throughput", f"{ours_rps:.0f} req/s ({errors[0]} errors)",
                   f"{bare_rps:.0f} req/s, bare FastAPI ({errors[1]} errors)", f"{ours_rps / bare_rps:.2f}", "≥ 0.50",
                   ours_rps / bare_rps >= 0.5 and errors[0] == 0))  # fmt: skip
    report.add(Row("3. cached POST, p99 latency", f"{ours_p99:.1f} ms", f"{bare_p99:.1f} ms (bare FastAPI)",
                   f"{ours_p99 / bare_p99:.2f}", "≤ 2.00", ours_p99 / bare_p99 <= 2.0))  # fmt: skip


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
    big = args.work / "big-dub.wav"
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


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
    return slope, mean_y - slope * mean_x


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="length of the 1080p source")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", type=lambda s: [float(x) for x in s.split(",")], default=[1, 10, 60])
    parser.add_argument("--encode-seconds", type=float, default=60, help="length timed for the re-encode baseline")
    parser.add_argument("--encode-preset", default="medium", help="x264 preset of the re-encode baseline")
    parser.add_argument("--memory-gib", type=float, default=2.0)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--formats", type=lambda s: s.split(","), default=list(CATALOGUE), help="formats of target 1")
    parser.add_argument("--only", default="", help="comma-separated scenario numbers to run (default: all)")
    parser.add_argument("--work", type=Path, default=ROOT / "work")
    parser.add_argument("--out", type=Path, default=ROOT / "REPORT.md")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else set("1234567")
    report = Report()
    started = time.time()
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
    for number, scenario in scenarios:
        if number in only:
            try:
                scenario()
            except Exception as exc:  # one scenario's failure must not lose the others' figures
                report.add(Row(f"{number}. (failed)", f"{exc.__class__.__name__}: {exc}", "—", "—", "—", False))
    write_report(args, report, time.time() - started)


def ffmpeg_version() -> str:
    return subprocess.run([ffmpeg_executable(), "-version"], capture_output=True, text=True).stdout.split()[2]


METHOD = [
    "1: altdub's time runs from the export request to the answer that says SUCCESS, the client waiting by "
    "long polling (`GET /dub-alt-format/{task}?wait=30`) over one kept HTTP connection; the baseline runs the very "
    "FFmpeg command altdub builds (same plan) by hand on the same stored input files, writing a new file. Each pair "
    "runs back to back, alternating which goes first; the ratio is the median of the pairs' ratios. Conversions "
    f"under {QUICK_SECONDS:g} s are repeated at least {QUICK_REPEATS} times.",
    "2: the re-encode baseline is x264 at FFmpeg's default preset (medium) over the first 60 s of the source, "
    "scaled to its length. mp4 and mov exports encode the dub to AAC, which is most of their time; the picture "
    "is copied.",
    "3: `wrk -t2 -c64` for the set seconds after a 2 s warm-up, against `uvicorn` with one process, no access log "
    "and asyncio's event loop (altdub serve's), for both the altdub app and `bench/bare_app.py`.",
    "5: altdub's 8 exports are requested one after the other (each answers at once with a task) and waited for "
    "together; the bare script runs the same 8 FFmpeg commands on the same stored inputs in the same order, 2 at a "
    "time (altdub's default workers).",
    "6: resident memory of the server process sampled every 50 ms while a 2 GiB WAV is imported, exported to wav "
    "and the 2 GiB result downloaded.",
    "7: the 60-minute source is the 10-minute one repeated (stream copy); slope from a least-squares line through "
    "the medians.",
    "What was changed to reach the targets, with before/after figures, and the causes of what is still missed: "
    "[FINDINGS.md](FINDINGS.md).",
]


def write_report(args: argparse.Namespace, report: Report, elapsed: float) -> None:
    lines = [
        "# altdub benchmark report",
        "",
        f"Made by `.venv/bin/python -m bench.run {' '.join(sys.argv[1:])}`",
        f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed / 60:.1f} minutes:",
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, FFmpeg {ffmpeg_version()}.",
        f"Source: {args.minutes:g}-minute 1920x1080 25 fps H.264 test pattern with stereo 48 kHz audio; dub: a",
        f"{args.minutes:g}-minute stereo 48 kHz PCM WAV. Each scenario ran {args.repeats} times (quick conversions",
        "more): medians (min-max, n).",
        "Baselines ran in the same run on the same machine; the ratios are the targets.",
        "",
        "| target | altdub | baseline | ratio | goal | verdict |",
        "|---|---|---|---|---|---|",
        *[row.markdown() for row in report.rows],
        "",
        "Notes:",
        *[f"- {note}" for note in [*report.notes, *METHOD]],
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
