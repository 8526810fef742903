"""A small JPEG still of a video, for the dashboard's run list."""

from __future__ import annotations

from pathlib import Path

from altdub.media.ffmpeg import FFmpegError, file_arg, run_ffmpeg

THUMBNAIL_WIDTH = 320
THUMBNAIL_AT = 1.0  # seconds into the video
THUMBNAIL_TIME_LIMIT = 60.0


def thumbnail_args(
    source: Path, output: Path, *, stream_index: int, at: float, width: int = THUMBNAIL_WIDTH
) -> list[str]:
    """FFmpeg arguments: one frame of stream ``stream_index`` at ``at`` seconds, ``width`` px wide, as JPEG."""
    return [
        "-ss", f"{at:.3f}",  # input seeking: decodes from the key frame before ``at`` only
        "-i", file_arg(source),
        "-map", f"0:{stream_index}",
        "-frames:v", "1",
        "-vf", f"scale={width}:-2:flags=bicubic,format=yuvj420p",  # even height, full-range JPEG pixels
        "-c:v", "mjpeg", "-q:v", "4",
        "-f", "image2", "-update", "1",
        file_arg(output),
    ]  # fmt: skip


def make_thumbnail(
    source: Path,
    output: Path,
    *,
    stream_index: int,
    duration: float,
    at: float = THUMBNAIL_AT,
    width: int = THUMBNAIL_WIDTH,
) -> Path:
    """Write a JPEG of the video's frame at ``at`` seconds (the middle frame of a shorter video)."""
    position = min(at, max(0.0, duration / 2))
    run_ffmpeg(
        thumbnail_args(source, output, stream_index=stream_index, at=position, width=width),
        time_limit=THUMBNAIL_TIME_LIMIT,
    )
    if not output.is_file() or output.stat().st_size == 0:
        raise FFmpegError(f"FFmpeg wrote no frame at {position:.3f} s")
    return output
