"""The installed ``dg-agent`` command, run as a real process: it works and its exit codes propagate.

The subprocess inherits AWS_ENDPOINT_URL, the fake credentials and DG_CACHE_DIR from the fixtures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dgagent.version import __version__
from tests.cli.conftest import S3Remote, release, sha256_of

DG_AGENT = Path(sys.executable).parent / "dg-agent"


def dg_agent(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DG_AGENT), *(str(a) for a in argv)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_clean_line(done: subprocess.CompletedProcess[str], prefix: str) -> None:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(prefix), done.stderr


def test_version() -> None:
    done = dg_agent("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"dg-agent {__version__}"


def test_round_trip_and_listing_through_the_real_command(
    s3_remote: S3Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    v1, v2 = release(src, 1), release(src, 2)
    for path in (v1, v2):
        done = dg_agent("cp", path, s3_remote.url("rel/"))
        assert done.returncode == 0, done.stderr
        assert f"upload: {path} to {s3_remote.url('rel/' + path.name)}" in done.stdout

    listing = dg_agent("ls", "--json", s3_remote.url("rel/"))
    assert listing.returncode == 0, listing.stderr
    kinds = {rec["key"]: rec["kind"] for rec in json.loads(listing.stdout)["files"]}
    assert kinds == {"rel/app-1.1.zip": "delta", "rel/app-1.2.zip": "delta"}

    out = tmp_path / "out"
    done = dg_agent("cp", "-r", s3_remote.url("rel/"), out)
    assert done.returncode == 0, done.stderr
    assert sha256_of(out / "app-1.1.zip") == sha256_of(v1)
    assert sha256_of(out / "app-1.2.zip") == sha256_of(v2)


def test_sync_twice_through_the_real_command(s3_remote: S3Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    release(src, 1)
    release(src, 2)
    first = dg_agent("sync", src, s3_remote.url("m/"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("upload:") == 2
    second = dg_agent("sync", src, s3_remote.url("m/"))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "up to date: nothing to transfer"


def test_exit_codes_propagate(s3_remote: S3Remote, tmp_path: Path) -> None:
    usage = dg_agent("ls", "s3:///x")
    assert usage.returncode == 2
    assert_one_clean_line(usage, "dg-agent: ")

    missing = dg_agent("verify", s3_remote.url("nope.zip"))
    assert missing.returncode == 1
    assert_one_clean_line(missing, "error: ")

    reserved = tmp_path / "reference.bin"
    reserved.write_bytes(b"x")
    refused = dg_agent("cp", reserved, s3_remote.url("p/"))
    assert refused.returncode == 1
    assert_one_clean_line(refused, "error: ")
    assert s3_remote.physical() == set()

    bad_flag = dg_agent("cp", "--max-ratio", "abc", reserved, s3_remote.url("p/"))
    assert bad_flag.returncode == 2  # argparse's own usage error
    assert "Traceback" not in bad_flag.stderr
    assert "--max-ratio" in bad_flag.stderr
