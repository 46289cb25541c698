"""DeltaGlider's extras in the compat client: chunked and batch transfers, object info,
compression estimates, similar files, presigned URLs (with rehydration of delta-stored files),
the temp purge and cache clearing."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgagent.engine import keys
from dgagent.engine.cache import ReferenceCache
from dgagent.errors import DgError
from dgagent.storage import Prefix as Folder

if TYPE_CHECKING:
    pass

from dgagent.compat.objects import ObjectCalls
from dgagent.compat.shapes import (
    INCOMPRESSIBLE,
    MB,
    TEMP_PREFIX,
    VERSION_RE,
    CompressionEstimate,
    ObjectInfo,
    UploadSummary,
    bucket_url,
    iso,
    moment,
)


class ExtraCalls(ObjectCalls):
    """The extras, over ``self.client`` (a ``dgagent.Client``)."""

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
            last_modified=iso(entry.info.last_modified),
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
            if VERSION_RE.search(stem) and VERSION_RE.search(other.stem):
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
        entry = self.client.stat(bucket_url(Bucket, Key))
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
            self.client.get(bucket_url(Bucket, entry.stored_key), rebuilt)
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
                if not stamp or datetime.now(UTC) < moment(stamp):
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
