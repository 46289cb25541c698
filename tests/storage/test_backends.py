"""The storage contract, run against both backends: S3 (moto over HTTP) and the local store."""

from __future__ import annotations

import io
import os
from pathlib import Path

import boto3
import pytest

from dgagent.errors import IntegrityError, PreconditionFailedError, UnsafePathError
from dgagent.storage import LocalStorage, ObjectInfo, Prefix, S3Options, S3Storage, Storage


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_upload_head_download_round_trip(backend: tuple[Storage, str], tmp_path: Path) -> None:
    storage, _ = backend
    assert storage.head("a/b.bin") is None
    storage.upload("a/b.bin", write(tmp_path / "f", b"hello" * 1000), {"dg-note": "x"})
    info = storage.head("a/b.bin")
    assert info is not None and info.size == 5000 and info.metadata == {"dg-note": "x"}
    sink = io.BytesIO()
    got = storage.download("a/b.bin", sink)
    assert sink.getvalue() == b"hello" * 1000 and got.metadata == {"dg-note": "x"}


def test_create_only_refuses_an_existing_key(backend: tuple[Storage, str], tmp_path: Path) -> None:
    storage, _ = backend
    storage.upload("k.bin", write(tmp_path / "one", b"first"), {}, create_only=True)
    with pytest.raises(PreconditionFailedError):
        storage.upload("k.bin", write(tmp_path / "two", b"second"), {}, create_only=True)
    sink = io.BytesIO()
    storage.download("k.bin", sink)
    assert sink.getvalue() == b"first"


def test_listing_with_and_without_delimiter(backend: tuple[Storage, str], tmp_path: Path) -> None:
    storage, _ = backend
    src = write(tmp_path / "f", b"x")
    for key in ("p/a.zip", "p/b.zip", "p/sub/c.zip", "p2/d.zip"):
        storage.upload(key, src, {})
    flat = [o.key for o in storage.list_objects("p/")]
    assert flat == ["p/a.zip", "p/b.zip", "p/sub/c.zip"]
    shallow = list(storage.list_objects("p/", delimiter="/"))
    assert [o.key for o in shallow if isinstance(o, ObjectInfo)] == ["p/a.zip", "p/b.zip"]
    assert [o.key for o in shallow if isinstance(o, Prefix)] == ["p/sub/"]
    assert [o.key for o in storage.list_objects("p/a")] == ["p/a.zip"]


def test_delete_is_idempotent(backend: tuple[Storage, str], tmp_path: Path) -> None:
    storage, _ = backend
    storage.upload("x/y.bin", write(tmp_path / "f", b"1"), {})
    storage.delete("x/y.bin")
    storage.delete("x/y.bin")
    assert storage.head("x/y.bin") is None
    assert list(storage.list_objects("x/")) == []


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a\\b", "a/\x00b", "a//b"])
def test_local_store_refuses_unsafe_keys(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(UnsafePathError):
        storage.upload(key, write(tmp_path / "f", b"1"), {})
    assert not (tmp_path / "escape").exists()


def test_local_store_detects_damaged_objects(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.upload("a.bin", write(tmp_path / "f", b"A" * 100), {})
    (tmp_path / "store" / "a.bin").write_bytes(b"B" * 100)  # same size, other bytes
    with pytest.raises(IntegrityError, match="damaged"):
        storage.download("a.bin", io.BytesIO())
    (tmp_path / "store" / "a.bin").write_bytes(b"short")
    with pytest.raises(IntegrityError, match="interrupted"):
        storage.head("a.bin")


def test_local_store_leaves_no_temp_files_and_no_empty_dirs(tmp_path: Path) -> None:
    root = tmp_path / "store"
    storage = LocalStorage(root)
    storage.upload("deep/er/a.bin", write(tmp_path / "f", b"1"), {})
    assert not [p for p in root.rglob("*") if p.name.startswith(".dg-tmp-")]
    storage.delete("deep/er/a.bin")
    assert list(root.iterdir()) == []


def test_s3_multipart_upload_with_create_only(
    bucket: str, s3_options: S3Options, tmp_path: Path
) -> None:
    """Above the threshold parts go up in parallel; the conditional create still holds."""
    options = S3Options(
        endpoint_url=s3_options.endpoint_url,
        checksum_when_required=True,
        multipart_threshold=5 * 1024 * 1024,
        part_size=5 * 1024 * 1024,
    )
    storage = S3Storage(bucket, options)
    big = write(tmp_path / "big", os.urandom(12 * 1024 * 1024 + 17))
    moved: list[int] = []
    storage.upload("big.bin", big, {"dg-note": "m"}, create_only=True, progress=moved.append)
    assert sum(moved) >= big.stat().st_size
    with pytest.raises(PreconditionFailedError):
        storage.upload("big.bin", big, {}, create_only=True)
    client = boto3.client("s3", endpoint_url=s3_options.endpoint_url)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    sink = tmp_path / "back"
    with sink.open("wb") as f:
        info = storage.download("big.bin", f)
    assert sink.read_bytes() == big.read_bytes() and info.metadata == {"dg-note": "m"}
