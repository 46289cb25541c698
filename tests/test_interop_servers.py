"""Interoperability with upstream DeltaGlider 6.2.0 on the real S3 servers, both ways.

tests/test_interop.py does it on moto; here the same real CLI (``deltaglider``, a subprocess)
meets our engine on SeaweedFS and ``rclone serve s3`` too (tests/servers.py), and our
content-addressed references (``<folder>/.dg/refs/<sha256>/reference.bin``, written where
``If-None-Match: *`` is not enforced, or always with ``trust_conditional_writes=False``) are
read by upstream through ``dg-ref-key``.

rclone returns metadata keys capitalised (``Dg-File-Sha256``), which upstream 6.2.0 does not
understand: it cannot read any delta from rclone, and it can upload to rclone only what needs no
existing reference (the first file of a folder, and files it stores whole). Only that much is
covered there, and upstream's failure on the rest is pinned.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import boto3
import pytest

from dgagent.engine.metadata import Kind
from dgagent.engine.store import DeltaStore
from dgagent.settings import EngineSettings
from dgagent.storage import S3Options, S3Storage
from tests.artifacts import source_tree, write_jar
from tests.conftest import ServerBucket
from tests.test_interop import UPSTREAM, Cli, Upstream, all_keys, sha256_of, zips

FOLDER = "builds/app"
MODES = ["conditional", "content-addressed"]


@pytest.fixture
def server_upstream(server_bucket: ServerBucket, tmp_path: Path) -> Upstream:
    """Upstream's CLI on the test's bucket, with a HOME and TMPDIR of its own."""
    home = tmp_path / "home"
    tmp = tmp_path / "tmpdir"
    home.mkdir()
    tmp.mkdir()
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=server_bucket.endpoint,
        HOME=str(home),
        TMPDIR=str(tmp),
        DG_SUPPRESS_DEPRECATION="1",
    )
    return Upstream(Cli(UPSTREAM, env), server_bucket.bucket)


def engine(sb: ServerBucket, cache: Path, *, mode: str = "conditional") -> DeltaStore:
    options = sb.options
    if mode == "content-addressed":
        options = S3Options(
            endpoint_url=sb.endpoint, checksum_when_required=True, trust_conditional_writes=False
        )
    return DeltaStore(S3Storage(sb.bucket, options), settings=EngineSettings(cache_dir=cache))


def metadata(sb: ServerBucket, key: str) -> dict[str, str]:
    """A stored object's user metadata, keys lowercased (rclone capitalises them)."""
    head = boto3.client("s3", endpoint_url=sb.endpoint).head_object(Bucket=sb.bucket, Key=key)
    return {k.lower(): v for k, v in head["Metadata"].items()}


# ------------------------------------------------------------------ we write, upstream reads


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server_bucket", ["moto", "seaweedfs"], indirect=True)
def test_upstream_reads_our_versions_in_both_reference_modes(
    tmp_path: Path, server_bucket: ServerBucket, server_upstream: Upstream, mode: str
) -> None:
    """Several versions of a zip in one folder: upstream follows dg-ref-key to whichever
    reference key we chose, and rebuilds every version bit-exact."""
    sb = server_bucket
    files = zips(tmp_path, "app", (1, 2, 3, 4))
    store = engine(sb, tmp_path / "cache", mode=mode)
    results = [store.put(path, f"{FOLDER}/{path.name}") for path in files]
    assert all(r.kind is Kind.DELTA for r in results), results
    assert [r.reference_size > 0 for r in results] == [True, False, False, False]

    addressed = f"{FOLDER}/.dg/refs/{sha256_of(files[0])}/reference.bin"
    expected_ref = f"{FOLDER}/reference.bin" if mode == "conditional" else addressed
    stored = all_keys(boto3.client("s3", endpoint_url=sb.endpoint), sb.bucket)
    references = {k for k in stored if k.endswith("reference.bin")}
    assert references == {expected_ref}, f"{mode} on {sb.name}: {sorted(stored)}"
    for path in files:
        meta = metadata(sb, f"{FOLDER}/{path.name}.delta")
        assert meta["dg-ref-key"] == expected_ref
        assert posixpath.normpath(posixpath.join(FOLDER, meta["dg-ref-path"])) == expected_ref
        assert meta["dg-ref-sha256"] == sha256_of(files[0])

    out = tmp_path / "upstream-out"
    server_upstream.download_all((f"{FOLDER}/{p.name}", out / p.name) for p in files)
    for path in files:
        assert sha256_of(out / path.name) == sha256_of(path), f"upstream rebuilt {path.name}"
    report = server_upstream.verify(f"{FOLDER}/{files[-1].name}.delta")
    assert report["valid"] is True and report["actual_sha256"] == sha256_of(files[-1]), report


@pytest.mark.parametrize("server_bucket", ["moto", "seaweedfs"], indirect=True)
def test_both_tools_in_turn_with_content_addressed_references(
    tmp_path: Path, server_bucket: ServerBucket, server_upstream: Upstream
) -> None:
    """We write first, to .dg/refs/<sha>/; upstream, which only looks for reference.bin, makes
    its own reference.bin beside it; each tool keeps diffing against its own, and both read
    every version."""
    sb = server_bucket
    store = engine(sb, tmp_path / "cache", mode="content-addressed")
    files = zips(tmp_path, "app", (1, 2, 3, 4))
    for i, path in enumerate(files):
        if i % 2:
            server_upstream.upload(path, FOLDER)
        else:
            assert store.put(path, f"{FOLDER}/{path.name}").kind is Kind.DELTA

    stored = all_keys(boto3.client("s3", endpoint_url=sb.endpoint), sb.bucket)
    assert {k for k in stored if k.endswith("reference.bin")} == {
        f"{FOLDER}/.dg/refs/{sha256_of(files[0])}/reference.bin",
        f"{FOLDER}/reference.bin",
    }
    assert metadata(sb, f"{FOLDER}/reference.bin")["dg-file-sha256"] == sha256_of(files[1])
    assert metadata(sb, f"{FOLDER}/{files[2].name}.delta")["dg-ref-sha256"] == sha256_of(files[0])
    assert metadata(sb, f"{FOLDER}/{files[3].name}.delta")["dg-ref-sha256"] == sha256_of(files[1])

    out = tmp_path / "upstream-out"
    server_upstream.download_all((f"{FOLDER}/{p.name}", out / p.name) for p in files)
    reader = engine(sb, tmp_path / "cold-cache")
    for path in files:
        assert sha256_of(out / path.name) == sha256_of(path), f"upstream: {path.name}"
        dest = tmp_path / "ours-out" / path.name
        dest.parent.mkdir(exist_ok=True)
        assert reader.get(f"{FOLDER}/{path.name}", dest).sha256 == sha256_of(path)
        assert sha256_of(dest) == sha256_of(path), f"ours: {path.name}"


# ------------------------------------------------------------------ upstream writes, we read

RCLONE_REFUSAL = "Reference metadata missing file SHA256"
"""Upstream on rclone, for any file that needs an existing reference: it reads the reference's
capitalised ``Dg-File-Sha256`` as no SHA-256 at all."""


def test_we_read_what_upstream_uploaded(
    tmp_path: Path, server_bucket: ServerBucket, server_upstream: Upstream
) -> None:
    sb = server_bucket
    src = tmp_path / "src"
    src.mkdir()
    (src / "README.txt").write_text("upstream notes\n" * 20)
    app = zips(src, "app", (1, 2, 3))
    svc = write_jar(src / "svc-2.0.jar", source_tree(5, seed=11))
    uploads = [
        *((p, "up") for p in app),
        (src / "README.txt", "up"),
        (svc, "up/svc"),  # the first file of a second folder: a reference of its own
    ]
    needs_reference = {p.name for p in app[1:]}
    kept: list[tuple[Path, str]] = []
    for path, prefix in uploads:  # one by one, in order: the first zip becomes the reference
        done = server_upstream.cli.run(
            "cp", "-q", str(path), server_upstream.url(f"{prefix}/{path.name}"), check=False
        )
        if sb.name == "rclone" and path.name in needs_reference:
            assert done.returncode != 0, f"upstream uploaded {path.name} to rclone after all"
            assert RCLONE_REFUSAL in done.stdout + done.stderr, done.stderr
            continue
        assert done.returncode == 0, f"upstream cp {path.name}: {done.stdout}{done.stderr}"
        kept.append((path, f"{prefix}/{path.name}"))

    # Precondition: upstream really wrote references and deltas (else nothing is tested here).
    stored = all_keys(boto3.client("s3", endpoint_url=sb.endpoint), sb.bucket)
    assert {"up/reference.bin", "up/svc/reference.bin", "up/svc/svc-2.0.jar.delta"} <= stored
    later = {f"up/{p.name}.delta" for p in app[1:]}
    assert later <= stored if sb.name != "rclone" else not later & stored, sorted(stored)
    assert metadata(sb, "up/app-1.1.zip.delta")["dg-tool"] == "deltaglider/6.2.0"

    reader = engine(sb, tmp_path / "cold-cache")
    for path, key in kept:
        dest = tmp_path / "ours-out" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = reader.get(key, dest)
        assert sha256_of(dest) == sha256_of(path) == got.sha256, key
        assert got.kind is (Kind.DIRECT if path.suffix == ".txt" else Kind.DELTA), key
    skipped = len(needs_reference) if sb.name == "rclone" else 0
    assert len(kept) == len(uploads) - skipped
