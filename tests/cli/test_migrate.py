"""``migrate``: plain S3 prefixes, DeltaGlider prefixes and local folders into a store.

Interruption is a real ``kill -9`` of the real command part-way through; the resumed run must copy
exactly what was missing (checked by the objects' ETag and LastModified, which a re-upload would
change) and every file must come back bit-exact.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from tests.artifacts import source_tree, write_zip
from tests.cli.conftest import Cli, Remote, S3Remote, assert_clean_failure, release, sha256_of

BIN = Path(sys.executable).parent
DG_AGENT = BIN / "dg-agent"
DELTAGLIDER = BIN / "deltaglider"


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_of(p) for p in root.rglob("*") if p.is_file()}


def new_bucket(endpoint: str) -> S3Remote:
    name = f"t-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return S3Remote(name, endpoint)


def plain_prefix(remote: S3Remote, prefix: str, tmp_path: Path) -> dict[str, str]:
    """50 plain objects (no DeltaGlider metadata) in three folders; returns rel → SHA-256."""
    files: dict[str, bytes] = {}
    (tmp_path / "gen").mkdir()
    for v in range(1, 21):
        path = write_zip(tmp_path / "gen" / f"app-1.{v}.zip", source_tree(v))
        files[f"app/app-1.{v}.zip"] = path.read_bytes()
    for v in range(1, 16):
        path = write_zip(tmp_path / "gen" / f"lib-1.{v}.zip", source_tree(v, seed=8))
        files[f"lib/lib-1.{v}.zip"] = path.read_bytes()
    for i in range(15):
        files[f"docs/notes-{i}.txt"] = f"notes {i}\n".encode() * (100 + i)
    for rel, data in files.items():
        remote.client.put_object(Bucket=remote.bucket, Key=f"{prefix}{rel}", Body=data)
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def snapshot(remote: S3Remote, prefix: str) -> dict[str, tuple[str, str]]:
    pages = remote.client.get_paginator("list_objects_v2").paginate(
        Bucket=remote.bucket, Prefix=prefix
    )
    return {
        o["Key"]: (o["ETag"], o["LastModified"].isoformat())
        for page in pages
        for o in page.get("Contents", [])
    }


def logical(keys: set[str], prefix: str) -> set[str]:
    return {
        k[len(prefix) :].removesuffix(".delta")
        for k in keys
        if not k.endswith("/reference.bin") and k != "reference.bin"
    }


def test_plain_prefix_killed_part_way_then_resumed(
    cli: Cli, s3_remote: S3Remote, s3_endpoint: str, tmp_path: Path
) -> None:
    expected = plain_prefix(s3_remote, "builds/", tmp_path)
    assert len(expected) == 50
    dst = new_bucket(s3_endpoint)
    argv = ["migrate", "--yes", "--workers", "1", s3_remote.url("builds/"), dst.url("mig/")]

    proc = subprocess.Popen([str(DG_AGENT), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(logical(set(snapshot(dst, "mig/")), "mig/builds/")) < 12:
            assert proc.poll() is None, "migrate finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert proc.poll() is None, "migrate finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = snapshot(dst, "mig/")
    done_before = logical(set(before), "mig/builds/")
    assert 12 <= len(done_before) < 50

    result = cli.ok("migrate", "--yes", "--json", *argv[4:])
    doc = result.json()
    copied = {rec["url"].removeprefix(dst.url("mig/builds/")) for rec in doc["files"]}
    assert doc["errors"] == []
    assert copied == set(expected) - done_before, "the resumed run must copy only what is missing"
    assert doc["unchanged"] == len(done_before)
    after = snapshot(dst, "mig/")
    assert {k: after[k] for k in before} == before, "an object from the first run was rewritten"
    assert any(k.endswith(".delta") for k in after) and "mig/builds/app/reference.bin" in after

    out = tmp_path / "out"
    cli.ok("cp", "-r", dst.url("mig/builds/"), out)
    assert tree_hashes(out) == expected

    third = cli.ok("migrate", "--yes", *argv[4:])
    assert "nothing to migrate" in third.out
    assert snapshot(dst, "mig/") == after


def test_a_deltaglider_prefix_keeps_its_delta_stored_files(
    cli: Cli, s3_remote: S3Remote, s3_endpoint: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    v1, v2 = release(src, 1), release(src, 2)
    notes = src / "NOTES.txt"
    notes.write_text("notes\n" * 100)
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    for path in (v1, v2, notes):
        subprocess.run(
            [str(DELTAGLIDER), "cp", "-q", str(path), s3_remote.url(f"up/rel/{path.name}")],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    stored = s3_remote.physical()
    assert {"up/rel/app-1.1.zip.delta", "up/rel/app-1.2.zip.delta"} <= stored, stored

    dst = new_bucket(s3_endpoint)
    doc = cli.ok("migrate", "--yes", "--json", s3_remote.url("up/"), dst.url("")).json()
    assert doc["errors"] == [] and len(doc["files"]) == 3
    out = tmp_path / "out"
    cli.ok("cp", "-r", dst.url("up/"), out)
    assert tree_hashes(out) == {
        "rel/app-1.1.zip": sha256_of(v1),
        "rel/app-1.2.zip": sha256_of(v2),
        "rel/NOTES.txt": sha256_of(notes),
    }
    again = cli.ok("migrate", "--yes", "--json", s3_remote.url("up/"), dst.url(""))
    assert again.json()["files"] == []


def test_local_folder_resume_filters_and_dryrun(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    folder = tmp_path / "artifacts"
    v1, v2, v3 = (release(folder / "app", v) for v in (1, 2, 3))
    log = folder / "build.log"
    log.write_text("log\n")
    url = remote.url("arch/")

    plan = cli.ok("migrate", "--dryrun", "--exclude", "*.log", folder, url)
    assert "3 to copy, 0 already" in plan.out
    assert remote.physical() == set()

    first = cli.ok("migrate", "--yes", "--exclude", "*.log", folder, url)
    assert remote.logical() == {f"arch/artifacts/app/{p.name}" for p in (v1, v2, v3)}
    table = first.out.splitlines()[-3:]
    assert table[0].split()[:2] == ["copied", "3"]
    assert table[2].split()[:2] == ["total", "3"]

    os.utime(v2, (time.time() + 100, time.time() + 100))  # touched, same bytes: not copied
    second = cli.ok("migrate", "--yes", "--json", "--exclude", "*.log", folder, url).json()
    assert second["files"] == [] and second["unchanged"] == 3

    release(folder / "app", 4, name=v3.name)  # changed content under the same name
    third = cli.ok("migrate", "--yes", "--json", folder, url).json()
    assert sorted(r["url"] for r in third["files"]) == [
        remote.url("arch/artifacts/app/app-1.3.zip"),
        remote.url("arch/artifacts/build.log"),
    ]

    out = tmp_path / "out"
    cli.ok("cp", "-r", remote.url("arch/artifacts/"), out)
    assert tree_hashes(out) == tree_hashes(folder)


def test_without_a_terminal_migrate_needs_yes(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    release(tmp_path / "dist", 1)
    result = cli("migrate", tmp_path / "dist", remote.url("arch/"))
    assert_clean_failure(result, "--yes", "1 files")
    assert len(result.error_lines()) == 1
    assert remote.physical() == set()


@pytest.mark.parametrize(("answer", "copied"), [(b"n\n", False), (b"y\n", True)])
def test_on_a_terminal_migrate_asks_first(
    s3_remote: S3Remote, tmp_path: Path, answer: bytes, copied: bool
) -> None:
    release(tmp_path / "dist", 1)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(DG_AGENT), "migrate", str(tmp_path / "dist"), s3_remote.url("arch/")],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.write(master, answer)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    assert b"Migrate 1 files" in err
    assert (proc.returncode == 0) is copied, err
    assert bool(s3_remote.physical()) is copied
    assert (b"copied" in out) is copied


def test_bad_migrate_arguments(cli: Cli, s3_remote: S3Remote, tmp_path: Path) -> None:
    folder = tmp_path / "dist"
    release(folder, 1)
    assert_clean_failure(cli("migrate", "--yes", folder, tmp_path / "x"), "not a store URL")
    missing = cli("migrate", "--yes", tmp_path / "nope", s3_remote.url())
    assert_clean_failure(missing, "not a folder")
    cli.ok("migrate", "--yes", folder, s3_remote.url("a/"))
    overlap = cli("migrate", "--yes", s3_remote.url("a/"), s3_remote.url(""))
    assert_clean_failure(overlap, "overlaps")


def test_plain_files_with_reserved_names_are_reported_not_lost(
    cli: Cli, s3_remote: S3Remote, s3_endpoint: str
) -> None:
    put = s3_remote.client.put_object
    put(Bucket=s3_remote.bucket, Key="old/x/reference.bin", Body=b"user data")
    put(Bucket=s3_remote.bucket, Key="old/x/blob.delta", Body=b"more user data")
    put(Bucket=s3_remote.bucket, Key="old/x/ok.txt", Body=b"fine")
    dst = new_bucket(s3_endpoint)
    result = cli("migrate", "--yes", s3_remote.url("old/"), dst.url(""))
    assert_clean_failure(result, "old/x/reference.bin", "old/x/blob.delta", "rename it")
    assert len(result.error_lines()) == 2
    assert dst.physical() == {"old/x/ok.txt"}


def test_a_progress_line_on_a_terminal(s3_remote: S3Remote, tmp_path: Path) -> None:
    for v in (1, 2, 3):
        release(tmp_path / "dist", v)
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [str(DG_AGENT), "migrate", "--yes", str(tmp_path / "dist"), s3_remote.url()],
            stderr=slave,
            stdout=subprocess.PIPE,
            timeout=120,
            check=False,
        )
        seen = b""
        while select.select([master], [], [], 0.2)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 0
    assert b"\r\x1b[K[3/3]" in seen, seen
    assert s3_remote.logical() == {f"dist/app-1.{v}.zip" for v in (1, 2, 3)}
