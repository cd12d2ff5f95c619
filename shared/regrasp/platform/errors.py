"""Domain errors shared by the library and mapped to HTTP codes at the service edges.

Every error carries a message meant for a person: services return it as the `detail`
of a 4xx, the CLI prints it as its one line before exiting non-zero.
"""

from __future__ import annotations


class RegraspError(Exception):
    """Base of every error the library raises on purpose."""

    #: HTTP status the service edges map this error to.
    http_status: int = 500


class ConfigError(RegraspError):
    """Settings are missing, malformed or unsafe for the chosen mode."""

    http_status = 500


class InvalidInput(RegraspError):
    """Input (a file, a request, a grasp) is malformed; nothing was written."""

    http_status = 422


class FormatError(InvalidInput):
    """A dataset file could not be parsed; the message names the file and the line."""


class NotFound(RegraspError):
    """A requested entity or object does not exist."""

    http_status = 404


class Conflict(RegraspError):
    """The request collides with the current state (stale version, duplicate name)."""

    http_status = 409


class PermissionDenied(RegraspError):
    """The caller is authenticated but may not do this."""

    http_status = 403


class Unauthenticated(RegraspError):
    """No or invalid credentials."""

    http_status = 401


class TooManyRequests(RegraspError):
    """The caller is rate-limited; `retry_after` says in how many seconds to try again."""

    http_status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageError(RegraspError):
    """The database or the object store failed in a way the caller cannot fix."""

    http_status = 503


class SchemaOutOfDate(StorageError):
    """The database schema is behind the code; the message gives the command that fixes it."""


class ObjectNotFound(NotFound):
    """An object-store key does not exist; `key` says which."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"object not found: {key}")
        self.key = key


class ObjectAccessDenied(PermissionDenied):
    """The object store refused access to a key; `key` says which."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"access denied to object: {key}")
        self.key = key
