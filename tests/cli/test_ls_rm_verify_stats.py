"""``dg-agent ls``, ``rm``, ``verify`` and ``stats`` against both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import (
    Cli,
    LocalRemote,
    Remote,
    S3Remote,
    assert_clean_failure,
    release,
    sha256_of,
)


def populate(cli: Cli, remote: Remote, src: Path) -> dict[str, Path]:
    """rel/: two zip versions (deltas), a text file (direct); rel/sub/: one text file."""
    files = {
        "rel/app-1.1.zip": release(src, 1),
        "rel/app-1.2.zip": release(src, 2),
    }
    notes = src / "notes.txt"
    notes.write_text("some release notes\n" * 20)
    files["rel/notes.txt"] = notes
    deep = src / "deep.txt"
    deep.write_text("deep\n")
    files["rel/sub/deep.txt"] = deep
    for rel, path in files.items():
        cli.ok("cp", path, remote.url(rel))
    return files


def rows(out: str) -> dict[str, list[str]]:
    """ls lines by name: [date, time, original, stored, ratio] or ['PRE']."""
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "PRE":
            found[parts[1]] = ["PRE"]
        elif len(parts) >= 6 and parts[0][:2] == "20":
            date, time, original, stored, ratio, name = line.split(maxsplit=5)
            found[name] = [date, time, original, stored, ratio]
    return found


# ------------------------------------------------------------------------------------ ls


def test_ls_shows_logical_names_with_both_sizes(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    files = populate(cli, remote, tmp_path / "src")
    out = cli.ok("ls", remote.url("rel/")).out
    assert "reference.bin" not in out
    assert ".delta" not in out
    got = rows(out)
    assert set(got) == {"app-1.1.zip", "app-1.2.zip", "notes.txt", "sub/"}
    assert len(out.strip().splitlines()) == 4  # nothing else is listed
    assert got["sub/"] == ["PRE"]

    delta_size = remote.objects()["rel/app-1.2.zip.delta"]
    original = files["rel/app-1.2.zip"].stat().st_size
    assert got["app-1.2.zip"][2:] == [
        str(original),
        str(delta_size),
        f"{100 * delta_size / original:.1f}%",
    ]
    notes_size = files["rel/notes.txt"].stat().st_size
    assert got["notes.txt"][2:] == [str(notes_size), str(notes_size), "100.0%"]

    one = rows(cli.ok("ls", remote.url("rel/app-1.2.zip")).out)
    assert list(one) == ["app-1.2.zip"]


def test_ls_recursive_summarize_and_human(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    files = populate(cli, remote, tmp_path / "src")
    result = cli.ok("ls", "-r", "--summarize", remote.url("rel/"))
    got = rows(result.out)  # names relative to the listed folder, at any depth
    assert set(got) == {rel.removeprefix("rel/") for rel in files}
    originals = sum(p.stat().st_size for p in files.values())
    stored = sum(remote.objects().values())  # what the store holds, references included
    assert "Total Objects: 4" in result.out
    assert f"Total Size: {originals}" in result.out
    assert f"Stored Size: {stored} (references included)" in result.out
    assert f"Saved: {originals - stored} " in result.out
    assert rows(result.out)["app-1.1.zip"][4] == "ref"  # the file that became the reference

    human = cli.ok("ls", "-h", remote.url("rel/")).out
    size = files["rel/app-1.2.zip"].stat().st_size
    line = next(line for line in human.splitlines() if line.endswith("app-1.2.zip"))
    assert f"{size / 1024:.1f} KiB" in line
    assert str(size) not in line


def test_ls_json(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    files = populate(cli, remote, tmp_path / "src")
    doc = cli.ok("ls", "--json", remote.url("rel/")).json()
    assert [p.rstrip("/").rpartition("/")[2] for p in doc["prefixes"]] == ["sub"]
    by_name = {rec["key"].rpartition("/")[2]: rec for rec in doc["files"]}
    assert set(by_name) == {"app-1.1.zip", "app-1.2.zip", "notes.txt"}
    v2 = by_name["app-1.2.zip"]
    assert v2["kind"] == "delta"
    assert v2["original_size"] == files["rel/app-1.2.zip"].stat().st_size
    assert v2["stored_size"] == remote.objects()["rel/app-1.2.zip.delta"]
    assert v2["ratio"] == round(v2["stored_size"] / v2["original_size"], 6)
    assert v2["sha256"] == sha256_of(files["rel/app-1.2.zip"])
    assert v2["url"] == remote.url("rel/app-1.2.zip")
    assert by_name["notes.txt"]["kind"] == "direct"
    assert by_name["notes.txt"]["ratio"] == 1.0

    deep = cli.ok("ls", "--json", "-r", remote.url("rel/")).json()
    assert deep["prefixes"] == []
    assert len(deep["files"]) == 4


def test_ls_without_url_lists_buckets(cli: Cli, s3_remote: S3Remote) -> None:
    assert f"s3://{s3_remote.bucket}" in cli.ok("ls").out.splitlines()
    assert s3_remote.bucket in cli.ok("ls", "--json").json()["buckets"]


# ------------------------------------------------------------------------------------ rm


def test_rm_keeps_the_reference_until_the_last_delta_goes(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for v in (1, 2, 3):
        cli.ok("cp", release(src, v), remote.url("rel/"))
    notes = src / "notes.txt"
    notes.write_text("notes\n")
    cli.ok("cp", notes, remote.url("rel/"))
    ref = remote.sha("rel/reference.bin")

    out = cli.ok("rm", remote.url("rel/app-1.1.zip")).out  # the file the reference came from
    assert out.strip() == f"delete: {remote.url('rel/app-1.1.zip.delta')}"
    assert remote.sha("rel/reference.bin") == ref
    cli.ok("rm", remote.url("rel/notes.txt"))
    cli.ok("rm", remote.url("rel/app-1.2.zip"))
    assert remote.physical() == {"rel/reference.bin", "rel/app-1.3.zip.delta"}
    cli.ok("verify", remote.url("rel/app-1.3.zip"))

    out = cli.ok("rm", remote.url("rel/app-1.3.zip")).out
    assert f"delete: {remote.url('rel/reference.bin')}" in out
    assert remote.physical() == set()


def test_rm_recursive_dryrun_deletes_nothing(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    populate(cli, remote, tmp_path / "src")
    before = remote.objects()
    out = cli.ok("rm", "-r", "--dryrun", remote.url("rel/")).out
    printed = {line.removeprefix("(dryrun) delete: ") for line in out.splitlines()}
    assert printed == {remote.url(key) for key in before}
    assert remote.objects() == before


@pytest.mark.parametrize("spelling", ["mirror/", "mirror"])
def test_rm_recursive_stays_inside_its_folder(
    cli: Cli, remote: Remote, tmp_path: Path, spelling: str
) -> None:
    src = tmp_path / "src"
    for v in (1, 2):
        release(src, v)
    cli.ok("cp", "-r", src, remote.url("mirror/"))
    cli.ok("cp", "-r", src, remote.url("mirror2/"))
    cli.ok("cp", src / "app-1.1.zip", remote.url("mirror.zip"))
    others = {k: remote.sha(k) for k in remote.physical() if not k.startswith("mirror/")}
    assert "mirror2/reference.bin" in others

    cli.ok("rm", "-r", remote.url(spelling))
    assert {k: remote.sha(k) for k in remote.physical()} == others
    for name in ("mirror2/app-1.1.zip", "mirror2/app-1.2.zip", "mirror.zip"):
        cli.ok("verify", remote.url(name))


def test_rm_recursive_of_part_of_a_tree_keeps_references_still_needed(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for v in (1, 2):
        release(src / "a", v)
        release(src / "a" / "b", v)
    cli.ok("cp", "-r", src, remote.url("t/"))
    cli.ok("rm", "-r", remote.url("t/a/b/"))
    assert remote.physical() == {
        "t/a/reference.bin",
        "t/a/app-1.1.zip.delta",
        "t/a/app-1.2.zip.delta",
    }


def test_rm_of_the_last_file_leaves_no_reference_behind(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    v1 = release(tmp_path, 1)
    cli.ok("cp", v1, remote.url("rel/"))  # reference.bin + zero-diff delta
    cli.ok("cp", "--no-delta", v1, remote.url("rel/"))  # same name again, now direct
    assert remote.logical() == {"rel/app-1.1.zip"}
    cli.ok("rm", remote.url("rel/app-1.1.zip"))
    assert remote.physical() == set()


def test_rm_folder_url_without_r_fails(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    populate(cli, remote, tmp_path / "src")
    before = remote.objects()
    assert_clean_failure(cli("rm", remote.url("rel/")), "-r")
    assert_clean_failure(cli("rm", remote.url("rel/missing.zip")), "does not exist")
    assert remote.objects() == before


def test_rm_in_a_local_store_keeps_the_folders_above_it(cli: Cli, tmp_path: Path) -> None:
    store = tmp_path / "outer" / "store"
    store.mkdir(parents=True)
    remote = LocalRemote(store)
    cli.ok("cp", release(tmp_path / "src", 1), remote.url("p/"))
    cli.ok("rm", remote.url("p/app-1.1.zip"))
    assert remote.physical() == set()
    assert (tmp_path / "outer").is_dir()
    assert store.is_dir()


# -------------------------------------------------------------------------------- verify


def test_verify_delta_and_direct(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    files = populate(cli, remote, tmp_path / "src")
    whole = release(tmp_path / "whole", 3)
    cli.ok("cp", "--no-delta", whole, remote.url("rel/"))
    files["rel/app-1.3.zip"] = whole

    out = cli.ok("verify", remote.url("rel/app-1.2.zip")).out
    assert out.split() == ["ok", sha256_of(files["rel/app-1.2.zip"]), remote.url("rel/app-1.2.zip")]

    doc = cli.ok("verify", "--json", remote.url("rel/")).json()
    by_url = {rec["url"]: rec for rec in doc["results"]}
    assert set(by_url) == {remote.url(rel) for rel in files}
    for rel, path in files.items():
        rec = by_url[remote.url(rel)]
        assert rec["valid"] is True
        assert rec["checked"] is True
        assert rec["sha256"] == sha256_of(path)
        assert rec["size"] == path.stat().st_size
    assert by_url[remote.url("rel/app-1.2.zip")]["kind"] == "delta"
    assert by_url[remote.url("rel/app-1.3.zip")]["kind"] == "direct"


@pytest.mark.parametrize("stored", ["rel/app-1.2.zip.delta", "rel/app-1.3.zip"])
def test_corruption_is_detected_and_no_file_is_written(
    cli: Cli, remote: Remote, tmp_path: Path, stored: str
) -> None:
    src = tmp_path / "src"
    cli.ok("cp", release(src, 1), remote.url("rel/"))
    cli.ok("cp", release(src, 2), remote.url("rel/"))
    cli.ok("cp", "--no-delta", release(src, 3), remote.url("rel/"))
    logical = stored.removesuffix(".delta")
    remote.corrupt(stored)

    result = cli("verify", remote.url(logical))
    assert_clean_failure(result)
    assert len(result.error_lines()) == 1
    assert not result.out.startswith("ok")

    recursive = cli("verify", remote.url("rel/"))
    assert_clean_failure(recursive)
    assert recursive.out.count("ok  ") == 2  # the other two files are still fine

    out = tmp_path / "out"
    out.mkdir()
    assert_clean_failure(cli("cp", remote.url(logical), f"{out}/"))
    assert_clean_failure(cli("cp", remote.url(logical), out / "named.zip"))
    assert list(out.iterdir()) == []  # no file, no partial temp file


def test_a_corrupt_delta_is_named_in_the_error(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for v in (1, 2, 3):
        cli.ok("cp", release(src, v), remote.url("rel/"))
    remote.corrupt("rel/app-1.2.zip.delta")
    result = cli("verify", "-r", remote.url("rel/"))
    assert_clean_failure(result, "app-1.2.zip")
    assert len(result.error_lines()) == 1


def test_verify_detects_a_corrupt_stored_reference(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    cli.ok("cp", release(src, 1), remote.url("rel/"))
    cli.ok("cp", release(src, 2), remote.url("rel/"))
    remote.corrupt("rel/reference.bin")
    assert_clean_failure(cli("verify", remote.url("rel/app-1.2.zip")), "reference.bin")


def test_corrupt_stored_reference_fails_from_a_fresh_cache(
    cli: Cli, remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    cli.ok("cp", release(src, 1), remote.url("rel/"))
    cli.ok("cp", release(src, 2), remote.url("rel/"))
    remote.corrupt("rel/reference.bin")
    monkeypatch.setenv("DG_CACHE_DIR", str(tmp_path / "other-machine" / "cache"))
    assert_clean_failure(cli("verify", remote.url("rel/app-1.2.zip")), "reference.bin")
    out = tmp_path / "out"
    out.mkdir()
    assert_clean_failure(cli("cp", remote.url("rel/app-1.2.zip"), f"{out}/"))
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------------- stats


def test_stats_per_deltaspace(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "src"
    rel = [release(src / "rel", v) for v in (1, 2, 3)]
    notes = src / "rel" / "notes.txt"
    notes.write_text("notes\n" * 100)
    rel.append(notes)
    other = [release(src / "other", v, seed=3) for v in (1, 2)]
    cli.ok("sync", src, remote.url("s/"))

    doc = cli.ok("stats", "--json", remote.url("s/")).json()
    spaces = {rec["deltaspace"]: rec for rec in doc["deltaspaces"]}
    assert set(spaces) == {remote.space("s/rel"), remote.space("s/other")}
    objects = remote.objects()
    for folder, local in (("s/rel", rel), ("s/other", other)):
        rec = spaces[remote.space(folder)]
        original = sum(p.stat().st_size for p in local)
        stored = sum(size for key, size in objects.items() if key.startswith(folder + "/"))
        assert rec["files"] == len(local)
        assert rec["original_bytes"] == original
        assert rec["stored_bytes"] == stored  # deltas, direct files and reference.bin
        assert rec["reference_bytes"] == objects[f"{folder}/reference.bin"]
        assert rec["saved_bytes"] == original - stored
        assert rec["saved_percent"] == round(100 * (original - stored) / original, 2)
        assert rec["saved_percent"] > 40  # three/two similar versions share one reference
    total = doc["total"]
    assert total["files"] == 6
    assert total["original_bytes"] == sum(p.stat().st_size for p in rel + other)
    assert total["stored_bytes"] == sum(objects.values())

    text = cli.ok("stats", remote.url("s/")).out.splitlines()
    names = [line.split()[0] for line in text[1:]]
    assert names == ["other", "rel", "TOTAL"]  # relative to the URL given
