"""Bucket-scale commands: a repeated ``ls -r``, ``stats`` or unchanged ``sync`` costs a few LIST
requests (what a HEAD told us is kept by ETag), ``rm -r`` deletes in batches, and every command
counts stored bytes one way: every object the bucket holds, references included, each once.

The requests are counted by a proxy between boto3 and moto (tests/faults/proxy.py).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from tests.cli.conftest import Cli, release
from tests.faults.proxy import FaultProxy

SPACES = 3
COPIES = 1000
"""Delta objects copied into each DeltaSpace: 3,000 files in all, as the issue measured."""


def bucket_bytes(client: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


def many_files(cli: Cli, s3_endpoint: str, bucket: str, src: Path) -> Path:
    """Store two real versions in each of SPACES DeltaSpaces through dg-agent, then copy the
    second version's delta (metadata and all) COPIES times with boto3, and the local file as
    hard links beside it: a 3,000-file bucket and the folder it is an unchanged copy of, made
    in seconds instead of 3,000 encodes."""
    for n in range(SPACES):
        release(src / f"s{n}", 1)
        release(src / f"s{n}", 2)
    cli.ok("sync", src, f"s3://{bucket}/rel/")
    client = boto3.client("s3", endpoint_url=s3_endpoint)

    def copy(job: tuple[int, int]) -> None:
        n, k = job
        client.copy_object(
            Bucket=bucket,
            Key=f"rel/s{n}/app-1.2-c{k}.zip.delta",
            CopySource={"Bucket": bucket, "Key": f"rel/s{n}/app-1.2.zip.delta"},
        )
        os.link(src / f"s{n}" / "app-1.2.zip", src / f"s{n}" / f"app-1.2-c{k}.zip")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(copy, [(n, k) for n in range(SPACES) for k in range(COPIES)]))
    return src


def test_repeated_listing_stats_and_sync_cost_a_few_requests(
    cli: Cli, s3_endpoint: str, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    src = many_files(cli, s3_endpoint, bucket, tmp_path / "src")
    via = ("--endpoint-url", proxy.url)
    url = f"s3://{bucket}/rel/"
    first = cli.ok("ls", "-r", "--summarize", "--json", url, *via).json()
    assert first["summary"]["files"] == SPACES * (COPIES + 2)
    assert proxy.seen["HEAD"] >= SPACES * COPIES  # the first look reads every object once

    counts = {}
    for command in (
        ("ls", "-r", "--summarize", "--json", url),
        ("stats", "--json", url),
        ("sync", "--json", src, url),
    ):
        proxy.seen.clear()
        result = cli.ok(*command, *via)
        counts[command[0]] = dict(proxy.seen)
        assert sum(proxy.seen.values()) <= 10, (command, proxy.seen)
        assert proxy.seen["HEAD"] == 0, (command, proxy.seen)
        if command[0] == "ls":
            again = result.json()
            assert again["files"] == first["files"]  # the same answer from the cache
        if command[0] == "sync":
            assert result.json()["files"] == []  # nothing to do: sizes and mtimes match
    # One definition of stored bytes: the bucket's own count, references included.
    real = sum(bucket_bytes(boto3.client("s3", endpoint_url=s3_endpoint), bucket).values())
    summary = first["summary"]
    stats = cli.ok("stats", "--json", url, *via).json()["total"]
    assert summary["stored_bytes"] == stats["stored_bytes"] == real
    assert summary["saved_bytes"] == summary["original_bytes"] - real
    assert stats["original_bytes"] == summary["original_bytes"]

    proxy.seen.clear()
    out = cli.ok("rm", "-r", "-q", url, *via)
    assert out.out == ""
    assert sum(proxy.seen.values()) <= 30, proxy.seen
    assert proxy.seen["POST"] >= 3  # DeleteObjects: 1,000 keys a request
    assert bucket_bytes(boto3.client("s3", endpoint_url=s3_endpoint), bucket, "rel/") == {}


def test_a_changed_object_is_read_again(
    cli: Cli, s3_endpoint: str, bucket: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The cache is keyed by ETag and last-modified: an object rewritten in place (same bytes,
    new metadata) is a miss, and the listing shows what is stored now."""
    src = tmp_path / "src"
    release(src, 1)
    release(src, 2)
    url = f"s3://{bucket}/rel/"
    cli.ok("sync", src, url)
    via = ("--endpoint-url", proxy.url)
    before = {f["key"]: f for f in cli.ok("ls", "--json", url, *via).json()["files"]}
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    key = "rel/app-1.2.zip.delta"
    meta = client.head_object(Bucket=bucket, Key=key)["Metadata"]
    meta["dg-agent-why"] = "rewritten by hand"
    # LIST times have whole seconds: the same bytes rewritten within the second they were
    # written look unchanged (a documented limit of the cache, see metacache.py).
    time.sleep(1.1)
    client.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        Metadata=meta,
        MetadataDirective="REPLACE",
    )
    proxy.seen.clear()
    after = {f["key"]: f for f in cli.ok("ls", "--json", url, *via).json()["files"]}
    assert proxy.seen["HEAD"] == 1, proxy.seen  # only the changed object
    assert after["rel/app-1.2.zip"]["why"] == "rewritten by hand"
    assert before["rel/app-1.2.zip"]["why"] != "rewritten by hand"
    assert after["rel/app-1.1.zip"] == before["rel/app-1.1.zip"]


def test_ls_says_what_each_ratio_is_and_counts_references_once(
    cli: Cli, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for version in (1, 2, 3):
        release(src, version)
    url = f"s3://{bucket}/rel/"
    cli.ok("sync", src, url)
    doc = cli.ok("ls", "--summarize", "--json", url).json()
    kinds = {f["key"]: f["stored_as"] for f in doc["files"]}
    assert kinds == {
        "rel/app-1.1.zip": "new reference",
        "rel/app-1.2.zip": "delta",
        "rel/app-1.3.zip": "delta",
    }
    summary = doc["summary"]
    stored = sum(f["stored_size"] for f in doc["files"])
    reference = cli.ok("stats", "--json", url).json()["total"]["reference_bytes"]
    assert reference > 0
    assert summary["stored_bytes"] == stored + reference
    text = cli.ok("ls", "--summarize", url).out
    first = next(line for line in text.splitlines() if line.endswith("app-1.1.zip"))
    assert first.split()[4] == "ref"
    assert "(references included)" in text


def test_rm_filters_and_json(cli: Cli, s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for version in (1, 2, 3):
        release(src, version)
    (src / "notes.txt").write_text("notes\n")
    url = f"s3://{bucket}/rel/"
    cli.ok("sync", src, url)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    before = bucket_bytes(client, bucket)

    plan = cli.ok("rm", "-r", "--dryrun", "--json", "--exclude", "*.zip", url).json()
    assert plan["dryrun"] is True
    assert plan["deleted"] == [f"s3://{bucket}/rel/notes.txt"]
    assert bucket_bytes(client, bucket) == before  # a dry run deletes nothing

    done = cli.ok("rm", "-r", "--json", "--exclude", "*", "--include", "app-1.[23].zip", url).json()
    assert sorted(done["deleted"]) == [
        f"s3://{bucket}/rel/app-1.2.zip.delta",
        f"s3://{bucket}/rel/app-1.3.zip.delta",
    ]
    left = bucket_bytes(client, bucket)
    assert "rel/reference.bin" in left and "rel/app-1.1.zip.delta" in left  # still needed
    assert "rel/notes.txt" in left
    got = tmp_path / "got.zip"
    cli.ok("cp", f"{url}app-1.1.zip", got)
    assert got.read_bytes() == (src / "app-1.1.zip").read_bytes()

    shutil.rmtree(src)
    cli.ok("rm", "-r", "-q", url)
    assert bucket_bytes(client, bucket, "rel/") == {}
