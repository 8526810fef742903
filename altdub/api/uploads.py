"""Stream a multipart/form-data body to staged files, chunk by chunk, with a per-file size limit.

Built on python-multipart's push parser (as Starlette is), but each file part goes straight
to its own file on the data volume, so memory stays flat and an oversized file is refused
as soon as it passes the limit, not after it has been written whole.
"""

from __future__ import annotations

import errno
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi.exceptions import RequestValidationError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from altdub.service.errors import InsufficientStorage, TooLarge
from altdub.service.runs import TRANSCRIPT, ImportRequest, IncomingFile

MAX_PARTS = 64
MAX_TEXT_FIELD = 64 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")
# RFC 2046 §5.1.1: 1 to 70 characters of this set, the last one not a space.
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")


TEXT_FIELDS = ("source_language", "name")


def _invalid(loc: tuple[str, ...], message: str, kind: str = "value_error") -> RequestValidationError:
    """A 422 of FastAPI's shape about the form itself (the use-case names the values it refuses)."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": kind}])


@dataclass
class ParsedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[IncomingFile] = field(default_factory=list)

    def import_request(self) -> ImportRequest:
        """The typed request of ``runs.import_run``: text fields checked (known, source_language given)."""
        for name in self.fields:
            if name not in TEXT_FIELDS and not name.startswith(TRANSCRIPT):
                raise _invalid(("body", name), "unknown field: expected source_language, name or file fields")
        if not self.fields.get("source_language"):
            raise _invalid(("body", "source_language"), "field required", "missing")
        return ImportRequest(
            source_language=self.fields["source_language"],
            files=self.files,
            transcript_texts={name: text for name, text in self.fields.items() if name.startswith(TRANSCRIPT)},
            name=self.fields.get("name", ""),
        )


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    size: int = 0
    text: bytearray = field(default_factory=bytearray)
    handle: BinaryIO | None = None
    path: Path | None = None


class _Collector:
    def __init__(self, staging: Path, max_file_bytes: int) -> None:
        self.staging = staging
        self.max_file_bytes = max_file_bytes
        self.form = ParsedForm()
        self.part = _Part()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.count = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.count += 1
        if self.count > MAX_PARTS:
            raise _invalid(("body",), f"too many form parts (at most {MAX_PARTS})")
        self.part = _Part()
        self.headers = {}

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise _invalid(("body",), "a form part has no name")
        self.part.name = name
        if b"filename" in options:
            filename = options[b"filename"].decode("utf-8", "replace")
            self.part.filename = _SAFE_NAME.sub("_", Path(filename.replace("\\", "/")).name)[:200] or "upload"
            self.part.path = self.staging / f"part-{self.count}"
            self.part.handle = self.part.path.open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        part.size += end - start
        if part.handle is not None:
            if part.size > self.max_file_bytes:
                raise TooLarge(f"field {part.name!r} is larger than the {self.max_file_bytes} byte limit per file")
            part.handle.write(data[start:end])
        else:
            if part.size > MAX_TEXT_FIELD:
                raise _invalid(("body", part.name), "text field too long")
            part.text.extend(data[start:end])

    def on_part_end(self) -> None:
        part = self.part
        if part.handle is not None and part.path is not None and part.filename is not None:
            part.handle.close()
            self.form.files.append(IncomingFile(part.name, part.filename, part.path, part.size))
        else:
            if part.name in self.form.fields:
                raise _invalid(("body", part.name), "field given more than once")
            try:
                text = part.text.decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(("body", part.name), "not UTF-8 text (text fields must be UTF-8)") from None
            self.form.fields[part.name] = text.strip()

    def close(self) -> None:
        if self.part.handle is not None:
            self.part.handle.close()


async def read_multipart(
    content_type: str, body: AsyncIterator[bytes], staging: Path, max_file_bytes: int
) -> ParsedForm:
    """Parse the body into text fields and files staged under ``staging`` (which the caller removes)."""
    mime, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise _invalid(("header", "content-type"), "expected multipart/form-data with a boundary")
    if not _BOUNDARY.fullmatch(boundary):
        raise _invalid(
            ("header", "content-type"),
            "invalid multipart boundary: RFC 2046 allows 1 to 70 letters, digits, spaces or '()+_,-./:=?, "
            "the last one not a space",
        )
    collector = _Collector(staging, max_file_bytes)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in body:
            parser.write(chunk)
        if parser.state != MultipartState.END:
            raise _invalid(("body",), "the multipart body ends before its closing boundary")
    except (RequestValidationError, TooLarge):
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                f"the service has no room left to store the upload ({exc.strerror}); nothing was kept, try again later"
            ) from exc
        raise
    except Exception as exc:  # the parser's own errors: a malformed body
        raise _invalid(("body",), f"malformed multipart body: {exc}") from exc
    finally:
        collector.close()
    return collector.form
