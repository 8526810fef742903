"""Errors the use-cases raise; the API turns them into 404 / 413 / 422 / 429 / 507 answers."""

from __future__ import annotations


class NotFound(Exception):
    """Unknown, or belonging to another workspace: answered the same way."""


class InvalidInput(Exception):
    """A request value that cannot be used; ``loc`` names it as FastAPI would (``("body", "dub_es-es")``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.kind = kind


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
