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
    """For a delta: ``compat`` or ``archive-v1``; None for a direct file."""
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
    def codec(self) -> str | None:
        """``compat`` or ``archive-v1`` for a delta whose metadata was read, else None."""
        if self.meta is None or self.meta.kind is not Kind.DELTA:
            return None
        return self.meta.codec or COMPAT


@dataclass(frozen=True)
class GetResult:
    key: str
    stored_key: str
    kind: Kind
    size: int
    sha256: str
    cache_hit: bool | None
    meta: StoredMeta
