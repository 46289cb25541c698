"""Bad input: every failure exits non-zero with one sentence per problem and no traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from dgagent.cli.main import main
from tests.cli.conftest import (
    Cli,
    LocalRemote,
    Remote,
    S3Remote,
    assert_clean_failure,
    release,
)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["ls", "s3:///x"], "no bucket name"),
        (["ls", "ftp://x"], "not a store URL"),
        (["rm", "-r", "s3:///x/"], "no bucket name"),
        (["verify", "ftp://host/x.zip"], "not a store URL"),
        (["stats", "s3:///"], "no bucket name"),
        (["ls", "file://relative/path/"], "not absolute"),
        (["cp", "s3:///x/a.zip", "out.zip"], "no bucket name"),
        (["cp", "{src}", "ftp://x/y"], "store URL"),
        (["sync", "{dir}", "ftp://x/"], "store URL"),
        (["cp", "s3://b/a.zip", "file:///tmp/a.zip"], "store to store"),
    ],
)
def test_malformed_urls(cli: Cli, tmp_path: Path, argv: list[str], needle: str) -> None:
    src = tmp_path / "a.txt"
    src.write_text("a\n")
    args = [a.format(src=src, dir=tmp_path) for a in argv]
    result = cli(*args)
    assert_clean_failure(result, needle)
    assert len(result.error_lines()) == 1


@pytest.mark.parametrize("command", ["ls", "cp", "sync", "stats", "rm -r"])
def test_unknown_bucket(cli: Cli, s3_endpoint: str, tmp_path: Path, command: str) -> None:
    src = tmp_path / "dist"
    release(src, 1)
    url = "s3://absent-0123-zz/p/"
    argv: dict[str, list[str | Path]] = {
        "ls": ["ls", url],
        "cp": ["cp", "-r", src, url],
        "sync": ["sync", src, url],
        "stats": ["stats", url],
        "rm -r": ["rm", "-r", url],
    }
    result = cli(*argv[command])
    assert_clean_failure(result, "bucket", "does not exist")
    assert len(result.error_lines()) == 1


@pytest.mark.parametrize("command", ["cp", "verify", "rm"])
def test_unknown_bucket_when_reading_one_file(
    cli: Cli, s3_endpoint: str, tmp_path: Path, command: str
) -> None:
    url = "s3://absent-0123-zz/p/a.zip"
    argv: dict[str, list[str | Path]] = {
        "cp": ["cp", url, tmp_path / "a.zip"],
        "verify": ["verify", url],
        "rm": ["rm", url],
    }
    result = cli(*argv[command])
    assert_clean_failure(result, "bucket", "does not exist")


def test_missing_object(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    cli.ok("cp", release(tmp_path, 1), remote.url("p/"))
    for argv in (
        ("cp", remote.url("p/nope.zip"), tmp_path / "nope.zip"),
        ("verify", remote.url("p/nope.zip")),
        ("rm", remote.url("p/nope.zip")),
    ):
        result = cli(*argv)
        assert_clean_failure(result, "nope.zip", "does not exist")
        assert len(result.error_lines()) == 1
    assert not (tmp_path / "nope.zip").exists()


@pytest.mark.parametrize(
    ("env", "argv", "needle"),
    [
        ({"DG_MAX_RATIO": "abc"}, ["ls", "{url}"], "DG_MAX_RATIO must be a number"),
        ({"DG_MAX_RATIO": "1.5"}, ["cp", "{src}", "{url}"], "DG_MAX_RATIO"),
        ({"DG_XDELTA_LEVEL": "fast"}, ["cp", "{src}", "{url}"], "DG_XDELTA_LEVEL"),
        ({"DG_DELTA_EXTENSIONS": " , "}, ["sync", "{dir}", "{url}"], "DG_DELTA_EXTENSIONS"),
        ({}, ["cp", "--max-ratio", "2", "{src}", "{url}"], "--max-ratio"),
        ({}, ["--log-level", "LOUD", "ls", "{url}"], "log level"),
    ],
)
def test_bad_settings(
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    env: dict[str, str],
    argv: list[str],
    needle: str,
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    remote = LocalRemote(store)
    src = release(tmp_path / "dist", 1)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [a.format(url=remote.url("p/"), src=src, dir=src.parent) for a in argv]
    result = cli(*args)
    assert_clean_failure(result, needle)
    assert len(result.error_lines()) == 1
    assert remote.physical() == set()


def test_a_file_name_that_is_not_utf8_fails_cleanly(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "dist"
    src.mkdir()
    (src / "ok.txt").write_text("ok\n")
    with open(os.fsencode(src) + b"/caf\xe9.zip", "wb") as f:  # Latin-1 bytes, not UTF-8
        f.write(b"x" * 1000)
    result = cli("cp", "-r", src, remote.url("p/"))
    assert_clean_failure(result)
    assert remote.logical() == {"p/ok.txt"}


def test_cp_onto_an_existing_local_store_folder_fails_cleanly(cli: Cli, tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "p").mkdir(parents=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("notes\n")
    result = cli("cp", notes, f"file://{store}/p")  # no trailing '/': "p" is the file name
    assert_clean_failure(result, "p")


def test_json_follows_redirected_stdout(s3_remote: S3Remote) -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        rc = main(["ls", "--json", s3_remote.url()])
    assert rc == 0
    assert json.loads(buffer.getvalue()) == {"files": [], "prefixes": []}
