"""The end state every fault scenario must reach, checked the same way each time.

Once the agent is idle: every local file reads back bit-exact from the store; no stored file holds
content that never existed locally; no multipart upload is left open; no delta lacks its reference
(or points at a reference with other content); the index passes SQLite's integrity check.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import boto3
import botocore.exceptions

from dgagent.engine import keys
from dgagent.engine.metadata import Kind, parse_metadata
from dgagent.engine.store import DeltaStore, Entry
from dgagent.storage import ObjectInfo, S3Storage


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(
    store: DeltaStore,
    folder: Path,
    prefix: str,
    work: Path,
    *,
    index: Path | None = None,
    history: Mapping[str, set[str]] | None = None,
) -> None:
    """Assert the oracle; ``history`` maps a relative path to every SHA-256 it ever had."""
    local = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    stored = {
        e.key[len(prefix) :]: e
        for e in store.list_files(prefix, recursive=True)
        if isinstance(e, Entry)
    }
    missing = sorted(set(local) - set(stored))
    assert not missing, f"not stored: {missing[:10]}"
    for rel, path in local.items():
        out = work / "oracle" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        got = store.get(prefix + rel, out)
        assert got.sha256 == sha256(path), f"{rel} reads back different bytes"
    for rel, entry in stored.items():
        sha = entry.meta.file_sha256 if entry.meta else None
        known = (history or {}).get(rel, set()) | ({sha256(local[rel])} if rel in local else set())
        assert sha in known, f"{rel} holds content that never existed locally"
    objects = [o for o in store.storage.list_objects(prefix) if isinstance(o, ObjectInfo)]
    names = {o.key for o in objects}
    for obj in objects:
        if not keys.is_delta(obj.key):
            continue
        head = store.storage.head(obj.key)
        assert head is not None
        meta = parse_metadata(obj.key, head.metadata or {})
        if meta.kind is not Kind.DELTA:
            continue
        ref_key = store.reference_keys_of(head, meta)[0]
        assert ref_key in names, f"{obj.key} has no reference {ref_key}"
        ref = store.storage.head(ref_key)
        assert ref is not None
        ref_sha = parse_metadata(ref_key, ref.metadata or {}).file_sha256
        assert ref_sha in (None, meta.ref_sha256), f"{obj.key}: its reference was replaced"
    if isinstance(store.storage, S3Storage):
        client = boto3.client("s3", endpoint_url=store.storage.options.endpoint_url)
        try:
            listed = client.list_multipart_uploads(Bucket=store.storage.bucket, Prefix=prefix)
            open_uploads = listed.get("Uploads", [])
        except botocore.exceptions.ClientError as exc:
            # rclone serve s3 answers NoSuchUpload in a bucket that never had a multipart upload.
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
            open_uploads = []
        assert not open_uploads, "multipart uploads left open"
    if index is not None:
        with sqlite3.connect(index) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
