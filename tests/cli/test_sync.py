"""``dg-agent sync``: both directions, the change rule, filters, --dryrun and --delete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.conftest import (
    Cli,
    Remote,
    S3Remote,
    assert_clean_failure,
    release,
    set_mtime,
    sha256_of,
)
from tests.faults.proxy import FaultProxy

OLD = 1_600_000_000.0  # a fixed, clearly-not-now mtime for source files


def make_tree(root: Path) -> dict[str, Path]:
    """rel/ has three versions of a zip and a text file; other/ has two zips; all mtimes OLD."""
    files = {
        "rel/app-1.1.zip": release(root / "rel", 1),
        "rel/app-1.2.zip": release(root / "rel", 2),
        "rel/app-1.3.zip": release(root / "rel", 3),
        "other/lib-1.1.zip": release(root / "other", 1, "lib-1.1.zip", seed=11),
        "other/lib-1.2.zip": release(root / "other", 2, "lib-1.2.zip", seed=11),
    }
    notes = root / "rel" / "notes.txt"
    notes.write_text("notes v1\n")
    files["rel/notes.txt"] = notes
    for n, path in enumerate(files.values()):
        set_mtime(path, OLD + 100 * n)
    return files


def created_at(remote: Remote, rel: str) -> str:
    """The upload time recorded in an object's metadata: it changes only on a new upload."""
    return remote.meta(rel)["dg-created-at"]


def local_files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_of(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_sync_up_twice_transfers_nothing_the_second_time(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    first = cli.ok("sync", "--json", src, remote.url("m/")).json()
    assert first["errors"] == []
    assert sorted(rec["source"] for rec in first["files"]) == sorted(str(p) for p in files.values())
    assert remote.logical() == {f"m/{rel}" for rel in files}
    stamps = {key: created_at(remote, key) for key in remote.physical()}

    again = cli.ok("sync", "--json", src, remote.url("m/")).json()
    assert again == {"errors": [], "files": []}
    assert "up to date" in cli.ok("sync", src, remote.url("m/")).out
    assert {key: created_at(remote, key) for key in remote.physical()} == stamps


def test_sync_up_change_rule(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    cli.ok("sync", src, remote.url("m/"))
    zip_key, txt_key = "m/rel/app-1.2.zip.delta", "m/rel/notes.txt"
    zip_stamp, txt_stamp = created_at(remote, zip_key), created_at(remote, txt_key)

    # Touched but identical (mtime +10 s): the hash says unchanged, nothing is sent.
    for path in files.values():
        st = path.stat()
        set_mtime(path, st.st_mtime + 10)
    assert cli.ok("sync", "--json", src, remote.url("m/")).json()["files"] == []
    assert created_at(remote, zip_key) == zip_stamp
    assert created_at(remote, txt_key) == txt_stamp

    # Same size, different bytes, mtime moved: sent (a zip as a delta, the text direct).
    zip_path, txt_path = files["rel/app-1.2.zip"], files["rel/notes.txt"]
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    txt_path.write_text("notes v2\n")
    for path in (zip_path, txt_path):
        set_mtime(path, OLD + 5000)

    # --size-only ignores that change: the sizes match.
    assert cli.ok("sync", "--json", "--size-only", src, remote.url("m/")).json()["files"] == []
    assert created_at(remote, zip_key) == zip_stamp

    done = cli.ok("sync", "--json", src, remote.url("m/")).json()["files"]
    assert sorted(rec["source"] for rec in done) == sorted([str(zip_path), str(txt_path)])
    assert remote.meta(zip_key)["dg-file-sha256"] == sha256_of(zip_path)
    assert remote.read(txt_key) == b"notes v2\n"

    out = tmp_path / "out"
    cli.ok("sync", remote.url("m/"), out)
    assert local_files(out) == local_files(src)


def test_sync_down_twice_and_keeps_source_mtimes(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    cli.ok("sync", src, remote.url("m/"))

    dst = tmp_path / "dst"
    first = cli.ok("sync", "--json", remote.url("m/"), dst).json()
    assert len(first["files"]) == len(files)
    assert local_files(dst) == local_files(src)
    for rel, path in files.items():
        assert (dst / rel).stat().st_mtime == pytest.approx(path.stat().st_mtime, abs=0.01), rel

    inodes = {rel: (dst / rel).stat().st_ino for rel in files}
    assert cli.ok("sync", "--json", remote.url("m/"), dst).json() == {"errors": [], "files": []}
    assert {rel: (dst / rel).stat().st_ino for rel in files} == inodes

    # The downloaded copy, synced back up, is also seen as unchanged.
    assert cli.ok("sync", "--json", dst, remote.url("m/")).json()["files"] == []

    # A changed object (new size) is downloaded again; --size-only still sees it.
    grown = src / "rel" / "notes.txt"
    grown.write_text("notes v1 and more\n")
    cli.ok("sync", src, remote.url("m/"))
    done = cli.ok("sync", "--json", "--size-only", remote.url("m/"), dst).json()["files"]
    assert [rec["dest"] for rec in done] == [str(dst / "rel" / "notes.txt")]
    assert (dst / "rel" / "notes.txt").read_text() == "notes v1 and more\n"


def test_sync_down_repairs_a_same_size_local_edit_with_an_old_mtime(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    cli.ok("sync", src, remote.url("m/"))
    dst = tmp_path / "dst"
    cli.ok("sync", remote.url("m/"), dst)
    edited = dst / "rel" / "notes.txt"
    edited.write_text("notes vX\n")  # same size, mtime now: differs by far more than 1 s
    cli.ok("sync", remote.url("m/"), dst)
    assert edited.read_text() == "notes v1\n"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--exclude", "*.txt"], {"a.zip", "sub/c.zip", "sub/e.jar"}),
        (["--exclude", "*", "--include", "*.zip"], {"a.zip", "sub/c.zip"}),
        (["--include", "*.zip", "--exclude", "*"], set()),  # the last matching rule wins
        (["--exclude", "sub/*", "--include", "sub/d.txt"], {"a.zip", "b.txt", "sub/d.txt"}),
    ],
)
def test_sync_filters_apply_in_order(
    cli: Cli, remote: Remote, tmp_path: Path, filters: list[str], expected: set[str]
) -> None:
    src = tmp_path / "src"
    release(src, 1, "a.zip")
    (src / "b.txt").write_text("b\n")
    release(src / "sub", 2, "c.zip")
    (src / "sub" / "d.txt").write_text("d\n")
    release(src / "sub", 3, "e.jar")
    cli.ok("sync", *filters, src, remote.url("up/"))
    assert remote.logical() == {f"up/{rel}" for rel in expected}

    cli.ok("sync", src, remote.url("all/"))
    down = tmp_path / "down"
    cli.ok("sync", *filters, remote.url("all/"), down)
    assert set(local_files(down)) == expected


def test_sync_dryrun_changes_nothing(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    result = cli.ok("sync", "--dryrun", src, remote.url("m/"))
    assert result.out.count("(dryrun) upload") == len(files)
    assert remote.physical() == set()

    cli.ok("sync", src, remote.url("m/"))
    before = {key: remote.sha(key) for key in remote.physical()}
    files["rel/app-1.3.zip"].unlink()
    result = cli.ok("sync", "--dryrun", "--delete", src, remote.url("m/"))
    assert "(dryrun) delete" in result.out
    assert "app-1.3.zip" in result.out
    assert {key: remote.sha(key) for key in remote.physical()} == before

    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "extra.txt").write_text("extra\n")
    result = cli.ok("sync", "--dryrun", "--delete", remote.url("m/"), dst)
    assert "(dryrun) download" in result.out
    assert "(dryrun) delete" in result.out
    assert local_files(dst) == {"extra.txt": sha256_of(dst / "extra.txt")}


def test_sync_dryrun_down_does_not_create_the_destination(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    cli.ok("cp", release(tmp_path, 1), remote.url("m/"))
    dst = tmp_path / "not-yet"
    cli.ok("sync", "--dryrun", remote.url("m/"), dst)
    assert not dst.exists()


def test_sync_dryrun_does_not_claim_up_to_date(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    release(src, 1)
    result = cli.ok("sync", "--dryrun", src, remote.url("m/"))
    assert "(dryrun) upload" in result.out
    assert "up to date" not in result.out
    planned = cli.ok("sync", "--dryrun", "--json", src, remote.url("m/")).json()
    assert len(planned["files"]) == 1


def test_sync_delete_up_keeps_needed_references(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    cli.ok("sync", src, remote.url("m/"))
    assert {"m/rel/reference.bin", "m/other/reference.bin"} <= remote.physical()
    ref = remote.sha("m/rel/reference.bin")

    # The file that became the reference goes; the reference stays for the other deltas.
    files["rel/app-1.1.zip"].unlink()
    result = cli.ok("sync", "--delete", src, remote.url("m/"))
    assert "delete:" in result.out
    assert remote.logical() == {f"m/{rel}" for rel in files if rel != "rel/app-1.1.zip"}
    assert remote.sha("m/rel/reference.bin") == ref

    # All of other/ goes (other local files remain): its reference goes with it.
    files["other/lib-1.1.zip"].unlink()
    files["other/lib-1.2.zip"].unlink()
    cli.ok("sync", "--delete", src, remote.url("m/"))
    assert not any(key.startswith("m/other/") for key in remote.physical())
    assert "m/rel/reference.bin" in remote.physical()
    for rel in ("rel/app-1.2.zip", "rel/app-1.3.zip", "rel/notes.txt"):
        cli.ok("verify", remote.url(f"m/{rel}"))

    # An empty source would mean "delete everything": refused, nothing deleted.
    before = remote.physical()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("sync", "--delete", empty, remote.url("m/"))
    assert_clean_failure(result, "nothing was deleted")
    assert remote.physical() == before


def test_sync_delete_at_the_store_root_keeps_the_reference(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    v = [release(src, n) for n in (1, 2, 3)]
    cli.ok("sync", src, remote.url())
    assert "reference.bin" in remote.physical()  # the root DeltaSpace of the store
    v[0].unlink()
    cli.ok("sync", "--delete", src, remote.url())
    assert remote.physical() == {
        "reference.bin",
        "app-1.2.zip.delta",
        "app-1.3.zip.delta",
    }
    out = tmp_path / "out"
    cli.ok("sync", remote.url(), out)
    assert local_files(out) == local_files(src)


def test_sync_delete_down_removes_local_extras(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    cli.ok("sync", src, remote.url("m/"))
    dst = tmp_path / "dst"
    (dst / "rel").mkdir(parents=True)
    (dst / "stray.txt").write_text("stray\n")
    (dst / "rel" / "old-0.9.zip").write_bytes(b"old")
    result = cli.ok("sync", "--delete", remote.url("m/"), dst)
    assert "delete:" in result.out
    assert local_files(dst) == local_files(src)
    assert remote.logical() == {f"m/{rel}" for rel in local_files(src)}


def test_sync_down_into_a_file_fails_cleanly(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    cli.ok("cp", release(tmp_path, 1), remote.url("m/"))
    target = tmp_path / "a-file"
    target.write_text("x")
    assert_clean_failure(cli("sync", remote.url("m/"), target))


def test_sync_needs_one_local_folder_and_one_store(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    assert_clean_failure(cli("sync", tmp_path, tmp_path / "x"), "store URL")
    assert_clean_failure(cli("sync", remote.url("a/"), remote.url("b/")), "store URL")
    missing = tmp_path / "missing"
    assert_clean_failure(cli("sync", missing, remote.url("m/")), str(missing))
    assert remote.physical() == set()
    assert not os.path.exists(missing)


def test_a_first_sync_sends_no_deletes_and_a_changed_file_replaces_its_other_form(
    cli: Cli, s3_remote: S3Remote, s3_endpoint: str, tmp_path: Path
) -> None:
    """Names the destination's listing did not have need no DeleteObject of their other form
    (half the requests of a first sync before); a name that exists gets one only when its
    other form is there."""
    proxy = FaultProxy(upstream_port=int(s3_endpoint.rsplit(":", 1)[1]))
    proxy.start()
    try:
        src = tmp_path / "src"
        files = make_tree(src)
        endpoint = ("--endpoint-url", proxy.url)
        # The bucket's conditional-write probe (once a day) deletes its probe key: not counted.
        cli.ok("cp", *endpoint, files["rel/app-1.1.zip"], s3_remote.url("probe/app.zip"))
        proxy.seen.clear()
        cli.ok("sync", *endpoint, src, s3_remote.url("m/"))
        assert proxy.seen["DELETE"] == 0
        assert s3_remote.logical() == {f"m/{rel}" for rel in files} | {"probe/app.zip"}
        notes = files["rel/notes.txt"]
        notes.write_text("notes v2, longer\n")
        cli.ok("sync", *endpoint, src, s3_remote.url("m/"))
        assert proxy.seen["DELETE"] == 0  # notes.txt.delta does not exist: nothing to delete
        # Now stored whole (one reference per folder: no new one), so its delta goes.
        files["rel/app-1.2.zip"].write_bytes(b"no longer a zip that deltas")
        cli.ok("sync", *endpoint, "--reference-policy", "single", src, s3_remote.url("m/"))
        assert proxy.seen["DELETE"] == 1
    finally:
        proxy.stop()
    back = tmp_path / "back"
    cli.ok("sync", s3_remote.url("m/"), back)
    assert local_files(back) == local_files(src)
