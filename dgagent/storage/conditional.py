"""Whether an S3 server really honours ``If-None-Match: *``, found out by trying it.

A create-only write is what keeps two writers from overwriting each other's ``reference.bin``.
Some servers refuse the header with ``501`` (AWS before 2024), which is easy; others answer ``200``
and overwrite (rclone serve s3, s3rver; by their documentation SeaweedFS on versioned buckets and
Garage), which no single request can tell apart from success. So before the first create in a
bucket a probe key under ``.dg/probe/`` is written twice with the header, once by PutObject and
once by CompleteMultipartUpload (SeaweedFS honours it on the first only): the second write of each
must be refused with ``412``. The answer is remembered per endpoint and bucket in the cache folder
for a day, so a fleet of short ``dg-agent cp`` runs probes once, and a server upgrade is seen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import botocore.exceptions
import platformdirs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_FAILED = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)

PROBE_PREFIX = ".dg/probe/"
REPROBE_AFTER = 24 * 3600.0
"""Seconds a remembered answer is trusted before the server is asked again."""


@dataclass(frozen=True)
class ConditionalWrites:
    """What one bucket's server does with ``If-None-Match: *`` on an existing key."""

    put: bool
    """PutObject is refused (412), so a single-request create cannot overwrite."""
    multipart: bool
    """CompleteMultipartUpload is refused (412) too."""
    probed_at: float

    def honoured(self, *, multipart: bool) -> bool:
        return self.multipart if multipart else self.put

    def describe(self) -> str:
        """For status and the log: which mode the bucket's writes are in."""
        if self.put and self.multipart:
            return "conditional writes honoured"
        if self.put:
            return "conditional writes honoured for single uploads only"
        return "conditional writes ignored"


def _refused(exc: botocore.exceptions.ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return status == 412 or code in ("PreconditionFailed", "412")


def _unsupported(exc: botocore.exceptions.ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status == 501 or exc.response.get("Error", {}).get("Code") == "NotImplemented"


def probe(client: S3Client, bucket: str) -> ConditionalWrites:
    """Ask the server: create a probe key, then try to create it again both ways.

    Any answer other than a clean 412 counts as "not honoured": the safe mode costs only
    compatibility with deltaglider_proxy, while trusting a server wrongly costs files.
    """
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    put = multipart = False
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"1", IfNoneMatch="*")
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"2", IfNoneMatch="*")
        except botocore.exceptions.ClientError as exc:
            put = _refused(exc)
            if not put:
                raise
        multipart = _probe_multipart(client, bucket, key)
    except botocore.exceptions.ClientError as exc:
        if not _unsupported(exc):
            log.warning("s3://%s: probing conditional writes failed (%s)", bucket, exc)
    except botocore.exceptions.BotoCoreError as exc:
        log.warning("s3://%s: probing conditional writes failed (%s)", bucket, exc)
    finally:
        with contextlib.suppress(*_FAILED):
            client.delete_object(Bucket=bucket, Key=key)
    return ConditionalWrites(put=put, multipart=multipart, probed_at=time.time())


def _probe_multipart(client: S3Client, bucket: str, key: str) -> bool:
    """Complete a one-part upload over the existing probe key with the header: refused?"""
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        part = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"3"
        )
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
            IfNoneMatch="*",
        )
    except botocore.exceptions.ClientError as exc:
        with contextlib.suppress(*_FAILED):
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        if _refused(exc):
            return True
        if _unsupported(exc):
            return False
        raise
    return False


def _memory_file() -> Path:
    return Path(platformdirs.user_cache_dir("dg-agent")) / "servers.json"


def recall(endpoint: str, bucket: str, *, now: float | None = None) -> ConditionalWrites | None:
    """The remembered answer for this endpoint and bucket, if fresh."""
    try:
        doc = json.loads(_memory_file().read_text(encoding="utf-8"))
        entry = doc[f"{endpoint} {bucket}"]
        known = ConditionalWrites(
            put=bool(entry["put"]),
            multipart=bool(entry["multipart"]),
            probed_at=float(entry["probed_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # nothing remembered (or unreadable): ask the server again
    current = time.time() if now is None else now
    if not 0 <= current - known.probed_at < REPROBE_AFTER:
        return None
    return known


def remember(endpoint: str, bucket: str, answer: ConditionalWrites) -> None:
    """Keep the answer for the next process; a failure to write only costs a probe later."""
    path = _memory_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                doc = {}
        except (OSError, ValueError):
            doc = {}
        doc[f"{endpoint} {bucket}"] = asdict(answer)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".servers-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not remember the conditional-write probe: %s", exc)
