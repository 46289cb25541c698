"""``put`` and ``get``, DeltaGlider's one-file commands: JSON summary, binary-safe stdout.

Stdout is checked through the real console script in a subprocess, where it is a real pipe (or a
real pseudo-terminal), so bytes are compared exactly as a shell pipeline would see them.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli.conftest import Cli, Remote, S3Remote, assert_clean_failure, release, sha256_of

DG_AGENT = Path(sys.executable).parent / "dg-agent"


def dg_agent(*argv: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(DG_AGENT), *(str(a) for a in argv)], capture_output=True, timeout=120, check=False
    )


def summary(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_put_summaries_then_get_to_stdout_bit_exact(s3_remote: S3Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    v1, v2 = release(src, 1), release(src, 2)
    notes = src / "NOTES.txt"
    notes.write_text("release notes\n" * 50)

    # Upstream's SDK form: the URL is the DeltaSpace, with or without a trailing '/'.
    first = summary(dg_agent("put", v1, s3_remote.url("rel/space")))
    second = summary(dg_agent("put", v2, s3_remote.url("rel/space/")))
    third = summary(dg_agent("put", notes, s3_remote.url("rel/space/")))

    assert first["operation"] == "reference"
    assert first["key"] == "rel/space/app-1.1.zip"
    assert first["original_size"] == v1.stat().st_size
    assert first["cache_hit"] is None
    assert second["operation"] == "delta"
    assert second["stored_key"] == "rel/space/app-1.2.zip.delta"
    assert second["cache_hit"] is True
    assert second["stored_size"] < second["original_size"] / 4
    assert second["ratio"] == round(second["stored_size"] / second["original_size"], 6)
    assert third["operation"] == "direct" and third["key"] == "rel/space/NOTES.txt"
    assert s3_remote.physical() == {
        "rel/space/reference.bin",
        "rel/space/app-1.1.zip.delta",
        "rel/space/app-1.2.zip.delta",
        "rel/space/NOTES.txt",
    }

    for path, name in ((v1, "app-1.1.zip"), (v2, "app-1.2.zip"), (notes, "NOTES.txt")):
        done = dg_agent("get", s3_remote.url(f"rel/space/{name}"))
        assert done.returncode == 0, done.stderr
        assert done.stdout == path.read_bytes(), name
    dashed = dg_agent("get", s3_remote.url("rel/space/app-1.2.zip.delta"), "-o", "-")
    assert dashed.returncode == 0 and dashed.stdout == v2.read_bytes()


def test_get_by_delta_key_and_by_logical_name_to_a_file(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    v1, v2 = release(src, 1), release(src, 2)
    cli.ok("put", v1, remote.url("rel/"))
    cli.ok("put", v2, remote.url("rel/"))

    by_delta = tmp_path / "by-delta.zip"
    cli.ok("get", remote.url("rel/app-1.2.zip.delta"), "-o", by_delta)
    assert sha256_of(by_delta) == sha256_of(v2)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cli.ok("get", remote.url("rel/app-1.1.zip"), "-o", out_dir)
    assert sha256_of(out_dir / "app-1.1.zip") == sha256_of(v1)


def test_get_refuses_to_write_binary_to_a_terminal(s3_remote: S3Remote, tmp_path: Path) -> None:
    v1 = release(tmp_path, 1)
    assert dg_agent("put", v1, s3_remote.url("rel/")).returncode == 0
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [str(DG_AGENT), "get", s3_remote.url("rel/app-1.1.zip")],
            stdout=slave,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
        ready, _, _ = select.select([master], [], [], 0.2)
        written = os.read(master, 65536) if ready else b""
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "terminal" in err and "-o FILE" in err and "redirect" in err
    assert written == b""


def test_a_corrupt_delta_writes_nothing_to_stdout(s3_remote: S3Remote, tmp_path: Path) -> None:
    v1, v2 = release(tmp_path, 1), release(tmp_path, 2)
    for path in (v1, v2):
        assert dg_agent("put", path, s3_remote.url("rel/")).returncode == 0
    s3_remote.corrupt("rel/app-1.2.zip.delta")
    done = dg_agent("get", s3_remote.url("rel/app-1.2.zip"))
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode().startswith("dg-agent: ")
    assert "Traceback" not in done.stderr.decode()


def test_bad_put_and_get_arguments_fail_clearly(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    assert_clean_failure(cli("put", tmp_path / "missing.zip", remote.url("rel/")), "does not exist")
    assert_clean_failure(cli("put", tmp_path, remote.url("rel/")), "is a folder")
    assert_clean_failure(cli("get", remote.url("rel/nothing.zip")), "does not exist")
    assert_clean_failure(cli("get", remote.url("rel/")), "names a folder")
    v1 = release(tmp_path, 1)
    assert_clean_failure(cli("put", v1, "ftp://x/"), "not a store URL")
    assert_clean_failure(cli("put", v1, remote.url("rel/"), "--max-ratio", "3"), "--max-ratio")
    assert remote.physical() == set()
