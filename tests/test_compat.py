"""``dgagent.compat.create_client`` against DeltaGlider 6.2.0's own ``create_client``: one program
run with each against the same moto S3 server, the same answers, and each reading what the
other wrote."""

from __future__ import annotations

import dataclasses
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import deltaglider
import pytest

from dgagent import compat
from tests.artifacts import source_tree, write_zip

Factory = Callable[[], Any]


def releases(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_zip(folder / f"app-1.{v}.zip", source_tree(v)) for v in (1, 2, 3)]


def program(make: Factory, work: Path) -> dict[str, Any]:
    """What a DeltaGlider user's script does, and what it sees."""
    client = make()
    bucket = f"c-{uuid.uuid4().hex[:12]}"
    seen: dict[str, Any] = {"created": client.create_bucket(Bucket=bucket)["ResponseMetadata"]}
    seen["listed_bucket"] = bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    one, two, three = releases(work / "dist")

    put = client.put_object(Bucket=bucket, Key="rel/app-1.1.zip", Body=one.read_bytes())
    seen["put_1"] = {k: put["DeltaGliderInfo"][k] for k in ("IsDelta", "Operation", "StoredAs")}
    put = client.put_object(Bucket=bucket, Key="rel/app-1.2.zip", Body=two)  # a path
    seen["put_2"] = {k: put["DeltaGliderInfo"][k] for k in ("IsDelta", "Operation", "StoredAs")}
    seen["put_2_small"] = put["DeltaGliderInfo"]["StoredSizeMB"] < 0.5 * two.stat().st_size / 2**20
    summary = client.upload(three, f"s3://{bucket}/rel/")
    seen["upload"] = (summary.operation, summary.key, summary.original_size, summary.is_delta)
    client.put_object(Bucket=bucket, Key="rel/notes.txt", Body="release notes\n")  # text

    got = client.get_object(Bucket=bucket, Key="rel/app-1.2.zip")
    seen["get"] = (got["Body"].read() == two.read_bytes(), got["ContentLength"], got["ETag"])
    head = client.head_object(Bucket=bucket, Key="rel/notes.txt")
    seen["head"] = (head["ContentLength"], head["Metadata"]["dg-file-size"])

    listing = client.list_objects(Bucket=bucket, Prefix="rel/")
    seen["keys"] = [o["Key"] for o in listing["Contents"]]
    seen["is_delta"] = [o["Metadata"]["deltaglider-is-delta"] for o in listing["Contents"]]
    folders = client.list_objects(Bucket=bucket, Prefix="", Delimiter="/")
    seen["folders"] = (folders.get("CommonPrefixes"), folders["KeyCount"])
    page = client.list_objects(Bucket=bucket, Prefix="rel/", MaxKeys=2)
    seen["page"] = ([o["Key"] for o in page["Contents"]], page["IsTruncated"])

    client.download(f"s3://{bucket}/rel/app-1.3.zip", work / "restored.zip")
    seen["download"] = (work / "restored.zip").read_bytes() == three.read_bytes()
    seen["verify"] = client.verify(f"s3://{bucket}/rel/app-1.1.zip.delta")

    stats = client.get_bucket_stats(bucket, mode="detailed")
    seen["stats"] = (stats.object_count, stats.total_size, stats.delta_objects)
    seen["stats_saved"] = stats.compressed_size < stats.total_size / 2

    seen["delete"] = client.delete_object(Bucket=bucket, Key="rel/notes.txt")["DeltaGliderInfo"]
    gone = client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "rel/app-1.1.zip"}, {"Key": "rel/nope.zip"}]}
    )
    seen["deleted"] = [(d["Key"], d.get("StoredKey"), d["Type"]) for d in gone["Deleted"]]
    seen["delete_errors"] = [(e["Key"], e["Code"]) for e in gone.get("Errors", [])]
    left = client.list_objects(Bucket=bucket, Prefix="rel/")
    seen["left"] = [o["Key"] for o in left["Contents"]]
    return seen


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body


def more_program(make: Factory, work: Path) -> dict[str, Any]:
    """DeltaGlider's own extras: batch download, object info, estimates, presigned URLs (with
    rehydration), ACLs, recursive deletes and deleting the bucket."""
    client = make()
    bucket = f"c-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    one, two, three = releases(work / "dist")
    notes = work / "notes.txt"
    notes.write_text("release notes, version one\n")
    seen: dict[str, Any] = {}

    # (upload_batch is tested on ours alone: DeltaGlider's stores each file in a folder of its own)
    client.upload(one, f"s3://{bucket}/rel/")
    client.upload(two, f"s3://{bucket}/rel/")
    chunks: list[tuple[int, int, int, int]] = []
    chunked = client.upload_chunked(
        three, f"s3://{bucket}/rel/", chunk_size=three.stat().st_size // 2 + 1,
        progress_callback=lambda *a: chunks.append(a),
    )  # fmt: skip
    seen["chunked"] = (chunked.operation, chunked.key, chunked.is_delta, chunks)
    client.upload(notes, f"s3://{bucket}/docs/")
    urls = [f"s3://{bucket}/rel/app-1.2.zip.delta", f"s3://{bucket}/docs/notes.txt"]
    got = client.download_batch(urls, work / "out")
    seen["download_batch"] = [p.name for p in got]
    seen["download_bytes"] = [p.read_bytes() for p in got] == [two.read_bytes(), notes.read_bytes()]

    info = client.get_object_info(f"s3://{bucket}/rel/app-1.2.zip.delta")
    seen["info_delta"] = (info.key, info.is_delta, info.original_size, info.reference_key)
    info = client.get_object_info(f"s3://{bucket}/docs/notes.txt")
    seen["info_direct"] = (info.key, info.is_delta, info.original_size, info.size)
    similar = client.find_similar_files(bucket, "rel/", "app-1.4.zip", limit=2)
    seen["similar"] = [(f["Key"], f["Similarity"]) for f in similar]
    seen["estimates"] = [
        dataclasses.astuple(client.estimate_compression(f, bucket, "rel/")) for f in (three, notes)
    ]
    (work / "shot.png").write_bytes(b"\x89PNG" + bytes(100))
    seen["estimate_png"] = dataclasses.astuple(
        client.estimate_compression(work / "shot.png", bucket)
    )

    seen["put_acl"] = client.put_bucket_acl(Bucket=bucket, ACL="public-read")["ResponseMetadata"]
    grants = client.get_bucket_acl(Bucket=bucket)["Grants"]
    seen["acl"] = sorted(g["Permission"] for g in grants)
    post = client.generate_presigned_post(Bucket=bucket, Key="up/x.bin")
    seen["post"] = (sorted(post), post["fields"]["key"])
    plain = {"Bucket": bucket, "Key": "docs/notes.txt"}
    seen["presigned"] = fetch(client.generate_presigned_url("get_object", Params=plain))
    url = client.generate_presigned_url_with_rehydration(Bucket=bucket, Key="rel/app-1.3.zip")
    seen["rehydrated"] = fetch(url) == three.read_bytes()
    temp = client.rehydrate_for_download(Bucket=bucket, Key="rel/app-1.2.zip", ExpiresIn=0)
    seen["temp"] = temp is not None and temp.endswith("_app-1.2.zip")
    # (purge_temp_files is tested on ours alone: DeltaGlider 6.2.0's compares a naive time with
    # an aware one, fails on every temp file and deletes none)
    client.clear_cache()
    seen["after_clear"] = client.verify(f"s3://{bucket}/rel/app-1.3.zip.delta")

    gone = client.delete_objects_recursive(Bucket=bucket, Prefix="rel")
    seen["recursive"] = (gone["DeletedCount"], gone["FailedCount"], gone["DeltaGliderInfo"])
    seen["recursive_errors"] = (gone.get("Errors"), gone.get("Warnings"))
    gone = client.delete_objects_recursive(Bucket=bucket, Prefix="docs/notes.txt")
    seen["single"] = (gone["DeletedCount"], gone["DeltaGliderInfo"])
    seen["left"] = client.list_objects(Bucket=bucket, Prefix="docs/")["Contents"]
    client.delete_objects_recursive(Bucket=bucket, Prefix="")  # the temp files too
    seen["delete_bucket"] = client.delete_bucket(Bucket=bucket)
    seen["bucket_gone"] = bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]
    return seen


def test_the_same_extras_see_the_same(theirs: Factory, ours: Factory, tmp_path: Path) -> None:
    upstream = more_program(theirs, tmp_path / "theirs")
    mine = more_program(ours, tmp_path / "ours")
    assert mine == upstream


@pytest.fixture
def theirs(s3_endpoint: str) -> Factory:
    return lambda: deltaglider.create_client(endpoint_url=s3_endpoint, log_level="WARNING")


@pytest.fixture
def ours(s3_endpoint: str) -> Factory:
    return lambda: compat.create_client(endpoint_url=s3_endpoint, log_level="WARNING")


def test_the_same_program_sees_the_same(theirs: Factory, ours: Factory, tmp_path: Path) -> None:
    upstream = program(theirs, tmp_path / "theirs")
    mine = program(ours, tmp_path / "ours")
    assert mine == upstream


def write_then_read(writer: Any, reader: Any, bucket: str, work: Path) -> None:
    files = releases(work)
    for f in files:
        writer.put_object(Bucket=bucket, Key=f"x/{f.name}", Body=f.read_bytes())
    listed = reader.list_objects(Bucket=bucket, Prefix="x/")
    assert [o["Key"] for o in listed["Contents"]] == [f"x/{f.name}" for f in files]
    for f in files:
        got = reader.get_object(Bucket=bucket, Key=f"x/{f.name}")
        assert got["Body"].read() == f.read_bytes()
        assert got["ContentLength"] == f.stat().st_size
        assert reader.verify(f"s3://{bucket}/x/{f.name}.delta")


def test_each_reads_what_the_other_wrote(
    theirs: Factory, ours: Factory, bucket: str, tmp_path: Path
) -> None:
    upstream, mine = theirs(), ours()
    write_then_read(upstream, mine, bucket, tmp_path / "a")
    other = f"c-{uuid.uuid4().hex[:12]}"
    mine.create_bucket(Bucket=other)
    write_then_read(mine, upstream, other, tmp_path / "b")
    # Deltas written by one and stored beside the other's: one DeltaSpace, read by both.
    extra = write_zip(tmp_path / "app-1.4.zip", source_tree(4))
    put = upstream.put_object(Bucket=other, Key="x/app-1.4.zip", Body=extra)
    assert put["DeltaGliderInfo"]["Operation"] == "create_delta"
    assert mine.get_object(Bucket=other, Key="x/app-1.4.zip")["Body"].read() == extra.read_bytes()


def test_where_ours_says_more(ours: Factory, s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    """Original sizes in listings and heads, file objects as Body, and full pagination."""
    client = ours()
    files = releases(tmp_path)
    for f in files:
        with f.open("rb") as body:
            client.put_object(Bucket=bucket, Key=f"r/{f.name}", Body=body, Metadata={"k": "v"})
    contents = client.list_objects_v2(Bucket=bucket, Prefix="r/")["Contents"]
    assert [o["Size"] for o in contents] == [f.stat().st_size for f in files]
    head = client.head_object(Bucket=bucket, Key="r/app-1.2.zip")  # stored as a delta
    assert head["ContentLength"] == files[1].stat().st_size
    assert head["Metadata"]["dg-file-sha256"]
    keys: list[str] = []
    token = None
    while True:
        page = client.list_objects(Bucket=bucket, Prefix="r/", MaxKeys=1, ContinuationToken=token)
        keys += [o["Key"] for o in page["Contents"]]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert keys == [f"r/{f.name}" for f in files]
    with pytest.raises(FileNotFoundError):
        client.head_object(Bucket=bucket, Key="r/missing.zip")
    # Stored bytes: every object the bucket holds, references included, each once.
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
    stored = sum(o["Size"] for o in listed["Contents"])
    assert client.get_bucket_stats(bucket).compressed_size == stored


def test_ours_alone(ours: Factory, s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    """Batch uploads into one DeltaSpace, temp files hidden and purged, the reference cache
    emptied, nothing left after a recursive delete, and the empty bucket deleted."""
    client = ours()
    raw = boto3.client("s3", endpoint_url=s3_endpoint)
    files = releases(tmp_path)
    told: list[tuple[str, int, int]] = []
    done = client.upload_batch(
        files, f"s3://{bucket}/rel/", progress_callback=lambda *a: told.append(a)
    )
    assert [(s.key, s.is_delta) for s in done] == [
        ("rel/reference.bin", False), ("rel/app-1.2.zip.delta", True),
        ("rel/app-1.3.zip.delta", True),
    ]  # fmt: skip
    assert told == [(f.name, n, 3) for n, f in enumerate(files, start=1)]

    temp = client.rehydrate_for_download(Bucket=bucket, Key="rel/app-1.2.zip", ExpiresIn=0)
    kept = client.rehydrate_for_download(Bucket=bucket, Key="rel/app-1.3.zip.delta")
    assert temp is not None and kept is not None and temp.startswith(".dg/tmp/")
    assert raw.get_object(Bucket=bucket, Key=temp)["Body"].read() == files[1].read_bytes()
    listed = [o["Key"] for o in client.list_objects(Bucket=bucket, Prefix="")["Contents"]]
    assert not [k for k in listed if k.startswith(".dg")]
    purged = client.purge_temp_files(Bucket=bucket)
    assert (purged["deleted_count"], purged["errors"]) == (1, [])
    assert purged["total_size_freed"] == files[1].stat().st_size
    temps = raw.list_objects_v2(Bucket=bucket, Prefix=".dg/tmp/").get("Contents", [])
    assert [o["Key"] for o in temps] == [kept]  # not expired yet

    assert client.client.cache.stats().entries
    client.clear_cache()
    assert client.client.cache.stats().entries == 0
    assert client.get_object_info(f"s3://{bucket}/rel/app-1.3.zip").reference_key

    gone = client.delete_objects_recursive(Bucket=bucket, Prefix="")
    assert gone["FailedCount"] == 0
    assert gone["DeltaGliderInfo"]["OtherDeleted"] == 1  # the temp file not purged
    assert raw.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    client.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in raw.list_buckets()["Buckets"]]
    assert client.delete_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
