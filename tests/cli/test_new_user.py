"""Mistakes a new user makes on the command line: each gets one sentence naming the problem and
the fix, a non-zero exit, no traceback, and nothing half-written."""

from __future__ import annotations

import random
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from tests.cli.conftest import Cli, assert_clean_failure, release

DG_AGENT = Path(sys.executable).parent / "dg-agent"


def test_get_into_a_missing_folder(cli: Cli, tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store/rel/"
    cli.ok("cp", release(tmp_path / "src", 1), store)
    missing = tmp_path / "nope" / "x.zip"
    result = cli("get", f"{store}app-1.1.zip", "-o", missing)
    assert_clean_failure(result, "the folder", "does not exist", "mkdir -p")
    assert not (tmp_path / "nope").exists()
    # cp makes the folders of its destination, as the AWS CLI does.
    cli.ok("cp", f"{store}app-1.1.zip", missing)
    assert missing.read_bytes() == (tmp_path / "src" / "app-1.1.zip").read_bytes()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_an_endpoint_without_a_scheme(cli: Cli, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["ls", "s3://bucket/"]
    if how == "flag":
        argv += ["--endpoint-url", "127.0.0.1:9000"]
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:9000")
    assert_clean_failure(cli(*argv), "is not a URL", "http://127.0.0.1:9000")


def test_commands_on_a_path_that_holds_nothing(cli: Cli, tmp_path: Path) -> None:
    """ls, stats, verify -r and sync from a store path that holds nothing exit 1 and say so
    (sync to a local folder creates nothing, and its --delete deletes nothing)."""
    store = f"file://{tmp_path}/store/"
    cli.ok("cp", release(tmp_path / "src", 1), f"{store}rel/")
    typo = f"{store}rle/"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "keep.txt").write_text("mine")
    for argv in (
        ("ls", typo),
        ("ls", "-r", typo),
        ("stats", typo),
        ("verify", "-r", typo),
        ("sync", typo, tmp_path / "new"),
        ("sync", "--delete", typo, mirror),
    ):
        assert_clean_failure(cli(*argv), f"nothing is stored under {typo}", "dg-agent ls")
    assert not (tmp_path / "new").exists()
    assert (mirror / "keep.txt").read_text() == "mine"
    assert "app-1.1.zip" in cli.ok("ls", f"{store}rel/").out


def test_nothing_stored_in_a_bucket(cli: Cli, bucket: str) -> None:
    assert_clean_failure(cli("ls", f"s3://{bucket}/releases/"), "nothing is stored under")
    assert cli.ok("ls", f"s3://{bucket}/").out == ""  # an empty bucket lists as empty, as aws


def test_dry_run_is_accepted_as_well_as_dryrun(cli: Cli, tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store/rel/"
    src = tmp_path / "src"
    release(src, 1)
    for argv in (
        ("cp", "-r", "--dry-run", src, store),
        ("sync", "--dry-run", src, store),
    ):
        assert "(dryrun)" in cli.ok(*argv).out
    assert not (tmp_path / "store").exists()
    cli.ok("sync", src, store)
    assert "(dryrun) delete" in cli.ok("rm", "-r", "--dry-run", store).out
    assert (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("argv", "guess"),
    [
        (["lss", "s3://b/"], "'ls'"),
        (["sycn", "a", "b"], "'sync'"),
        (["rm", "-r", "--dry-runn", "s3://b/x/"], "'--dry-run'"),
        (["sync", "--reference-policy", "rotat", "a", "s3://b/"], "'rotate'"),
    ],
)
def test_did_you_mean(argv: list[str], guess: str) -> None:
    done = subprocess.run(
        [str(DG_AGENT), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert f"did you mean {guess}?" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_runtime_dir_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run(
        [str(DG_AGENT), "status"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert "Warning" not in done.stderr, done.stderr
    assert "not running" in done.stdout + done.stderr


def test_service_install_dry_run_without_a_service_manager(tmp_path: Path) -> None:
    """No systemd user instance answers in this sandbox: show the unit it would write anyway."""
    done = subprocess.run(
        [str(DG_AGENT), "service", "install", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "would write" in done.stdout
    assert "ExecStart=" in done.stdout or "<key>ProgramArguments</key>" in done.stdout


def test_a_failed_delta_upload_leaves_no_orphan_reference(
    cli: Cli, s3_endpoint: str, bucket: str, proxy: object, tmp_path: Path
) -> None:
    """The first file of a new DeltaSpace writes its reference, then its delta; when the delta's
    upload fails, the reference goes too (it held the bucket's bytes out of every listing)."""
    from tests.faults.proxy import FaultProxy, Rule  # noqa: PLC0415 (the fixture's own type)

    assert isinstance(proxy, FaultProxy)
    proxy.set_rules(Rule(ops=("PUT",), path=f"/{bucket}/rel/app-1.1.zip.delta", status=403))
    result = cli(
        "cp", release(tmp_path / "src", 1), f"s3://{bucket}/rel/", "--endpoint-url", proxy.url
    )
    assert_clean_failure(result)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    left = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert [k for k in left if not k.startswith(".dg/")] == []  # the probe of the server may stay


def test_sync_says_when_a_layout_cannot_delta_and_when_jars_delta_poorly(
    cli: Cli, tmp_path: Path
) -> None:
    maven, jars = tmp_path / "maven", tmp_path / "jars"
    for v in range(5):  # one version per folder, as a Maven repository lays artifacts out
        release(maven / "app" / f"1.{v}", v)
    rng = random.Random(5)
    jars.mkdir()
    for v in range(4):
        with zipfile.ZipFile(jars / f"lib-{v}.jar", "w", zipfile.ZIP_STORED) as jar:
            jar.writestr("blob.bin", rng.randbytes(60_000))
    lonely = cli.ok("sync", maven, f"file://{tmp_path}/store/maven/")
    assert "note: each of the 5 files stored from" in lonely.err
    assert "alone in its folder" in lonely.err and "fix: store successive versions" in lonely.err
    poor = cli.ok("sync", "--json", jars, f"file://{tmp_path}/store/jars/").json()
    (found,) = poor["advice"]
    assert "3 zip-like files" in found["problem"] and "--codec archive" in found["fix"]
    quiet = cli.ok("cp", "-r", "-q", jars, f"file://{tmp_path}/store/again/")
    assert quiet.err == ""  # -q: errors only
    again = cli.ok("cp", "-r", "--codec", "archive", jars, f"file://{tmp_path}/store/archive/")
    assert "zip-like" not in again.err  # the advice is about the default codec only


def test_migrate_from_a_path_that_holds_nothing(cli: Cli, tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store/"
    cli.ok("cp", release(tmp_path / "src", 1), f"{store}rel/")
    result = cli("migrate", "--yes", f"{store}rle/", f"file://{tmp_path}/dest/")
    assert_clean_failure(result, f"nothing is stored under {store}rle/")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(cli("migrate", "--yes", empty, f"file://{tmp_path}/dest/"), "is empty")
    assert not (tmp_path / "dest").exists()
