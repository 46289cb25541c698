"""``dg-agent cp``: AWS CLI path semantics, bit-exact round trips, delta/direct choice, reserved
names. Every test runs against an S3 bucket and a ``file://`` store."""

from __future__ import annotations

from pathlib import Path

from tests.artifacts import source_tree, write_jar, write_npm_tgz
from tests.cli.conftest import Cli, Remote, assert_clean_failure, release, sha256_of


def test_upload_lands_where_the_aws_cli_would_put_it(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    f = release(tmp_path / "src", 1, "f.zip")
    notes = tmp_path / "src" / "notes.txt"
    notes.write_text("release notes\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "top.txt").write_text("top\n")
    (tree / "sub" / "deep.txt").write_text("deep\n")

    cli.ok("cp", f, remote.url("p/"))  # folder destination: the file keeps its name
    cli.ok("cp", notes, remote.url("p/g.txt"))  # file destination: the last part is the name
    cli.ok("cp", notes, remote.url("p/"))
    cli.ok("cp", "-r", tree, remote.url("r/"))
    cli.ok("cp", "-r", tree, remote.url("s"))  # recursive: "s" means the folder s/

    assert remote.logical() == {
        "p/f.zip",
        "p/g.txt",
        "p/notes.txt",
        "r/top.txt",
        "r/sub/deep.txt",
        "s/top.txt",
        "s/sub/deep.txt",
    }
    assert "p/reference.bin" in remote.physical()
    assert "p/f.zip.delta" in remote.physical()
    assert remote.read("p/g.txt") == b"release notes\n"


def test_upload_of_a_zip_under_a_new_file_name(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    f = release(tmp_path, 1)
    cli.ok("cp", f, remote.url("p/g.zip"))
    assert remote.logical() == {"p/g.zip"}
    out = tmp_path / "back.zip"
    cli.ok("cp", remote.url("p/g.zip"), out)
    assert sha256_of(out) == sha256_of(f)


def test_download_lands_where_the_aws_cli_would_put_it(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    v1 = release(src / "nested", 1)
    v2 = release(src / "nested", 2)
    (src / "readme.txt").write_text("readme\n")
    cli.ok("cp", "-r", src, remote.url("p/"))

    dl = tmp_path / "dl"
    cli.ok("cp", remote.url("p/nested/app-1.2.zip"), f"{dl}/new/")  # missing folder, trailing /
    assert sha256_of(dl / "new" / "app-1.2.zip") == sha256_of(v2)

    cli.ok("cp", remote.url("p/nested/app-1.1.zip"), dl / "out.zip")
    assert sha256_of(dl / "out.zip") == sha256_of(v1)
    assert not (dl / "app-1.1.zip").exists()

    existing = dl / "existing"
    existing.mkdir()
    cli.ok("cp", remote.url("p/readme.txt"), existing)  # an existing folder, no trailing /
    assert (existing / "readme.txt").read_text() == "readme\n"

    mirror = tmp_path / "mirror"
    cli.ok("cp", "-r", remote.url("p/"), mirror)
    got = sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file())
    assert got == ["nested/app-1.1.zip", "nested/app-1.2.zip", "readme.txt"]
    assert sha256_of(mirror / "nested" / "app-1.1.zip") == sha256_of(v1)
    assert sha256_of(mirror / "nested" / "app-1.2.zip") == sha256_of(v2)


def test_recursive_copy_filters_apply_in_order(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    release(src, 1)
    release(src / "sub", 2)
    (src / "a.txt").write_text("a\n")
    (src / "sub" / "b.txt").write_text("b\n")
    cli.ok("cp", "-r", "--exclude", "*.txt", src, remote.url("p/"))
    assert remote.logical() == {"p/app-1.1.zip", "p/sub/app-1.2.zip"}
    cli.ok("cp", "-r", src, remote.url("all/"))
    out = tmp_path / "out"
    cli.ok("cp", "-r", "--exclude", "*", "--include", "sub/*", remote.url("all/"), out)
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == ["sub/app-1.2.zip", "sub/b.txt"]


def test_missing_local_file_fails_and_stores_nothing(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    result = cli("cp", tmp_path / "nope.zip", remote.url("p/"))
    assert_clean_failure(result, "nope.zip", "does not exist")
    assert len(result.error_lines()) == 1
    assert remote.physical() == set()


def test_folder_without_r_fails_and_stores_nothing(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    folder = tmp_path / "dist"
    release(folder, 1)
    result = cli("cp", folder, remote.url("p/"))
    assert_clean_failure(result, "-r")
    assert len(result.error_lines()) == 1
    assert remote.physical() == set()


def test_folder_url_without_r_fails_and_writes_nothing(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    cli.ok("cp", release(tmp_path, 1), remote.url("p/"))
    out = tmp_path / "out"
    result = cli("cp", remote.url("p/"), f"{out}/")
    assert_clean_failure(result, "-r")
    assert not out.exists()


def test_round_trip_is_bit_exact(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = [release(src, v) for v in (1, 2, 3)]
    files.append(write_jar(src / "lib-2.0.jar", source_tree(2)))
    files.append(write_npm_tgz(src / "pkg-1.0.0.tgz", source_tree(1)))
    empty = src / "empty.zip"
    empty.write_bytes(b"")
    files.append(empty)
    for name in ("café-1.0.zip", "日本語 メモ.txt"):
        path = src / name
        path.write_bytes(name.encode() * 500)
        files.append(path)

    for path in files:
        cli.ok("cp", path, remote.url("rel/"))
    assert remote.logical() == {f"rel/{p.name}" for p in files}

    out = tmp_path / "out"
    for path in files:
        cli.ok("cp", remote.url(f"rel/{path.name}"), f"{out}/")
        assert (out / path.name).stat().st_size == path.stat().st_size
        assert sha256_of(out / path.name) == sha256_of(path), path.name

    non_ascii = remote.meta("rel/café-1.0.zip.delta")
    assert all(v.isascii() for v in non_ascii.values())


def test_json_reports_kind_sizes_and_ratio(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    v1, v2 = release(tmp_path, 1), release(tmp_path, 2)

    first = cli.ok("cp", "--json", v1, remote.url("rel/")).json()
    assert first["errors"] == []
    [rec1] = first["files"]
    assert rec1["kind"] == "delta"  # zero-diff delta against the new reference
    assert rec1["original_size"] == v1.stat().st_size
    assert rec1["reference_size"] == v1.stat().st_size
    assert rec1["stored_key"] == "rel/app-1.1.zip.delta" or rec1["stored_key"].endswith(
        "/rel/app-1.1.zip.delta"
    )

    [rec2] = cli.ok("cp", "--json", v2, remote.url("rel/")).json()["files"]
    assert rec2["kind"] == "delta"
    assert rec2["original_size"] == v2.stat().st_size
    assert rec2["reference_size"] == 0
    assert 0 < rec2["stored_size"] < rec2["original_size"] / 10
    assert rec2["ratio"] == round(rec2["stored_size"] / rec2["original_size"], 6)
    assert rec2["sha256"] == sha256_of(v2)
    assert remote.objects()["rel/app-1.2.zip.delta"] == rec2["stored_size"]


def test_no_delta_stores_the_file_whole(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    v1 = release(tmp_path, 1)
    [rec] = cli.ok("cp", "--json", "--no-delta", v1, remote.url("rel/")).json()["files"]
    assert rec["kind"] == "direct"
    assert rec["stored_size"] == rec["original_size"] == v1.stat().st_size
    assert remote.physical() == {"rel/app-1.1.zip"}
    assert remote.read("rel/app-1.1.zip") == v1.read_bytes()


def test_max_ratio_zero_stores_later_versions_direct(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    files = [release(tmp_path / "src", v) for v in (1, 2, 3)]
    kinds = []
    for path in files:
        [rec] = cli.ok("cp", "--json", "--max-ratio", "0", path, remote.url("rel/")).json()["files"]
        kinds.append(rec["kind"])
    assert kinds == ["delta", "direct", "direct"]
    assert remote.physical() == {
        "rel/reference.bin",
        "rel/app-1.1.zip.delta",
        "rel/app-1.2.zip",
        "rel/app-1.3.zip",
    }
    assert remote.read("rel/reference.bin") == files[0].read_bytes()
    out = tmp_path / "out"
    cli.ok("cp", "-r", remote.url("rel/"), out)
    for path in files:
        assert sha256_of(out / path.name) == sha256_of(path)


def test_reserved_names_are_refused_and_the_reference_is_untouched(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    cli.ok("cp", release(tmp_path, 1), remote.url("rel/"))
    ref_before = remote.sha("rel/reference.bin")
    meta_before = remote.meta("rel/reference.bin")
    keys_before = remote.physical()

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "reference.bin").write_bytes(b"not the reference")
    (bad / "x.delta").write_bytes(b"not a delta")
    fine = tmp_path / "fine.txt"
    fine.write_text("fine\n")

    for argv in (
        ("cp", bad / "reference.bin", remote.url("rel/")),
        ("cp", bad / "x.delta", remote.url("rel/")),
        ("cp", fine, remote.url("rel/reference.bin")),
        ("cp", fine, remote.url("rel/app-1.1.zip.delta")),
    ):
        result = cli(*argv)
        assert_clean_failure(result, "reserved")
        assert len(result.error_lines()) == 1

    (bad / "ok.txt").write_text("ok\n")
    result = cli("cp", "-r", bad, remote.url("rel/"))
    assert_clean_failure(result, "reserved")
    assert len(result.error_lines()) == 2  # one sentence per refused file

    assert remote.sha("rel/reference.bin") == ref_before
    assert remote.meta("rel/reference.bin") == meta_before
    assert remote.physical() == keys_before | {"rel/ok.txt"}
    out = tmp_path / "out.zip"
    cli.ok("cp", remote.url("rel/app-1.1.zip"), out)
    assert sha256_of(out) == sha256_of(tmp_path / "app-1.1.zip")
