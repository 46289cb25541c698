"""One error hierarchy for the whole product.

Every error carries a message a user can act on: it names the thing that went wrong and, where
there is one, the fix. Each class also subclasses the builtin it resembles, so callers may catch
either.

    DgError (Exception)
    ├── ConfigError (ValueError)          bad flag, environment variable or config value
    ├── ToolMissingError (FileNotFoundError)   xdelta3 (or a decompressor) is not installed
    ├── CodecError (RuntimeError)         xdelta3 failed to encode or decode
    ├── IntegrityError (ValueError)       a SHA-256 or size check failed: data is not what it claims
    │   └── SourceChangedError            the local file changed while it was being stored
    ├── ReservedNameError (ValueError)    a user file would clobber reference.bin or a *.delta
    ├── NotFoundError (FileNotFoundError) no such object, bucket or local file
    ├── UnreadableError (PermissionError) a local file exists but cannot be read
    ├── StorageError (OSError)            the store refused or failed a request
    │   ├── AccessDeniedError (PermissionError)   credentials are missing or not allowed
    │   ├── PreconditionFailedError       a conditional create lost to an existing object
    │   └── UnsafePathError               a key would write outside the chosen destination
    └── CacheError (OSError)              the reference cache could not be used
"""

from __future__ import annotations

import errno


def disk_full(exc: BaseException) -> bool:
    """Whether a failure (or anything in its cause chain) is a full disk or quota."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen).lower()
        if "no space left" in text or "disk is full" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class DgError(Exception):
    """Base of every error dg-agent raises on purpose; its text is meant for the user."""


class ConfigError(DgError, ValueError):
    """A flag, environment variable or config value is invalid."""


class ToolMissingError(DgError, FileNotFoundError):
    """An external program dg-agent needs is not installed."""


class CodecError(DgError, RuntimeError):
    """xdelta3 failed to encode or decode."""


class IntegrityError(DgError, ValueError):
    """Data failed a SHA-256 or size check."""


class SourceChangedError(IntegrityError):
    """The local file changed while it was being stored: nothing was kept, and storing it
    again once it is complete is the fix (the agent does so by itself)."""


class ReservedNameError(DgError, ValueError):
    """A user file would be stored under a name DeltaGlider uses internally."""


class NameTooLongError(DgError, ValueError):
    """A file's name (with its folder) cannot fit in the 2 KB of metadata S3 allows an object."""


class NotFoundError(DgError, FileNotFoundError):
    """The named object, bucket or local file does not exist."""


class UnreadableError(DgError, PermissionError):
    """A local file exists but this user cannot read it."""


class StorageError(DgError, OSError):
    """The store refused or failed a request."""


class AccessDeniedError(StorageError, PermissionError):
    """The store denied access: credentials are missing, wrong or not allowed."""


class PreconditionFailedError(StorageError):
    """A conditional create found the object already there."""


class UnsupportedError(StorageError):
    """The store does not implement a feature a request used (S3 ``NotImplemented``, 501)."""


class UnsafePathError(StorageError):
    """An object key would write outside the chosen destination."""


class CacheError(DgError, OSError):
    """The reference cache could not be read or written."""
