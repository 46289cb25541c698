"""The one small interface every store implements: S3 through boto3, and a local directory.

The engine only ever needs a few things from a store: read an object's metadata, list a prefix,
stream an object into a file, upload a file (optionally only if the key is still absent), delete
(one key or many), and say what it is. Keys are '/'-separated strings relative to the store's
root (the bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from dgagent.errors import UnsafePathError

Progress = Callable[[int], None]
"""Called with the number of bytes moved since the last call."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as the store sees it (physical key, stored size)."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    metadata: Mapping[str, str] | None = field(default=None, compare=False)
    """User metadata without the ``x-amz-meta-`` prefix; None when the listing did not fetch it."""


@dataclass(frozen=True)
class Prefix:
    """A common prefix (a "folder") returned by a delimited listing; ends with '/'."""

    key: str


class Storage(Protocol):
    """What the engine needs from a store. Implementations: S3Storage, LocalStorage."""

    @property
    def url(self) -> str:
        """The store's root as a URL, e.g. ``s3://bucket`` or ``file:///``; for messages."""
        ...

    @property
    def cache_scope(self) -> str | None:
        """This store's name in the metadata cache (engine/metacache.py), where a HEAD is a
        request worth saving and a listing's ETag identifies an object's version (S3: the
        endpoint and bucket); None where reading metadata is a local file read."""
        ...

    def honours_create_only(self, size: int) -> bool:
        """True when ``upload(create_only=True)`` of a file of ``size`` bytes is enforced
        atomically by the store (an S3 server may accept ``If-None-Match`` and ignore it)."""
        ...

    def write_mode(self) -> str:
        """How creates behave here, in a few words for ``status`` ('' when not known yet)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The object's info with metadata, or None when there is no such key."""
        ...

    def list_objects(
        self, prefix: str, *, delimiter: str | None = None
    ) -> Iterator[ObjectInfo | Prefix]:
        """Every object under ``prefix`` in key order (metadata not fetched)."""
        ...

    def download(self, key: str, dest: BinaryIO, *, progress: Progress | None = None) -> ObjectInfo:
        """Stream the object's bytes into ``dest``; return its info with metadata."""
        ...

    def upload(
        self,
        key: str,
        source: Path,
        metadata: Mapping[str, str],
        *,
        create_only: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """Store the file at ``key``; ``create_only``: PreconditionFailedError if it exists."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...

    def delete_many(self, keys: list[str]) -> None:
        """Remove these objects, in as few requests as the store allows; missing keys are not
        an error. StorageError names the keys that could not be deleted."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could escape a destination folder when mapped to a local path.

    >>> check_key("releases/app-1.0.zip")
    'releases/app-1.0.zip'
    """
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(
            f"refusing name {key.encode('utf-8', 'surrogateescape')!r}: it is not valid UTF-8, "
            "which object stores require; rename the file"
        ) from None
    parts = key.split("/")
    if (
        not key
        or "\x00" in key
        or "\\" in key
        or key.startswith("/")
        or any(part in ("", "..", ".") for part in parts)
    ):
        raise UnsafePathError(
            f"refusing object key {key!r}: it contains '..', '.', an empty part, a backslash, "
            "a NUL byte or a leading '/', which could write outside the destination; rename it"
        )
    return key
