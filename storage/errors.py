"""Exceptions raised by the storage layer.

Callers catch ``StorageError`` to handle every storage failure at once, or a
subclass when they can do something specific about it (for instance treat a
``DuplicateError`` as "already done"). Errors that wrap a lower-level failure
are raised ``from`` it so the original cause stays in the traceback.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by ``storage``."""


class InvalidValueError(StorageError, ValueError):
    """A value handed to the storage layer is outside what it accepts.

    Also a ``ValueError`` so generic validation code keeps working.
    """


class NotFoundError(StorageError, LookupError):
    """A record the caller named (by reference, key...) does not exist."""


class DuplicateError(StorageError):
    """A write collides with an existing record in a way that is not idempotent.

    Idempotent repeats (same sighting, same piece, same outbox key) are not
    errors: the repository returns the existing row or ``None`` instead.
    """


class MigrationError(StorageError):
    """The database schema cannot be brought to the version this code expects."""


class BlobError(StorageError):
    """The blob store could not store, read or remove a blob."""


class BlobNotFoundError(BlobError, LookupError):
    """No blob is stored under the requested sha256."""
