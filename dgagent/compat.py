"""A drop-in for DeltaGlider 6.2.0's Python client: ``create_client()`` on dg-agent's engine.

Code written against ``deltaglider.create_client()`` runs by changing the import; names,
parameters and response dicts are DeltaGlider's, and what either client writes the other reads.
Covered: ``put_object``, ``get_object``, ``head_object``, ``list_objects`` (and
``list_objects_v2``), ``delete_object``, ``delete_objects``, ``upload``, ``download``, ``verify``,
``get_bucket_stats``, ``create_bucket`` and ``list_buckets``.

Where dg-agent answers differently, on purpose:

- ``list_objects`` and ``head_object`` give each file's original size (``Size``,
  ``ContentLength``), as ``get_object`` returns it; DeltaGlider gives the size of the stored delta.
- ``head_object`` and ``get_object`` find a file stored as a delta by its own name and return its
  stored metadata (DeltaGlider's ``head_object`` raises there, and its ``get_object`` gives ``{}``).
- ``Metadata`` given to ``put_object`` is accepted and not stored, as DeltaGlider does.
- ``get_bucket_stats`` counts stored bytes as every object of the bucket, references included,
  each once (dg-agent's one definition), whatever the ``mode``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import botocore.exceptions

from dgagent.client import Client
from dgagent.engine import keys
from dgagent.engine.metadata import Kind
from dgagent.engine.results import Entry, PutResult
from dgagent.errors import ConfigError, DgError, IntegrityError, NotFoundError
from dgagent.storage import Prefix as Folder
from dgagent.storage import S3Options, S3Storage
from dgagent.storage.s3 import translate

MB = 1024 * 1024


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

    # ---------------------------------------------------------------- buckets

    def _s3(self, bucket: str) -> S3Storage:
        store, _ = self.client.locate(_url(bucket))
        assert isinstance(store.storage, S3Storage)  # an s3:// URL always makes one
        return store.storage

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
            response = self._s3(Bucket).client.create_bucket(**params)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                raise translate(exc, f"bucket {Bucket}") from exc
            return {"Location": f"/{Bucket}", "ResponseMetadata": _ok()}
        return {"Location": response.get("Location", f"/{Bucket}"), "ResponseMetadata": _ok()}

    def list_buckets(self, **kwargs: Any) -> dict[str, Any]:
        """The buckets the credentials can see (``Name``, ``CreationDate``)."""
        client = S3Storage("-", self.client.s3, shared_client=True).client
        try:
            raw = client.list_buckets()
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, "the bucket list") from exc
        buckets = [dict(b) for b in raw.get("Buckets", [])]
        return {"Buckets": buckets, "Owner": dict(raw.get("Owner", {})), "ResponseMetadata": _ok()}

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


__all__ = ["BucketStats", "DeltaGliderClient", "UploadSummary", "create_client"]
