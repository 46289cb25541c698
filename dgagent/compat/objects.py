"""Object calls of the compat client: put, get, head, list and delete objects, and DeltaGlider's
upload, download, verify and bucket stats."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dgagent.engine import keys
from dgagent.engine.metadata import Kind
from dgagent.engine.results import Entry, PutResult
from dgagent.errors import ConfigError, DgError, IntegrityError, NotFoundError
from dgagent.storage import Prefix as Folder

if TYPE_CHECKING:
    pass

from dgagent.compat.buckets import BucketCalls
from dgagent.compat.shapes import (
    BucketStats,
    UploadSummary,
    bucket_url,
    listed,
    object_type,
    response_ok,
)


class ObjectCalls(BucketCalls):
    """The object calls, over ``self.client`` (a ``dgagent.Client``)."""

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
            result = self.client.put(source, bucket_url(Bucket, Key))
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
        return {
            "ETag": f'"{result.sha256}"',
            "ResponseMetadata": response_ok(),
            "DeltaGliderInfo": info,
        }

    def get_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """The file rebuilt and SHA-256 checked: ``Body`` (``.read()``), ``ContentLength``,
        ``ETag`` and ``Metadata``."""
        work = Path(tempfile.mkdtemp(prefix="dg-get-"))
        try:
            result = self.client.get(bucket_url(Bucket, Key), work / "body")
            # The open file outlives its folder (POSIX), so nothing is left behind in /tmp.
            body = (work / "body").open("rb")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        entry = self.client.stat(bucket_url(Bucket, keys.logical_key(result.stored_key)))
        return {
            "Body": body,
            "ContentLength": result.size,
            "ETag": f'"{result.sha256}"',
            "Metadata": dict(entry.info.metadata or {}),
            "ResponseMetadata": response_ok(),
        }

    def head_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        """A file's size and metadata; FileNotFoundError (NotFoundError) when it is not there."""
        entry = self.client.stat(bucket_url(Bucket, Key))
        return {
            "ContentLength": entry.original_size,
            "ContentType": "binary/octet-stream",
            "ETag": entry.info.etag,
            "LastModified": entry.info.last_modified,
            "Metadata": dict(entry.info.metadata or {}),
            "ResponseMetadata": response_ok(),
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
        store, _ = self.client.locate(bucket_url(Bucket))
        rows = store.listing(Prefix, recursive=not Delimiter).rows
        after = StartAfter or ContinuationToken or ""
        items = sorted((r for r in rows if r.key > after), key=lambda r: r.key)
        page, rest = items[:MaxKeys], items[MaxKeys:]
        contents = [listed(e) for e in page if isinstance(e, Entry)]
        response: dict[str, Any] = {
            "IsTruncated": bool(rest),
            "Contents": contents,
            "Name": Bucket,
            "Prefix": Prefix,
            "Delimiter": Delimiter,
            "MaxKeys": MaxKeys,
            "KeyCount": len(contents),
            "ResponseMetadata": response_ok(),
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
        return {
            "DeleteMarker": False,
            "ResponseMetadata": response_ok(204),
            "DeltaGliderInfo": info,
        }

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
        response["ResponseMetadata"] = response_ok()
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
        store, _ = self.client.locate(bucket_url(Bucket))
        stored_keys = [o.key for o in store.listing(folder, recursive=True, details=False).objects]
        spaces = {keys.deltaspace_of(k) for k in stored_keys if keys.is_reference(k)}
        try:
            deleted = store.delete_physical(stored_keys, spaces=spaces)
        except DgError as exc:
            errors.append(f"Failed to delete under {bucket_url(Bucket, folder)}: {exc}")
            left = {o.key for o in store.listing(folder, recursive=True, details=False).objects}
            deleted = [k for k in stored_keys if k not in left]
        kept = [k for k in stored_keys if keys.is_reference(k) and k not in deleted]
        failed = [k for k in stored_keys if k not in deleted and not keys.is_reference(k)]
        counts = {"delta": 0, "reference": 0, "direct": 0, "other": 0}
        for key in deleted:
            counts[object_type(key)] += 1
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
            "ResponseMetadata": response_ok(),
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
            return self.client.stat(bucket_url(bucket, key))
        except NotFoundError:
            return None

    def _delete(self, bucket: str, key: str) -> tuple[str, str]:
        """The stored key deleted and its type (``delta`` or ``direct``)."""
        entry = self.client.stat(bucket_url(bucket, key))
        self.client.delete(bucket_url(bucket, entry.key))
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
        store, _ = self.client.locate(bucket_url(bucket))
        found = store.listing("", recursive=True)  # one listing for the counts and the bytes
        summary = found.summary()
        deltas = sum(1 for f in found.files if keys.is_delta(f.stored_key))
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

    def _summary(self, bucket: str, result: PutResult) -> UploadSummary:
        """DeltaGlider's account of a put: a new reference counts as the file stored whole."""
        if result.reference_size:
            reference = (
                self.client.stat(bucket_url(bucket, result.key)).reference or result.stored_key
            )
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
