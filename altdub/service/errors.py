"""Errors the use-cases raise; the API turns them into 404 / 413 / 422 / 429 / 507 answers."""

from __future__ import annotations


class NotFound(Exception):
    """Unknown, or belonging to another workspace: answered the same way."""


class InvalidInput(Exception):
    """A value a use-case was given that cannot be used.

    ``field`` names it as the client did (``"dub_es-es"``, ``"language"``, ``"stem"``), or is None for
    what was sent as a whole; where it travelled (a path, a body) is the API's to say.
    ``kind`` is ``"missing"`` for a value that is required and absent, else ``"value_error"``.
    """

    def __init__(self, field: str | None, message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.kind = kind


class NoReport(Exception):
    """The export has no QC report: its task is not SUCCESS, or it was made without one (the message says which)."""


class TooLarge(Exception):
    """An uploaded file went past the size limit."""


class InsufficientStorage(Exception):
    """The service has no room left to keep what was sent (a full disk): the request itself was fine."""


class TooManyPending(Exception):
    """The workspace has as many tasks waiting or running as it may: retry once some have ended."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"this workspace has {limit} export tasks pending, the most it may have: "
            f"retry in {retry_after} s, or once some have ended"
        )
        self.limit = limit
        self.retry_after = retry_after
