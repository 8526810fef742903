"""One edit FFmpeg cannot make: an MP4/MOV whose text tracks are all disabled (spec §2, "none default").

FFmpeg's MP4/MOV muxer enables the first track of each kind when none is marked default (movenc's
``enable_tracks``), and an enabled text track is a default one to every reader (QuickTime, iOS,
FFmpeg's own demuxer, MediaInfo). The flag is one bit of each ``tkhd`` box: it is cleared in place,
so no byte moves and no offset changes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

_TEXT_HANDLERS = frozenset({b"text", b"sbtl", b"subt"})  # QuickTime text, mov_text (Apple), MPEG-4 subtitles
_TRACK_ENABLED = 0x000001


def _boxes(data: bytes | memoryview, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box between ``start`` and ``end``."""
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise ValueError(f"a malformed {kind!r} box at byte {position}")
        yield kind, position + header, position + size
        position += size


def _moov(path: Path) -> tuple[int, bytes]:
    """The file offset and bytes of the ``moov`` box (read box header by box header, never the media)."""
    with path.open("rb") as file:
        offset = 0
        while len(header := file.read(16)) >= 8:  # fewer bytes: a truncated file, with no moov to find
            size, kind = struct.unpack_from(">I4s", header)
            if size == 1 and len(header) == 16:
                (size,) = struct.unpack_from(">Q", header, 8)
            if kind == b"moov":
                file.seek(offset)
                return offset, file.read(size)
            if size < 8:
                break
            offset += size
            file.seek(offset)
    raise ValueError(f"{path.name} has no moov box")


def disable_text_tracks(path: Path) -> int:
    """Clear the enabled flag of every text track of the MP4/MOV at ``path``; the number of tracks changed."""
    offset, moov = _moov(path)
    flag_bytes = []
    for kind, start, end in _boxes(moov, 0, len(moov)):
        if kind != b"moov":
            continue
        for trak, t_start, t_end in _boxes(moov, start, end):
            if trak != b"trak":
                continue
            tkhd, handler = None, None
            for child, c_start, c_end in _boxes(moov, t_start, t_end):
                if child == b"tkhd":
                    tkhd = c_start  # version (1 byte), then 3 bytes of flags
                elif child == b"mdia":
                    for box, h_start, _ in _boxes(moov, c_start, c_end):
                        if box == b"hdlr":
                            handler = moov[h_start + 8 : h_start + 12]  # after version/flags and pre_defined
            if tkhd is not None and handler in _TEXT_HANDLERS and moov[tkhd + 3] & _TRACK_ENABLED:
                flag_bytes.append((offset + tkhd + 3, moov[tkhd + 3] & ~_TRACK_ENABLED & 0xFF))
    with path.open("r+b") as file:
        for position, value in flag_bytes:
            file.seek(position)
            file.write(bytes([value]))
    return len(flag_bytes)
