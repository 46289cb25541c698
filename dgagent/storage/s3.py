"""A store in an S3 bucket (AWS or any S3-compatible server), through boto3.

Uploads stream from disk: one PutObject below the multipart threshold, else a multipart upload
whose parts go up in parallel and which is aborted on any failure (no orphan uploads left to bill).
``create_only`` sends ``If-None-Match: *`` (on PutObject, or on CompleteMultipartUpload), so two
writers racing to create ``reference.bin`` cannot overwrite each other, where the server honours
it: whether it does is probed once per bucket (conditional.py) and told by ``honours_create_only``,
so that the engine can avoid relying on it. Where it is not honoured, ``create_only`` falls back to
write-then-verify: a HEAD first, an unconditional write, and a HEAD after it that must show our
ETag (else another writer won); this narrows a race but cannot close it. Downloads are one GET
streamed to the caller; a connection that breaks mid-body is resumed with a ranged GET pinned to
the same ETag.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
import botocore.exceptions
import botocore.session
import botocore.utils
from botocore.config import Config

from dgagent.errors import (
    AccessDeniedError,
    ConfigError,
    DgError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    UnsupportedError,
)
from dgagent.storage import conditional
from dgagent.storage.base import ObjectInfo, Prefix, Progress
from dgagent.storage.conditional import ConditionalWrites

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
MAX_PARTS = 10_000
MAX_PUT = 5 * 1024 * MIB
"""The largest object one PutObject may carry."""
CHUNK = MIB
DELETE_BATCH = 1000
"""Keys per DeleteObjects request (S3's limit)."""
UNSUPPORTED = ("NotImplemented", "501", "MethodNotAllowed", "405")
"""Error codes of a server that does not implement a request."""


@dataclass(frozen=True)
class S3Options:
    """How to reach S3; every field may be None to use boto3's own resolution (AWS_* variables)."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    checksum_when_required: bool = False
    """Send checksums only when an operation needs them (some S3-compatible servers want this)."""
    multipart_threshold: int = 64 * MIB
    part_size: int = 16 * MIB
    max_attempts: int = 5
    concurrency: int = 8
    trust_conditional_writes: bool = True
    """False: never rely on ``If-None-Match`` (no probe), as for a server known to ignore it."""
    access_key_id: str | None = None
    """Explicit credentials (the Python API's); None: boto3's chain (AWS_*, profile, role)."""
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


_Key = tuple[S3Options, tuple[tuple[str, str], ...]]
_shared: dict[_Key, tuple[S3Client, Counter[str]]] = {}
_shared_lock = threading.Lock()


def counted_client(options: S3Options, *, shared: bool = False) -> tuple[S3Client, Counter[str]]:
    """A client and the counter of the API calls made through it (retries included).

    ``shared``: one client per set of options (and AWS_* environment), for every bucket using
    it. Each boto3 client costs ~12 MB of memory, and an agent with several watches on one
    endpoint needs only one; boto3 clients are safe to share between threads.
    """
    key = (options, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))
    with _shared_lock:
        if shared and key in _shared:
            return _shared[key]
        client = make_client(options)
        requests: Counter[str] = Counter()

        def count(event_name: str = "", **kwargs: Any) -> None:
            # before-send fires once per HTTP attempt, as "before-send.s3.<Operation>".
            requests[event_name.rpartition(".")[2] or "?"] += 1

        client.meta.events.register("before-send.s3", count)
        if shared:
            _shared[key] = (client, requests)
        return client, requests


def parse_timestamp(value: str) -> datetime:
    """LIST's ISO 8601 times (``2026-12-01T10:00:00.000Z``) by the standard library, others
    (HEAD's ``Last-Modified`` header) by botocore's own parser. botocore's default goes through
    dateutil for every object: 4.5 CPU seconds of a 20,000-object listing."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return botocore.utils.parse_timestamp(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def make_client(options: S3Options) -> S3Client:
    """A boto3 S3 client with retries and the checksum setting applied."""
    extra: dict[str, Any] = {}
    if options.checksum_when_required:
        extra["request_checksum_calculation"] = "when_required"
        extra["response_checksum_validation"] = "when_required"
    config = Config(
        retries={"mode": "standard", "max_attempts": options.max_attempts},
        max_pool_connections=max(10, options.concurrency * 2),
        connect_timeout=10,
        read_timeout=60,
        **extra,
    )
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    try:
        session = boto3.Session(
            aws_access_key_id=options.access_key_id,
            aws_secret_access_key=options.secret_access_key,
            aws_session_token=options.session_token,
            profile_name=options.profile,
            region_name=options.region,
            botocore_session=core,
        )
    except botocore.exceptions.ProfileNotFound as exc:
        raise AccessDeniedError(
            f"AWS profile {options.profile!r} is not configured; check ~/.aws/config or drop "
            "--profile"
        ) from exc
    try:
        return session.client("s3", endpoint_url=options.endpoint_url, config=config)
    except ValueError as exc:  # botocore's "Invalid endpoint", also for AWS_ENDPOINT_URL
        given = options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")
        hint = f"http://{given}" if "://" not in given else "http://127.0.0.1:9000"
        raise ConfigError(
            f"the S3 endpoint {given!r} is not a URL; give its scheme too, e.g. "
            f"--endpoint-url {hint} (or https://…)"
        ) from exc


def translate(exc: Exception, what: str) -> DgError:  # noqa: PLR0911 (a flat table reads best)
    """Turn a boto3/botocore failure into one sentence a user can act on."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return AccessDeniedError(
            f"no AWS credentials found for {what}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or pass --profile"
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return StorageError(f"cannot reach the S3 endpoint for {what}: check --endpoint-url")
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "NoSuchBucket":
            return NotFoundError(
                f"bucket of {what} does not exist: create it or check the name and --endpoint-url"
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFoundError(f"{what} does not exist")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status == 412:
            return PreconditionFailedError(f"{what} already exists")
        if code == "NotImplemented" or status == 501:
            return UnsupportedError(
                f"the S3 server does not implement a request for {what} "
                f"({err.get('Message', code)}): dg-agent needs plain PUT, GET, HEAD, LIST, "
                "DELETE and multipart uploads; use a server (or version) that has them"
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return AccessDeniedError(
                f"access denied to {what} ({code}): check the credentials and the bucket policy"
            )
        return StorageError(f"S3 refused {what}: {code} {err.get('Message', '')}".strip())
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return StorageError(f"S3 request for {what} failed: {exc}")
    return StorageError(f"S3 request for {what} failed: {exc}")


S3_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class S3Storage:
    """Objects in one bucket."""

    def __init__(
        self, bucket: str, options: S3Options | None = None, *, shared_client: bool = False
    ) -> None:
        self.bucket = bucket
        self.options = options or S3Options()
        self.client, self.requests = counted_client(self.options, shared=shared_client)
        """``requests``: API calls made through this client, by operation (retries included);
        shared with every S3Storage on the same shared client."""
        self._bucket_seen = False
        self._single_deletes = False
        self._writes: ConditionalWrites | None = None
        self._writes_lock = threading.Lock()

    def conditional_writes(self) -> ConditionalWrites:
        """What this bucket's server does with ``If-None-Match``: remembered, else probed now."""
        with self._writes_lock:
            if self._writes is None:
                self._writes = self._learn_conditional_writes()
            return self._writes

    def _learn_conditional_writes(self) -> ConditionalWrites:
        if not self.options.trust_conditional_writes:
            return ConditionalWrites(put=False, multipart=False, probed_at=0.0)
        endpoint = self.client.meta.endpoint_url
        known = conditional.recall(endpoint, self.bucket)
        if known is not None:
            return known
        self._check_bucket()
        known = conditional.probe(self.client, self.bucket)
        conditional.remember(endpoint, self.bucket, known)
        report = log.info if known.put and known.multipart else log.warning
        report(
            "%s: %s%s",
            self.url,
            known.describe(),
            ""
            if known.put and known.multipart
            else "; new references are written under content-addressed keys "
            "(<folder>/.dg/refs/<sha256>/reference.bin), which deltaglider_proxy cannot read",
        )
        return known

    @property
    def cache_scope(self) -> str:
        return f"{self.client.meta.endpoint_url} {self.bucket}"

    def honours_create_only(self, size: int) -> bool:
        """Whether ``upload(create_only=True)`` of a file this size is enforced by the server."""
        return self.conditional_writes().honoured(multipart=size > MAX_PUT)

    def write_mode(self) -> str:
        """The bucket's write mode for ``status``, without probing (''  until it is known)."""
        return self._writes.describe() if self._writes is not None else ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}"

    def _what(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                self._check_bucket()
                return None
            raise translate(exc, self._what(key)) from exc
        except S3_ERRORS as exc:
            raise translate(exc, self._what(key)) from exc
        return ObjectInfo(
            key=key,
            size=int(r["ContentLength"]),
            etag=r["ETag"],
            last_modified=r["LastModified"],
            metadata=dict(r.get("Metadata", {})),
        )

    def _check_bucket(self) -> None:
        """A HEAD answers a bare 404 for a missing bucket too; tell the two apart once."""
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                raise NotFoundError(
                    f"bucket {self.bucket!r} does not exist: create it or check the name and "
                    "--endpoint-url"
                ) from exc
            raise translate(exc, self.url) from exc
        except S3_ERRORS as exc:
            raise translate(exc, self.url) from exc
        self._bucket_seen = True

    def list_objects(
        self, prefix: str, *, delimiter: str | None = None
    ) -> Iterator[ObjectInfo | Prefix]:
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            for page in paginator.paginate(**kwargs):
                items: list[ObjectInfo | Prefix] = [
                    ObjectInfo(
                        key=o["Key"],
                        size=int(o["Size"]),
                        etag=o["ETag"],
                        last_modified=o["LastModified"],
                    )
                    for o in page.get("Contents", [])
                ]
                items.extend(Prefix(p["Prefix"]) for p in page.get("CommonPrefixes", []))
                yield from sorted(items, key=lambda item: item.key)
        except S3_ERRORS as exc:
            raise translate(exc, self._what(prefix)) from exc

    def download(self, key: str, dest: BinaryIO, *, progress: Progress | None = None) -> ObjectInfo:
        written = 0
        etag: str | None = None
        info: ObjectInfo | None = None
        for attempt in range(self.options.max_attempts):
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
            if etag is not None:
                kwargs.update(IfMatch=etag, Range=f"bytes={written}-")
            try:
                r = self.client.get_object(**kwargs)
                if info is None:
                    etag = r["ETag"]
                    info = ObjectInfo(
                        key=key,
                        size=int(r["ContentLength"]),
                        etag=r["ETag"],
                        last_modified=r["LastModified"],
                        metadata=dict(r.get("Metadata", {})),
                    )
                for chunk in r["Body"].iter_chunks(CHUNK):
                    dest.write(chunk)
                    written += len(chunk)
                    if progress:
                        progress(len(chunk))
                return info
            except (
                botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ResponseStreamingError,
                botocore.exceptions.ConnectionClosedError,
            ) as exc:
                if attempt + 1 >= self.options.max_attempts or info is None:
                    raise translate(exc, self._what(key)) from exc
            except S3_ERRORS as exc:
                raise translate(exc, self._what(key)) from exc
        raise StorageError(f"download of {self._what(key)} kept failing; try again later")

    def upload(
        self,
        key: str,
        source: Path,
        metadata: Mapping[str, str],
        *,
        create_only: bool = False,
        progress: Progress | None = None,
    ) -> None:
        try:
            size = source.stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError(f"cannot upload {source}: it does not exist") from exc
        if create_only and not self.honours_create_only(size):
            self._create_then_verify(key, source, size, metadata, progress)
            return
        try:
            self._send(key, source, size, metadata, create_only=create_only, progress=progress)
        except UnsupportedError:
            if not create_only:
                raise
            log.warning(
                "%s does not implement conditional writes (If-None-Match); creating objects "
                "by write-then-verify instead, which cannot stop a racing writer as surely",
                self.url,
            )
            with self._writes_lock:
                self._writes = ConditionalWrites(put=False, multipart=False, probed_at=0.0)
            self._create_then_verify(key, source, size, metadata, progress)

    def _create_then_verify(
        self,
        key: str,
        source: Path,
        size: int,
        metadata: Mapping[str, str],
        progress: Progress | None,
    ) -> None:
        """``create_only`` without server support: refuse when the key exists, write, then
        check that the object is still ours (a racing writer's ETag means it won: it keeps it)."""
        if self.head(key) is not None:
            raise PreconditionFailedError(f"{self._what(key)} already exists")
        self._send(key, source, size, metadata, create_only=False, progress=progress)
        # Ours if it still carries our metadata (dg-created-at has microseconds). Not the
        # ETag: rclone answers a multipart upload with one ETag and HEADs with another.
        now = self.head(key)
        theirs = {k.lower(): v for k, v in (now.metadata or {}).items()} if now else None
        if theirs != {k.lower(): v for k, v in metadata.items()}:
            raise PreconditionFailedError(f"{self._what(key)} was written by another writer")

    def _send(
        self,
        key: str,
        source: Path,
        size: int,
        metadata: Mapping[str, str],
        *,
        create_only: bool,
        progress: Progress | None,
    ) -> str:
        """One upload (PutObject, or multipart above the threshold); the new object's ETag."""
        extra: dict[str, Any] = {
            "Metadata": dict(metadata),
            "ContentType": "application/octet-stream",
        }
        if create_only:
            extra["IfNoneMatch"] = "*"
        try:
            # A create goes up in one request when it can: a server may honour If-None-Match
            # atomically on PutObject only (SeaweedFS's CompleteMultipartUpload is not atomic).
            if size < self.options.multipart_threshold or (create_only and size <= MAX_PUT):
                with source.open("rb") as body:
                    r = self.client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=cast(BinaryIO, _Reader(body, progress)),
                        **extra,
                    )
                return r["ETag"]
            return self._multipart(key, source, size, extra, progress)
        except S3_ERRORS as exc:
            raise translate(exc, self._what(key)) from exc

    def _multipart(
        self, key: str, source: Path, size: int, extra: dict[str, Any], progress: Progress | None
    ) -> str:
        part = max(self.options.part_size, 5 * MIB, math.ceil(size / MAX_PARTS))
        count = math.ceil(size / part)
        condition = {"IfNoneMatch": extra.pop("IfNoneMatch")} if "IfNoneMatch" in extra else {}
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)[
            "UploadId"
        ]
        lock = threading.Lock()

        def send(number: int) -> CompletedPartTypeDef:
            offset = (number - 1) * part
            length = min(part, size - offset)
            with source.open("rb") as f:
                f.seek(offset)
                body = _Slice(f, length, progress, lock)
                r = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=cast(BinaryIO, body),
                    ContentLength=length,
                )
            return {"PartNumber": number, "ETag": r["ETag"]}

        try:
            with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
                parts = list(pool.map(send, range(1, count + 1)))
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
        except BaseException:
            with contextlib.suppress(*S3_ERRORS):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        return done.get("ETag", "")

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except S3_ERRORS as exc:
            raise translate(exc, self._what(key)) from exc

    def delete_many(self, keys: list[str]) -> None:
        """DeleteObjects, 1,000 keys a request (S3's limit); one DeleteObject each on a server
        that does not implement it."""
        failed: list[str] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            if len(batch) == 1 or self._single_deletes:
                for key in batch:
                    self.delete(key)
                continue
            try:
                r = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in UNSUPPORTED:
                    raise translate(exc, self._what(batch[0])) from exc
                log.info("%s: no DeleteObjects here; deleting one key at a time", self.url)
                self._single_deletes = True
                for key in batch:
                    self.delete(key)
                continue
            except S3_ERRORS as exc:
                raise translate(exc, self._what(batch[0])) from exc
            failed += [
                f"{e.get('Key')} ({e.get('Code')}: {e.get('Message')})"
                for e in r.get("Errors", [])
                if e.get("Code") not in ("NoSuchKey", "404")
            ]
        if failed:
            raise StorageError(
                f"{self.url}: {len(failed)} of {len(keys)} objects could not be deleted, e.g. "
                f"{failed[0]}; check the credentials' s3:DeleteObject permission and run the "
                "command again"
            )

    def abort_stale_uploads(self, prefix: str, before: datetime) -> list[str]:
        """Abort multipart uploads under ``prefix`` started before ``before``; their keys.

        A process killed mid-upload leaves its parts behind (billed, invisible). Uploads started
        later may belong to a live writer and are left alone.
        """
        aborted: list[str] = []
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < before:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted.append(upload["Key"])
        except botocore.exceptions.ClientError as exc:
            # rclone serve s3 answers NoSuchUpload to this listing in a bucket that never had
            # a multipart upload: there is nothing to abort.
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise translate(exc, self._what(prefix)) from exc
        except S3_ERRORS as exc:
            raise translate(exc, self._what(prefix)) from exc
        return aborted


def list_buckets(options: S3Options) -> list[str]:
    """Names of the buckets the credentials can see."""
    client = make_client(options)
    try:
        return [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    except S3_ERRORS as exc:
        raise translate(exc, "the bucket list") from exc


class _Reader:
    """A file wrapper that reports bytes read, and can rewind when botocore retries."""

    def __init__(self, f: BinaryIO, progress: Progress | None) -> None:
        self._f = f
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._progress and data:
            self._progress(len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


class _Slice(_Reader):
    """One part of a file for upload_part: reads stop at the part's end."""

    def __init__(
        self, f: BinaryIO, length: int, progress: Progress | None, lock: threading.Lock
    ) -> None:
        super().__init__(f, None)
        self._start = f.tell()
        self._end = self._start + length
        self._report = progress
        self._lock = lock

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._f.tell()
        data = self._f.read(left if n < 0 else min(n, left)) if left > 0 else b""
        if self._report and data:
            with self._lock:
                self._report(len(data))
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            return self._f.seek(self._start + offset) - self._start
        if whence == os.SEEK_END:
            return self._f.seek(self._end + offset) - self._start
        return self._f.seek(offset, whence) - self._start

    def tell(self) -> int:
        return self._f.tell() - self._start
