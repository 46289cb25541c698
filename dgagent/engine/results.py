"""What the delta store answers: the result of a put or a get, and one file of a listing."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from dgagent.engine import keys
from dgagent.engine.metadata import Kind, StoredMeta
from dgagent.storage.base import ObjectInfo

COMPAT = "compat"
"""The default codec's name: plain xdelta3 deltas, readable by DeltaGlider."""


@dataclass(frozen=True)
class PutResult:
    """What one put stored."""

    key: str
    stored_key: str
    kind: Kind
    """DELTA or DIRECT."""
    original_size: int
    stored_size: int
    """Bytes of the delta or direct object written for this file."""
    reference_size: int
    """Bytes of ``reference.bin`` this put created (0 when it used an existing reference)."""
    sha256: str
    cache_hit: bool | None
    """Whether the reference came from the cache; None when no reference was read."""
    codec: str | None = None
    """For a delta: ``compat``, ``archive-v1``, ``-v2`` or ``-v3``; None for a direct file."""
    why: str = ""
    """Why it was stored as it was: ``delta against <reference key>``, ``new reference: …``
    or ``whole: …`` (also recorded in its metadata as ``dg-agent-why``)."""

    @property
    def ratio(self) -> float:
        """Stored bytes (delta or direct, plus any reference created) over the file's size."""
        total = self.stored_size + self.reference_size
        return total / self.original_size if self.original_size else 1.0


@dataclass(frozen=True)
class Entry:
    """One logical file as a listing shows it."""

    key: str
    stored_key: str
    stored_size: int
    info: ObjectInfo
    meta: StoredMeta | None
    """Parsed metadata; None when the listing did not fetch it."""

    @property
    def kind(self) -> Kind | None:
        if self.meta is not None:
            return self.meta.kind
        return Kind.DELTA if keys.is_delta(self.stored_key) else None

    @property
    def original_size(self) -> int | None:
        if self.meta is not None and self.meta.file_size is not None:
            return self.meta.file_size
        return None if keys.is_delta(self.stored_key) else self.stored_size

    @property
    def why(self) -> str | None:
        """Why dg-agent stored it as it is (``dg-agent-why``), when its metadata was read."""
        return self.meta.why if self.meta is not None else None

    @property
    def reference(self) -> str | None:
        """The key of the reference a delta was made against, when its metadata was read."""
        if self.meta is None or self.meta.kind is not Kind.DELTA:
            return None
        if self.meta.ref_path:
            space = keys.deltaspace_of(self.stored_key)
            return posixpath.normpath(posixpath.join(space, self.meta.ref_path))
        return self.meta.ref_key

    @property
    def stored_as(self) -> str | None:
        """What its stored size (and ratio) is: ``delta`` (its own delta against a reference),
        ``new reference`` (it became its DeltaSpace's reference: its delta is nearly empty and
        its bytes are the reference's), or ``whole``; None when the metadata was not read."""
        if self.meta is None:
            return None
        if self.meta.kind is not Kind.DELTA:
            return "whole"
        same = self.meta.ref_sha256 is not None and self.meta.ref_sha256 == self.meta.file_sha256
        return "new reference" if same else "delta"

    @property
    def codec(self) -> str | None:
        """``compat`` or ``archive-v1``/``-v2`` for a delta whose metadata was read, else None."""
        if self.meta is None or self.meta.kind is not Kind.DELTA:
            return None
        return self.meta.codec or COMPAT


@dataclass(frozen=True)
class Summary:
    """The one definition of what a set of files saved, used by ``ls --summarize``, ``stats``,
    the socket API and dg-tui.

    ``stored_bytes`` is what the store holds for them: each file's delta or whole object, and
    every reference of their DeltaSpaces, each counted once (for a recursive listing: every
    object under the prefix, so it equals the bucket's own count). ``saved_bytes`` is
    ``original_bytes - stored_bytes``.
    """

    files: int = 0
    original_bytes: int = 0
    stored_bytes: int = 0
    complete: bool = True
    """False when some files' original sizes were not read (their stored size stands in)."""

    @property
    def saved_bytes(self) -> int:
        return self.original_bytes - self.stored_bytes

    @property
    def saved_percent(self) -> float:
        if not self.original_bytes:
            return 0.0
        return round(100 * self.saved_bytes / self.original_bytes, 2)

    def __add__(self, other: Summary) -> Summary:
        return Summary(
            self.files + other.files,
            self.original_bytes + other.original_bytes,
            self.stored_bytes + other.stored_bytes,
            self.complete and other.complete,
        )

    def record(self) -> dict[str, int | float | bool]:
        return {
            "files": self.files,
            "original_bytes": self.original_bytes,
            "stored_bytes": self.stored_bytes,
            "saved_bytes": self.saved_bytes,
            "saved_percent": self.saved_percent,
            "complete": self.complete,
        }


@dataclass(frozen=True)
class GetResult:
    key: str
    stored_key: str
    kind: Kind
    size: int
    sha256: str
    cache_hit: bool | None
    meta: StoredMeta
