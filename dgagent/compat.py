"""A drop-in for DeltaGlider 6.2.0's Python client: ``create_client()`` on dg-agent's engine.

Code written against ``deltaglider.create_client()`` runs by changing the import; names,
parameters and response dicts are DeltaGlider's, and what either client writes the other reads.
Covered: ``put_object``, ``get_object``, ``head_object``, ``list_objects`` (and
``list_objects_v2``), ``delete_object``, ``delete_objects``, ``delete_objects_recursive``,
``upload``, ``upload_chunked``, ``upload_batch``, ``download``, ``download_batch``, ``verify``,
``get_object_info``, ``estimate_compression``, ``find_similar_files``, ``get_bucket_stats``,
``create_bucket``, ``delete_bucket``, ``list_buckets``, ``put_bucket_acl``, ``get_bucket_acl``,
``generate_presigned_url``, ``generate_presigned_post``, ``rehydrate_for_download``,
``generate_presigned_url_with_rehydration``, ``purge_temp_files`` and ``clear_cache``; the ACL,
bucket and presigned calls go straight to the endpoint's boto3 client.

Where dg-agent answers differently, on purpose:

- ``list_objects`` and ``head_object`` give each file's original size (``Size``,
  ``ContentLength``), as ``get_object`` returns it; DeltaGlider gives the size of the stored delta.
- ``head_object`` and ``get_object`` find a file stored as a delta by its own name and return its
  stored metadata (DeltaGlider's ``head_object`` raises there, and its ``get_object`` gives ``{}``).
- ``Metadata`` given to ``put_object`` is accepted and not stored, as DeltaGlider does.
- ``get_bucket_stats`` counts stored bytes as every object of the bucket, references included,
  each once (dg-agent's one definition), whatever the ``mode``.
- ``upload_batch`` stores the files in the folder ``s3_prefix`` (one DeltaSpace: later files
  become deltas); DeltaGlider 6.2.0 stores each as ``<s3_prefix>/<name>/<name>``, alone.
- ``rehydrate_for_download`` writes under ``.dg/tmp/`` (hidden from listings, as all of
  dg-agent's internal objects are), not ``.deltaglider/tmp/`` (which DeltaGlider's listings
  show); ``purge_temp_files`` there deletes the expired ones (6.2.0's compares a naive time with
  an aware one and deletes none).
- ``get_object_info`` also finds a delta by the file's name, and fills ``last_modified``,
  ``etag``, ``compression_ratio`` (stored over original bytes) and ``delta_chain_length`` (1
  for a delta), which DeltaGlider leaves empty.
- ``estimate_compression`` takes dg-agent's delta extensions (``DG_DELTA_EXTENSIONS``, a
  superset of DeltaGlider's) as delta candidates; it reads no file bytes, as DeltaGlider.
- ``clear_cache`` empties the reference cache on disk (dg-agent keeps no bucket stats cache).
- Failed S3 calls raise dg-agent's errors (``StorageError``, ``NotFoundError``, ...) rather than
  ``RuntimeError``, and ``generate_presigned_url`` never falls back to a placeholder URL.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import botocore.exceptions

from dgagent.client import Client
from dgagent.engine import keys
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.metadata import Kind
from dgagent.engine.results import Entry, PutResult
from dgagent.errors import ConfigError, DgError, IntegrityError, NotFoundError
from dgagent.storage import Prefix as Folder
from dgagent.storage import S3Options, S3Storage
from dgagent.storage.s3 import translate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MB = 1024 * 1024
TEMP_PREFIX = f"{keys.HIDDEN}/tmp/"  # noqa: S108 (an S3 key prefix, not a local path)
"""Where ``rehydrate_for_download`` puts rebuilt files (DeltaGlider: ``.deltaglider/tmp/``):
under dg-agent's hidden folder, so listings leave them out."""
_VERSION = re.compile(r"v?\d+[\.\d]*")
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


def create_client(  # noqa: PLR0917 (DeltaGlider's signature, positional as there)
    endpoint_url: str | None = None,
    log_level: str = "INFO",
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    region_name: str | None = None,
    **kwargs: Any,
) -> DeltaGliderClient:
    """DeltaGlider's ``create_client`` signature. ``max_ratio`` is taken as DeltaGlider takes
    it; dg-agent's own options ``checksum_when_required`` and ``cache_dir`` too.

    >>> client = create_client(endpoint_url="http://127.0.0.1:9000", colour="blue")
    Traceback (most recent call last):
    ...
    dgagent.errors.ConfigError: create_client got an unknown option 'colour'; it takes \
max_ratio, checksum_when_required and cache_dir
    """
    kwargs.pop("tool_version", None)  # DeltaGlider's own version stamp: dg-agent writes its own
    max_ratio = float(kwargs.pop("max_ratio", 0.5))
    checksum = bool(kwargs.pop("checksum_when_required", False))
    cache_dir = kwargs.pop("cache_dir", None)
    if kwargs:
        raise ConfigError(
            f"create_client got an unknown option {next(iter(kwargs))!r}; it takes max_ratio, "
            "checksum_when_required and cache_dir"
        )
    logging.getLogger("dgagent").setLevel(log_level.upper())
    options = S3Options(
        endpoint_url=endpoint_url,
        region=region_name,
        checksum_when_required=checksum,
        access_key_id=aws_access_key_id,
        secret_access_key=aws_secret_access_key,
        session_token=aws_session_token,
    )
    return DeltaGliderClient(Client(s3=options, max_ratio=max_ratio, cache_dir=cache_dir))


def _ok(status: int = 200) -> dict[str, Any]:
    return {"HTTPStatusCode": status}


def _url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


class DeltaGliderClient:
    """DeltaGlider's boto3-shaped client, over a ``dgagent.Client`` (``.client``)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    # ---------------------------------------------------------------- objects

    def put_object(  # noqa: PLR0917 (boto3's signature)
        self,
        Bucket: str,  # noqa: N803 (boto3's parameter names)
        Key: str,  # noqa: N803
        Body: bytes | str | os.PathLike[str] | BinaryIO | None = None,  # noqa: N803
        Metadata: dict[str, str] | None = None,  # noqa: N803
        ContentType: str | None = None,  # noqa: N803
        Tagging: str | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Store ``Body`` (bytes, text, a path or a binary file object) under ``Key``."""
        if Body is None:
            raise ValueError("Body parameter is required")
        with tempfile.TemporaryDirectory(prefix="dg-put-") as work:
            source = Path(work) / "body"
            if isinstance(Body, bytes):
                source.write_bytes(Body)
            elif isinstance(Body, str):
                source.write_bytes(Body.encode("utf-8"))
            elif isinstance(Body, os.PathLike):
                shutil.copyfile(Body, source)
            else:
                with source.open("wb") as f:
                    shutil.copyfileobj(Body, f)
            result = self.client.put(source, _url(Bucket, Key))
        summary = self._summary(Bucket, result)
        info = {
            "OriginalSizeMB": summary.original_size_mb,
            "StoredSizeMB": summary.stored_size_mb,
            "IsDelta": summary.is_delta,
            "CompressionRatio": summary.delta_ratio or 1.0,
            "SavingsPercent": summary.savings_percent,
            "StoredAs": summary.key,
            "Operation": summary.operation,
        }
        return {"ETag": f'"{result.sha256}"', "ResponseMetadata": _ok(), "DeltaGliderInfo": info}

    def get_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """The file rebuilt and SHA-256 checked: ``Body`` (``.read()``), ``ContentLength``,
        ``ETag`` and ``Metadata``."""
        work = Path(tempfile.mkdtemp(prefix="dg-get-"))
        try:
            result = self.client.get(_url(Bucket, Key), work / "body")
            # The open file outlives its folder (POSIX), so nothing is left behind in /tmp.
            body = (work / "body").open("rb")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        entry = self.client.stat(_url(Bucket, keys.logical_key(result.stored_key)))
        return {
            "Body": body,
            "ContentLength": result.size,
            "ETag": f'"{result.sha256}"',
            "Metadata": dict(entry.info.metadata or {}),
            "ResponseMetadata": _ok(),
        }

    def head_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """A file's size and metadata; FileNotFoundError (NotFoundError) when it is not there."""
        entry = self.client.stat(_url(Bucket, Key))
        return {
            "ContentLength": entry.original_size,
            "ContentType": "binary/octet-stream",
            "ETag": entry.info.etag,
            "LastModified": entry.info.last_modified,
            "Metadata": dict(entry.info.metadata or {}),
            "ResponseMetadata": _ok(),
        }

    def list_objects(  # noqa: PLR0917 (boto3's signature)
        self,
        Bucket: str,  # noqa: N803
        Prefix: str = "",  # noqa: N803
        Delimiter: str = "",  # noqa: N803
        MaxKeys: int = 1000,  # noqa: N803
        ContinuationToken: str | None = None,  # noqa: N803
        StartAfter: str | None = None,  # noqa: N803
        FetchMetadata: bool = False,  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Logical files (``.delta`` stripped, references hidden) with their original sizes, a
        page at a time: ``NextContinuationToken`` is the last key of the page."""
        if Delimiter not in ("", "/"):
            raise ConfigError(f"Delimiter must be '' or '/', got {Delimiter!r}")
        store, _ = self.client.locate(_url(Bucket))
        rows = store.listing(Prefix, recursive=not Delimiter).rows
        after = StartAfter or ContinuationToken or ""
        items = sorted((r for r in rows if r.key > after), key=lambda r: r.key)
        page, rest = items[:MaxKeys], items[MaxKeys:]
        contents = [_listed(e) for e in page if isinstance(e, Entry)]
        response: dict[str, Any] = {
            "IsTruncated": bool(rest),
            "Contents": contents,
            "Name": Bucket,
            "Prefix": Prefix,
            "Delimiter": Delimiter,
            "MaxKeys": MaxKeys,
            "KeyCount": len(contents),
            "ResponseMetadata": _ok(),
        }
        prefixes = [{"Prefix": p.key} for p in page if isinstance(p, Folder)]
        if prefixes:
            response["CommonPrefixes"] = prefixes
        if rest and page:
            response["NextContinuationToken"] = page[-1].key
        if ContinuationToken:
            response["ContinuationToken"] = ContinuationToken
        return response

    list_objects_v2 = list_objects

    def delete_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """Delete a file (its reference goes with the last delta that needs it)."""
        info = {"Type": self._delete(Bucket, Key)[1], "Deleted": True}
        return {"DeleteMarker": False, "ResponseMetadata": _ok(204), "DeltaGliderInfo": info}

    def delete_objects(
        self,
        Bucket: str,  # noqa: N803
        Delete: dict[str, Any],  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Delete ``Delete["Objects"]``; each missing or failed key is in ``Errors``."""
        deleted: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        for item in Delete.get("Objects", []):
            key = item["Key"]
            try:
                stored, kind = self._delete(Bucket, key)
            except NotFoundError as exc:
                errors.append({"Key": key, "Code": "NoSuchKey", "Message": str(exc)})
                continue
            except DgError as exc:
                errors.append({"Key": key, "Code": "InternalError", "Message": str(exc)})
                continue
            done: dict[str, Any] = {"Key": key, "Type": kind}
            if stored != key:
                done["StoredKey"] = stored
            deleted.append(done)
        response: dict[str, Any] = {"Deleted": deleted}
        if errors:
            response["Errors"] = errors
        response["ResponseMetadata"] = _ok()
        return response

    def delete_objects_recursive(
        self,
        Bucket: str,  # noqa: N803
        Prefix: str,  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Delete the file named ``Prefix`` (when there is one) and everything under the folder
        ``Prefix/``, references and hidden objects too; a reference that deltas outside the
        folder still need is kept, with a warning."""
        singles: list[dict[str, Any]] = []
        errors: list[str] = []
        single_failed = 0
        if Prefix and not Prefix.endswith("/") and self._find(Bucket, Prefix) is not None:
            try:
                stored, kind = self._delete(Bucket, Prefix)
            except DgError as exc:
                errors.append(f"Failed to delete {Prefix}: {exc}")
                single_failed = 1
            else:
                single: dict[str, Any] = {
                    "Key": Prefix, "Type": kind, "DependentDeltas": 0, "Warnings": [],
                }  # fmt: skip
                if stored != Prefix:
                    single["StoredKey"] = stored
                singles.append(single)
        folder = Prefix.rstrip("/") + "/" if Prefix.rstrip("/") else ""
        store, _ = self.client.locate(_url(Bucket))
        stored_keys = [o.key for o in store.listing(folder, recursive=True, details=False).objects]
        spaces = {keys.deltaspace_of(k) for k in stored_keys if keys.is_reference(k)}
        try:
            deleted = store.delete_physical(stored_keys, spaces=spaces)
        except DgError as exc:
            errors.append(f"Failed to delete under {_url(Bucket, folder)}: {exc}")
            left = {o.key for o in store.listing(folder, recursive=True, details=False).objects}
            deleted = [k for k in stored_keys if k not in left]
        kept = [k for k in stored_keys if keys.is_reference(k) and k not in deleted]
        failed = [k for k in stored_keys if k not in deleted and not keys.is_reference(k)]
        counts = {"delta": 0, "reference": 0, "direct": 0, "other": 0}
        for key in deleted:
            counts[_object_type(key)] += 1
        for single in singles:
            counts[single["Type"]] += 1
        info: dict[str, Any] = {
            "DeltasDeleted": counts["delta"],
            "ReferencesDeleted": counts["reference"],
            "DirectDeleted": counts["direct"],
            "OtherDeleted": counts["other"],
        }
        if singles:
            info["SingleDeletes"] = singles
        response: dict[str, Any] = {
            "ResponseMetadata": _ok(),
            "DeletedCount": len(deleted) + len(singles),
            "FailedCount": len(failed) + single_failed,
            "DeltaGliderInfo": info,
        }
        if errors:
            response["Errors"] = errors
        if kept:
            response["Warnings"] = [f"Kept reference {k} (still in use)" for k in kept]
        return response

    def _find(self, bucket: str, key: str) -> Entry | None:
        """The stored file ``key`` names (directly or as its delta), None when there is none."""
        try:
            return self.client.stat(_url(bucket, key))
        except NotFoundError:
            return None

    def _delete(self, bucket: str, key: str) -> tuple[str, str]:
        """The stored key deleted and its type (``delta`` or ``direct``)."""
        entry = self.client.stat(_url(bucket, key))
        self.client.delete(_url(bucket, entry.key))
        return entry.stored_key, "delta" if keys.is_delta(entry.stored_key) else "direct"

    # ---------------------------------------------------------------- DeltaGlider's own

    def upload(
        self,
        file_path: str | Path,
        s3_url: str,
        tags: dict[str, str] | None = None,
        max_ratio: float = 0.5,
    ) -> UploadSummary:
        """Store a file in the DeltaSpace ``s3_url`` names (a folder: the file keeps its name)."""
        bucket = s3_url.removeprefix("s3://").partition("/")[0]
        folder = s3_url.rstrip("/") + "/"
        result = self.client.put(Path(file_path), folder, max_ratio=max_ratio)
        return self._summary(bucket, result)

    def download(self, s3_url: str, output_path: str | Path) -> None:
        """Rebuild a file (by its name or its ``.delta`` key) into ``output_path``."""
        self.client.get(s3_url, Path(output_path))

    def verify(self, s3_url: str) -> bool:
        """True when the file rebuilds from the store to its recorded SHA-256."""
        try:
            self.client.verify(s3_url)
        except IntegrityError:
            return False
        return True

    def get_bucket_stats(
        self,
        bucket: str,
        mode: str = "quick",
        use_cache: bool = True,
        refresh_cache: bool = False,
    ) -> BucketStats:
        """Files, original and stored bytes of the whole bucket (every mode is exact)."""
        if mode not in {"quick", "sampled", "detailed"}:
            raise ValueError(f"Unknown stats mode: {mode}")
        files = self.client.list(_url(bucket))
        summary = self.client.stats(_url(bucket))
        deltas = sum(1 for f in files if keys.is_delta(f.stored_key))
        ratio = summary.saved_bytes / summary.original_bytes if summary.original_bytes else 0.0
        return BucketStats(
            bucket=bucket,
            object_count=summary.files,
            total_size=summary.original_bytes,
            compressed_size=summary.stored_bytes,
            space_saved=max(0, summary.saved_bytes),
            average_compression_ratio=min(1.0, max(0.0, ratio)),
            delta_objects=deltas,
            direct_objects=summary.files - deltas,
        )

    def upload_chunked(
        self,
        file_path: str | Path,
        s3_url: str,
        chunk_size: int = 5 * MB,
        progress_callback: Callable[[int, int, int, int], None] | None = None,
        max_ratio: float = 0.5,
    ) -> UploadSummary:
        """``upload``, telling ``progress_callback(chunk, chunks, bytes_done, total)`` per
        ``chunk_size`` bytes as DeltaGlider does (all before the upload, then once more)."""
        size = Path(file_path).stat().st_size
        chunks = max(1, -(-size // chunk_size))
        if progress_callback and chunks > 1:
            for chunk in range(1, chunks + 1):
                progress_callback(chunk, chunks, min(size, chunk * chunk_size), size)
        summary = self.upload(file_path, s3_url, max_ratio=max_ratio)
        if progress_callback:
            progress_callback(chunks, chunks, size, size)
        return summary

    def upload_batch(
        self,
        files: list[str | Path],
        s3_prefix: str,
        max_ratio: float = 0.5,
        progress_callback: Callable[[str, int, int], None] | None = None,
    ) -> list[UploadSummary]:
        """``upload`` each file into the folder ``s3_prefix``, in order (so each may be a
        delta against the first); ``progress_callback(name, number, total)`` before each."""
        summaries: list[UploadSummary] = []
        for number, name in enumerate(files, start=1):
            path = Path(name)
            if progress_callback:
                progress_callback(path.name, number, len(files))
            summaries.append(self.upload(path, s3_prefix, max_ratio=max_ratio))
        return summaries

    def download_batch(
        self,
        s3_urls: list[str],
        output_dir: str | Path,
        progress_callback: Callable[[str, int, int], None] | None = None,
    ) -> list[Path]:
        """``download`` each URL into ``output_dir`` under its file's name (``.delta``
        dropped); ``progress_callback(name, number, total)`` before each."""
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        for number, url in enumerate(s3_urls, start=1):
            name = keys.logical_key(url.rpartition("/")[2])
            if progress_callback:
                progress_callback(name, number, len(s3_urls))
            self.download(url, folder / name)
            paths.append(folder / name)
        return paths

    def get_object_info(self, s3_url: str) -> ObjectInfo:
        """One stored file (by its name or its ``.delta`` key): stored and original size and
        the reference of a delta; FileNotFoundError (NotFoundError) when it is not there."""
        entry = self.client.stat(s3_url)
        delta = keys.is_delta(entry.stored_key)
        size = entry.original_size if entry.original_size is not None else entry.stored_size
        return ObjectInfo(
            key=entry.stored_key,
            size=entry.stored_size,
            last_modified=_iso(entry.info.last_modified),
            etag=entry.info.etag,
            original_size=size,
            compressed_size=entry.stored_size,
            compression_ratio=entry.stored_size / size if delta and size else 0.0,
            is_delta=delta,
            reference_key=entry.reference,
            delta_chain_length=1 if delta else 0,
        )

    def estimate_compression(
        self,
        file_path: str | Path,
        bucket: str,
        prefix: str = "",
        sample_size: int = MB,
    ) -> CompressionEstimate:
        """DeltaGlider's guess, from names alone, of what storing a file would save: much
        when a similar file is stored under ``prefix``, nothing for media; the file is not read."""
        path = Path(file_path)
        size = path.stat().st_size
        if path.suffix.lower() in INCOMPRESSIBLE:
            return CompressionEstimate(size, size, 0.0, 0.95, should_use_delta=False)
        if not keys.is_delta_eligible(path.name, self.client.settings.delta_extensions):
            return CompressionEstimate(size, size, 0.0, 0.5, should_use_delta=size > MB)
        similar = self.find_similar_files(bucket, prefix, path.name)
        ratio, confidence = (0.99, 0.9) if similar else (0.0, 0.7)
        return CompressionEstimate(
            original_size=size,
            estimated_compressed_size=int(size * (1 - ratio)),
            estimated_ratio=ratio,
            confidence=confidence,
            recommended_reference=similar[0]["Key"] if similar else None,
        )

    def find_similar_files(
        self,
        bucket: str,
        prefix: str,
        filename: str,
        limit: int = 5,
    ) -> list[dict[str, Any]]:
        """Files under ``prefix`` whose names look like versions of ``filename`` (DeltaGlider's
        score: same extension 0.5, one stem inside the other 0.3, both versioned 0.2), best
        first; ``Key``, ``Size``, ``Similarity``, ``LastModified``."""
        listing = self.list_objects(Bucket=bucket, Prefix=prefix, MaxKeys=1000)
        stem, ext = Path(filename).stem, Path(filename).suffix
        similar: list[dict[str, Any]] = []
        for obj in listing["Contents"]:
            other = Path(obj["Key"])
            score = 0.5 if other.suffix == ext else 0.0
            if stem in other.stem or other.stem in stem:
                score += 0.3
            if _VERSION.search(stem) and _VERSION.search(other.stem):
                score += 0.2
            if score > 0.5:
                similar.append(
                    {
                        "Key": obj["Key"],
                        "Size": obj["Size"],
                        "Similarity": score,
                        "LastModified": obj["LastModified"],
                    }
                )
        similar.sort(key=lambda found: float(found["Similarity"]), reverse=True)
        return similar[:limit]

    # ---------------------------------------------------------------- buckets

    def _s3(self, bucket: str) -> S3Storage:
        store, _ = self.client.locate(_url(bucket))
        assert isinstance(store.storage, S3Storage)  # an s3:// URL always makes one
        return store.storage

    def _boto(self) -> S3Client:
        """The endpoint's boto3 client, for the calls DeltaGlider passes straight through."""
        return S3Storage("-", self.client.s3, shared_client=True).client

    def create_bucket(
        self,
        Bucket: str,  # noqa: N803
        CreateBucketConfiguration: dict[str, str] | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Create a bucket; one that exists already is success, as in DeltaGlider."""
        params: dict[str, Any] = {"Bucket": Bucket}
        if CreateBucketConfiguration:
            params["CreateBucketConfiguration"] = CreateBucketConfiguration
        try:
            response = self._boto().create_bucket(**params)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                raise translate(exc, f"bucket {Bucket}") from exc
            return {"Location": f"/{Bucket}", "ResponseMetadata": _ok()}
        return {"Location": response.get("Location", f"/{Bucket}"), "ResponseMetadata": _ok()}

    def list_buckets(self, **kwargs: Any) -> dict[str, Any]:
        """The buckets the credentials can see (``Name``, ``CreationDate``)."""
        try:
            raw = self._boto().list_buckets()
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, "the bucket list") from exc
        buckets = [dict(b) for b in raw.get("Buckets", [])]
        return {"Buckets": buckets, "Owner": dict(raw.get("Owner", {})), "ResponseMetadata": _ok()}

    def delete_bucket(self, Bucket: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """Delete an empty bucket; one that is not there is success, as in DeltaGlider."""
        try:
            self._boto().delete_bucket(Bucket=Bucket)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "NoSuchBucket":
                raise translate(exc, f"bucket {Bucket}") from exc
        return {"ResponseMetadata": _ok(204)}

    def put_bucket_acl(  # noqa: PLR0917 (DeltaGlider's signature)
        self,
        Bucket: str,  # noqa: N803
        ACL: str | None = None,  # noqa: N803
        AccessControlPolicy: dict[str, Any] | None = None,  # noqa: N803
        GrantFullControl: str | None = None,  # noqa: N803
        GrantRead: str | None = None,  # noqa: N803
        GrantReadACP: str | None = None,  # noqa: N803
        GrantWrite: str | None = None,  # noqa: N803
        GrantWriteACP: str | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Set a bucket's ACL (passed to S3 as given)."""
        given: dict[str, Any] = {
            "ACL": ACL,
            "AccessControlPolicy": AccessControlPolicy,
            "GrantFullControl": GrantFullControl,
            "GrantRead": GrantRead,
            "GrantReadACP": GrantReadACP,
            "GrantWrite": GrantWrite,
            "GrantWriteACP": GrantWriteACP,
        }
        params = {k: v for k, v in given.items() if v is not None}
        try:
            self._boto().put_bucket_acl(Bucket=Bucket, **params)
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, f"the ACL of bucket {Bucket}") from exc
        return {"ResponseMetadata": _ok()}

    def get_bucket_acl(self, Bucket: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """A bucket's ACL: S3's response (``Owner``, ``Grants``)."""
        try:
            return dict(self._boto().get_bucket_acl(Bucket=Bucket))
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, f"the ACL of bucket {Bucket}") from exc

    # ---------------------------------------------------------------- presigned URLs

    def generate_presigned_url(
        self,
        ClientMethod: str,  # noqa: N803
        Params: dict[str, Any],  # noqa: N803
        ExpiresIn: int = 3600,  # noqa: N803
    ) -> str:
        """A presigned URL for one S3 call on the stored object named (a delta serves its delta
        bytes: ``generate_presigned_url_with_rehydration`` serves the file)."""
        return self._boto().generate_presigned_url(
            ClientMethod=ClientMethod, Params=Params, ExpiresIn=ExpiresIn
        )

    def generate_presigned_post(
        self,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Fields: dict[str, str] | None = None,  # noqa: N803
        Conditions: list[Any] | None = None,  # noqa: N803
        ExpiresIn: int = 3600,  # noqa: N803
    ) -> dict[str, Any]:
        """The ``url`` and form ``fields`` of a browser upload straight to S3 (stored whole,
        as S3 receives it)."""
        post = self._boto().generate_presigned_post(
            Bucket=Bucket, Key=Key, Fields=Fields, Conditions=Conditions, ExpiresIn=ExpiresIn
        )
        return dict(post)

    def rehydrate_for_download(
        self,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        ExpiresIn: int = 3600,  # noqa: N803
    ) -> str | None:
        """Rebuild a file stored by DeltaGlider or dg-agent (a delta, or one with a recorded
        SHA-256) into a temporary object under ``.dg/tmp/`` that expires in ``ExpiresIn``
        seconds (``purge_temp_files`` deletes it then), and return its key; None for a plain
        object, which S3 can serve as it is."""
        entry = self.client.stat(_url(Bucket, Key))
        if not keys.is_delta(entry.stored_key) and "dg-file-sha256" not in (
            entry.info.metadata or {}
        ):
            return None
        name = keys.logical_key(entry.stored_key).rpartition("/")[2]
        temp_key = f"{TEMP_PREFIX}{uuid.uuid4().hex}_{name}"
        now = datetime.now(UTC)
        metadata = {
            "dg-expires-at": (now + timedelta(seconds=ExpiresIn)).isoformat(),
            "dg-original-key": entry.stored_key,
            "dg-original-filename": name,
            "dg-rehydrated": "true",
            "dg-created-at": now.isoformat(),
        }
        with tempfile.TemporaryDirectory(prefix="dg-rehydrate-") as work:
            rebuilt = Path(work) / "file"
            self.client.get(_url(Bucket, entry.stored_key), rebuilt)
            self._s3(Bucket).upload(temp_key, rebuilt, metadata)
        return temp_key

    def generate_presigned_url_with_rehydration(
        self,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        ExpiresIn: int = 3600,  # noqa: N803
    ) -> str:
        """A presigned URL that downloads the file itself, under its own name, whether it is
        stored as a delta or whole."""
        temp_key = self.rehydrate_for_download(Bucket, Key, ExpiresIn)
        params: dict[str, Any] = {"Bucket": Bucket, "Key": temp_key or Key}
        if temp_key:
            name = keys.logical_key(Key).rpartition("/")[2]
            params["ResponseContentDisposition"] = f'attachment; filename="{name}"'
        return self.generate_presigned_url("get_object", Params=params, ExpiresIn=ExpiresIn)

    def purge_temp_files(self, Bucket: str) -> dict[str, Any]:  # noqa: N803
        """Delete the expired objects ``rehydrate_for_download`` left under ``.dg/tmp/``."""
        started = time.monotonic()
        storage = self._s3(Bucket)
        deleted = expired = freed = 0
        errors: list[str] = []
        for obj in storage.list_objects(TEMP_PREFIX):
            if isinstance(obj, Folder):
                continue
            try:
                head = storage.head(obj.key)
                stamp = (head.metadata or {}).get("dg-expires-at") if head else None
                if not stamp or datetime.now(UTC) < _moment(stamp):
                    continue
                expired += 1
                storage.delete(obj.key)
            except (DgError, ValueError) as exc:
                errors.append(f"Error processing {obj.key}: {exc}")
                continue
            deleted += 1
            freed += obj.size
        return {
            "bucket": Bucket,
            "prefix": TEMP_PREFIX,
            "deleted_count": deleted,
            "expired_count": expired,
            "error_count": len(errors),
            "total_size_freed": freed,
            "duration_seconds": time.monotonic() - started,
            "errors": errors,
        }

    def clear_cache(self) -> None:
        """Empty the reference cache on disk; entries another process is reading stay until it
        is done with them. The next read fetches references from the store again."""
        ReferenceCache(self.client.cache.root, max_bytes=0).evict()

    # ---------------------------------------------------------------- shapes

    def _summary(self, bucket: str, result: PutResult) -> UploadSummary:
        """DeltaGlider's account of a put: a new reference counts as the file stored whole."""
        if result.reference_size:
            reference = self.client.stat(_url(bucket, result.key)).reference or result.stored_key
            return UploadSummary(
                "create_reference", bucket, reference, result.original_size,
                result.original_size, False,
            )  # fmt: skip
        if result.kind is Kind.DELTA:
            ratio = result.stored_size / result.original_size if result.original_size else 0.0
            return UploadSummary(
                "create_delta", bucket, result.stored_key, result.original_size,
                result.stored_size, True, ratio,
            )  # fmt: skip
        return UploadSummary(
            "upload_direct", bucket, result.stored_key, result.original_size,
            result.original_size, False,
        )  # fmt: skip


def _object_type(key: str) -> str:
    """How DeltaGlider counts a deleted object: ``delta``, ``reference``, ``direct`` (a file
    stored whole) or ``other`` (dg-agent's hidden objects).

    >>> [_object_type(k) for k in ("a/x.zip.delta", "a/reference.bin", "a/n.txt", ".dg/tmp/x")]
    ['delta', 'reference', 'direct', 'other']
    """
    if keys.is_reference(key):
        return "reference"
    if keys.is_delta(key):
        return "delta"
    return "other" if keys.is_internal(key) else "direct"


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _listed(entry: Entry) -> dict[str, Any]:
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
        "LastModified": _iso(entry.info.last_modified),
        "ETag": entry.info.etag,
        "StorageClass": "STANDARD",
        "Metadata": metadata,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _moment(stamp: str) -> datetime:
    """An ISO 8601 time as DeltaGlider writes ``dg-expires-at`` (UTC when it names no zone).

    >>> _moment("2026-01-02T03:04:05Z").isoformat()
    '2026-01-02T03:04:05+00:00'
    """
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


__all__ = [
    "BucketStats",
    "CompressionEstimate",
    "DeltaGliderClient",
    "ObjectInfo",
    "UploadSummary",
    "create_client",
]
