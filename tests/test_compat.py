"""``dgagent.compat.create_client`` against DeltaGlider 6.2.0's own ``create_client``: one program
run with each against the same moto S3 server, the same answers, and each reading what the
other wrote."""

from __future__ import annotations

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
