"""A small HTTP client of altdub's API, used by the CLI's client commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

ByteProgress = Callable[[int, int | None], None]
"""Called as ``(bytes_so_far, total_bytes_or_None)`` as a transfer advances."""


def package_zip_url(output_url: str) -> str:
    """A streaming package's whole folder as one zip: ``package.zip`` beside its playlist, same signed prefix."""
    return urljoin(output_url, "package.zip")


class ClientError(Exception):
    """The server refused the request; the message is its reason."""


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(detail, list):
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return f"HTTP {response.status_code}: {detail}"


class AltdubClient:
    def __init__(self, url: str, api_key: str, timeout: float = 60.0) -> None:
        self._http = httpx.Client(base_url=url, headers={"x-api-key": api_key}, timeout=timeout)

    def __enter__(self) -> AltdubClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ClientError(_reason(response))
        return response.json()

    def import_run(
        self, fields: dict[str, str], files: dict[str, Path], on_progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        """Upload a run; files are streamed from disk, ``on_progress`` sees the bytes sent."""
        with ExitStack() as stack:
            parts = {name: (path.name, stack.enter_context(path.open("rb"))) for name, path in files.items()}
            request = self._http.build_request("POST", "/runs", data=fields, files=parts, timeout=None)
            if on_progress is not None:
                length = request.headers.get("content-length")
                request.stream = _CountingStream(request.stream, int(length) if length else None, on_progress)
            response = self._http.send(request)
        return self._json(response)

    def request_export(
        self,
        run_id: int,
        output_format: str,
        options: dict[str, Any] | None = None,
        languages: list[str] | str | None = None,
        default_language: str | None = None,
    ) -> dict[str, str]:
        """``POST /runs/{run_id}/exports``: ``{"output_url"}`` when the export exists, else ``{"task_id"}``.

        ``languages``: ids or short_names in track order, or "all"; None asks for every language of the run.
        """
        body: dict[str, Any] = {"output_format": output_format, **(options or {})}
        if languages is not None:
            body["languages"] = languages
        if default_language is not None:
            body["default_language"] = default_language
        return self._json(self._http.post(f"/runs/{run_id}/exports", json=body))

    def task_status(self, task_id: str, wait: float = 0) -> dict[str, Any]:
        """The task's state; with ``wait``, the server answers when the task ends or after that many seconds."""
        return self._json(self._http.get(f"/dub-alt-format/{task_id}", params={"wait": wait} if wait else None))

    def wait(self, task_id: str, interval: float = 1.0, on_progress: Any = None) -> str:
        """Wait for the task to end (long polling: progress every ``interval`` s, the end at once).

        Returns the output URL or raises ClientError with the reason.
        """
        while True:
            status = self.task_status(task_id, wait=interval)
            if on_progress:
                on_progress(status.get("progress", 0))
            if status["status"] == "SUCCESS":
                return status["output_url"]
            if status["status"] != "PENDING":
                reason = status.get("exception_reason") or status["status"]
                raise ClientError(f"task {task_id} ended {status['status']}: {reason}: {status.get('message')}")

    def run_exports(self, run_id: int) -> list[dict[str, Any]]:
        """``GET /runs/{run_id}/exports``: the run's export tasks, newest first."""
        return self._json(self._http.get(f"/runs/{run_id}/exports"))

    def qc_report(self, run_id: int, task_id: str) -> dict[str, Any]:
        """The export's QC report as JSON (``QcReport.as_dict()``)."""
        return self._json(self._http.get(f"/runs/{run_id}/exports/{task_id}/qc"))

    def qc_page(self, run_id: int, task_id: str) -> str:
        """The export's QC report as its HTML page."""
        response = self._http.get(f"/runs/{run_id}/exports/{task_id}/qc", params={"format": "html"})
        if response.status_code >= 400:
            raise ClientError(_reason(response))
        return response.text

    def download(self, url: str, destination: Path, on_progress: ByteProgress | None = None) -> int:
        """Stream the file to ``destination`` (written under a temporary name, then renamed).

        ``on_progress`` sees the bytes written and the total from Content-Length (None without one).
        A failed or short download leaves nothing behind.
        """
        partial = destination.with_name(destination.name + ".part")
        try:
            with httpx.stream("GET", url, timeout=httpx.Timeout(60.0, read=None)) as response:
                if response.status_code >= 400:
                    raise ClientError(f"download failed: HTTP {response.status_code}")
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                if on_progress:
                    on_progress(0, total)
                with partial.open("wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
                        if on_progress:  # bytes as sent (Content-Length counts them before any decoding)
                            on_progress(response.num_bytes_downloaded, total)
                received = response.num_bytes_downloaded
            if total is not None and received != total:
                raise ClientError(f"download incomplete: {received} of {total} bytes")
            partial.replace(destination)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return destination.stat().st_size


class _CountingStream(httpx.SyncByteStream):
    """A request body passed through chunk by chunk, reporting the bytes handed to the connection."""

    def __init__(self, stream: Any, total: int | None, on_progress: ByteProgress) -> None:
        self._stream = stream
        self._total = total
        self._on_progress = on_progress

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        self._on_progress(0, self._total)
        for chunk in self._stream:
            yield chunk
            sent += len(chunk)
            self._on_progress(sent, self._total)
