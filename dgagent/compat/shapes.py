"""DeltaGlider 6.2.0's response types, re-declared so that deltaglider is not needed at run
time, and the small helpers every part of the compat client uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from dgagent.engine import keys
from dgagent.engine.results import Entry

if TYPE_CHECKING:
    pass

MB = 1024 * 1024
TEMP_PREFIX = f"{keys.HIDDEN}/tmp/"  # noqa: S108 (an S3 key prefix, not a local path)
"""Where ``rehydrate_for_download`` puts rebuilt files (DeltaGlider: ``.deltaglider/tmp/``):
under dg-agent's hidden folder, so listings leave them out."""
VERSION_RE = re.compile(r"v?\d+[\.\d]*")
INCOMPRESSIBLE = frozenset({".jpg", ".jpeg", ".png", ".mp4", ".mp3", ".avi", ".mov"})
"""Extensions ``estimate_compression`` expects no delta gain for, as DeltaGlider lists them."""


@dataclass
class UploadSummary:
    """What ``upload`` stored: DeltaGlider's ``UploadSummary``, field for field."""

    operation: str
    bucket: str
    key: str
    original_size: int
    stored_size: int
    is_delta: bool
    delta_ratio: float = 0.0

    @property
    def original_size_mb(self) -> float:
        return self.original_size / MB

    @property
    def stored_size_mb(self) -> float:
        return self.stored_size / MB

    @property
    def savings_percent(self) -> float:
        if self.original_size == 0:
            return 0.0
        return ((self.original_size - self.stored_size) / self.original_size) * 100


@dataclass
class CompressionEstimate:
    """DeltaGlider's ``CompressionEstimate``, field for field."""

    original_size: int
    estimated_compressed_size: int
    estimated_ratio: float
    confidence: float
    recommended_reference: str | None = None
    should_use_delta: bool = True


@dataclass
class ObjectInfo:
    """DeltaGlider's ``ObjectInfo``, field for field: one stored object and what it saves."""

    key: str
    size: int
    last_modified: str
    etag: str | None = None
    storage_class: str = "STANDARD"
    original_size: int | None = None
    compressed_size: int | None = None
    compression_ratio: float | None = None
    is_delta: bool = False
    reference_key: str | None = None
    delta_chain_length: int = 0


@dataclass
class BucketStats:
    """DeltaGlider's ``BucketStats``; ``compressed_size`` is every object's bytes, each once."""

    bucket: str
    object_count: int
    total_size: int
    compressed_size: int
    space_saved: int
    average_compression_ratio: float
    delta_objects: int
    direct_objects: int
    object_limit_reached: bool = False


def response_ok(status: int = 200) -> dict[str, Any]:
    return {"HTTPStatusCode": status}


def bucket_url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


def object_type(key: str) -> str:
    """How DeltaGlider counts a deleted object: ``delta``, ``reference``, ``direct`` (a file
    stored whole) or ``other`` (dg-agent's hidden objects).

    >>> [object_type(k) for k in ("a/x.zip.delta", "a/reference.bin", "a/n.txt", ".dg/tmp/x")]
    ['delta', 'reference', 'direct', 'other']
    """
    if keys.is_reference(key):
        return "reference"
    if keys.is_delta(key):
        return "delta"
    return "other" if keys.is_internal(key) else "direct"


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def listed(entry: Entry) -> dict[str, Any]:
    delta = keys.is_delta(entry.stored_key)
    size = entry.original_size if entry.original_size is not None else entry.stored_size
    ratio = f"{entry.stored_size / size:.4f}" if delta and size else "0.0"
    metadata = {
        "deltaglider-is-delta": str(delta).lower(),
        "deltaglider-original-size": str(size),
        "deltaglider-compression-ratio": ratio,
    }
    if entry.reference:
        metadata["deltaglider-reference-key"] = entry.reference
    return {
        "Key": entry.key,
        "Size": size,
        "LastModified": iso(entry.info.last_modified),
        "ETag": entry.info.etag,
        "StorageClass": "STANDARD",
        "Metadata": metadata,
    }


def iso(moment: datetime) -> str:
    return moment.isoformat()


def moment(stamp: str) -> datetime:
    """An ISO 8601 time as DeltaGlider writes ``dg-expires-at`` (UTC when it names no zone).

    >>> moment("2026-01-02T03:04:05Z").isoformat()
    '2026-01-02T03:04:05+00:00'
    """
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
