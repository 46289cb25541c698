"""S3Storage against each S3 server of the ``server_bucket`` fixture: moto, SeaweedFS, rclone.

Plain writes, reads, listings and deletes; what the servers do differently (tests/servers.py)
is checked where it shows through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from dgagent.storage import ObjectInfo, Prefix, S3Storage
from tests.conftest import ServerBucket

METADATA = {
    "dg-file-sha256": hashlib.sha256(b"payload").hexdigest(),
    "dg-original-name": "releases/app v1.2.3+build.7 (final).zip",
    "dg-note": "a=b; c, d/e?f&g=h",
    "dg-size": "123456789",
}


def lowered(metadata: object) -> dict[str, str]:
    assert isinstance(metadata, dict)
    return {str(k).lower(): str(v) for k, v in metadata.items()}


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_head_get_round_trip(server_bucket: ServerBucket, tmp_path: Path) -> None:
    storage = S3Storage(server_bucket.bucket, server_bucket.options)
    data = os.urandom(100_000)
    assert storage.head("dir/a.bin") is None
    storage.upload("dir/a.bin", write(tmp_path / "a", data), METADATA)

    info = storage.head("dir/a.bin")
    assert info is not None
    assert info.key == "dir/a.bin" and info.size == len(data)
    assert lowered(info.metadata) == METADATA
    assert info.etag.strip('"') == hashlib.md5(data).hexdigest()
    assert abs(info.last_modified - datetime.now(UTC)) < timedelta(minutes=5)

    sink = io.BytesIO()
    got = storage.download("dir/a.bin", sink)
    assert sink.getvalue() == data
    assert got.size == len(data) and got.etag == info.etag
    assert lowered(got.metadata) == METADATA


def test_metadata_key_case_by_server(server_bucket: ServerBucket) -> None:
    """rclone capitalises metadata keys on the way back; moto and SeaweedFS keep them lowercase."""
    s3 = boto3.client("s3", endpoint_url=server_bucket.endpoint)
    s3.put_object(Bucket=server_bucket.bucket, Key="m", Body=b"m", Metadata=METADATA)
    keys = set(s3.head_object(Bucket=server_bucket.bucket, Key="m")["Metadata"])
    if server_bucket.name == "rclone":
        assert keys == {"Dg-File-Sha256", "Dg-Original-Name", "Dg-Note", "Dg-Size"}
    else:
        assert keys == set(METADATA)


def test_multipart_upload_round_trip(server_bucket: ServerBucket, tmp_path: Path) -> None:
    options = dataclasses.replace(
        server_bucket.options, multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024
    )
    storage = S3Storage(server_bucket.bucket, options)
    data = os.urandom(5 * 1024 * 1024 + 4321)
    storage.upload("big.bin", write(tmp_path / "big", data), METADATA)

    info = storage.head("big.bin")
    assert info is not None and info.size == len(data)
    assert lowered(info.metadata) == METADATA
    sink = io.BytesIO()
    storage.download("big.bin", sink)
    assert sink.getvalue() == data
    listed = list(storage.list_objects("big"))
    assert [o.key for o in listed] == ["big.bin"]
    assert isinstance(listed[0], ObjectInfo) and listed[0].size == len(data)
    # rclone lists the ETag without its quotes; the value is the same as HEAD's.
    assert listed[0].etag.strip('"') == info.etag.strip('"')


def test_listing_with_and_without_delimiter(server_bucket: ServerBucket, tmp_path: Path) -> None:
    storage = S3Storage(server_bucket.bucket, server_bucket.options)
    sizes = {"p/a.zip": 1, "p/b.zip": 22, "p/sub/c.zip": 333, "p2/d.zip": 4444}
    for key, size in sizes.items():
        storage.upload(key, write(tmp_path / "f", os.urandom(size)), {})

    flat = list(storage.list_objects("p/"))
    assert [o.key for o in flat] == ["p/a.zip", "p/b.zip", "p/sub/c.zip"]
    for item in flat:
        assert isinstance(item, ObjectInfo)
        assert item.size == sizes[item.key]
        head = storage.head(item.key)
        assert head is not None and item.etag.strip('"') == head.etag.strip('"')
        assert abs(item.last_modified - head.last_modified) < timedelta(seconds=2)

    shallow = list(storage.list_objects("p/", delimiter="/"))
    assert [o.key for o in shallow if isinstance(o, ObjectInfo)] == ["p/a.zip", "p/b.zip"]
    assert [o.key for o in shallow if isinstance(o, Prefix)] == ["p/sub/"]
    assert [o.key for o in storage.list_objects("p2/")] == ["p2/d.zip"]
    assert list(storage.list_objects("none/")) == []


def test_overwrite_then_delete(server_bucket: ServerBucket, tmp_path: Path) -> None:
    storage = S3Storage(server_bucket.bucket, server_bucket.options)
    storage.upload("x/y.bin", write(tmp_path / "one", b"first"), {"dg-v": "1"})
    storage.upload("x/y.bin", write(tmp_path / "two", b"second!"), {"dg-v": "2"})
    info = storage.head("x/y.bin")
    assert info is not None and info.size == 7 and lowered(info.metadata) == {"dg-v": "2"}
    sink = io.BytesIO()
    storage.download("x/y.bin", sink)
    assert sink.getvalue() == b"second!"

    storage.delete("x/y.bin")
    assert storage.head("x/y.bin") is None
    assert list(storage.list_objects("x/")) == []
    storage.delete("x/y.bin")  # deleting a missing key is not an error
    assert storage.head("x/y.bin") is None
