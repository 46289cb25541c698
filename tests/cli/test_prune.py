"""``dg-agent prune`` and the reclaimable bytes ``stats`` shows, on moto and a local folder."""

from __future__ import annotations

from pathlib import Path

from tests.artifacts import write_series
from tests.cli.conftest import Cli, Remote, assert_clean_failure, sha256_of


def test_prune_keep_last_with_json_dryrun_then_real(
    cli: Cli, remote: Remote, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "src", 15)
    cli.ok("cp", "-r", "-q", tmp_path / "src", remote.url("rel/"))
    before = remote.objects()

    dry = cli.ok("prune", "--keep-last", "3", "--dryrun", "--json", remote.url("rel/")).json()
    assert remote.objects() == before, "a dry run writes nothing"
    assert dry["dryrun"] is True
    assert dry["deleted"] == [remote.url(f"rel/{p.name}") for p in files[:12]]
    assert dry["stored_bytes_before"] == sum(before.values())

    done = cli.ok("prune", "--keep-last", "3", "--json", remote.url("rel/")).json()
    after = remote.objects()
    assert done["stored_bytes_after"] == dry["stored_bytes_after"] == sum(after.values())
    assert done["freed_bytes"] == sum(before.values()) - sum(after.values()) > 0
    assert remote.logical() == {f"rel/{p.name}" for p in files[12:]}
    out = tmp_path / "out"
    cli.ok("cp", "-r", "-q", remote.url("rel/"), out)
    assert {p.name: sha256_of(p) for p in out.iterdir()} == {
        p.name: sha256_of(p) for p in files[12:]
    }


def test_prune_text_output_names_each_step(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    files = write_series(tmp_path / "src", 6)
    cli.ok("cp", "-r", "-q", tmp_path / "src", remote.url("rel/"))

    text = cli.ok("prune", "--keep-last", "2", remote.url("rel")).out

    for path in files[:4]:
        assert f"delete: {remote.url(f'rel/{path.name}')}" in text
    assert "4 of 6 files deleted (keep the last 2)" in text
    assert "came back" in text


def test_stats_shows_what_prune_gives_back(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    files = write_series(tmp_path / "src", 5)
    cli.ok("cp", "-r", "-q", tmp_path / "src", remote.url("rel/"))
    cli.ok("rm", remote.url(f"rel/{files[0].name}"))  # its reference stays for the others

    doc = cli.ok("stats", "--json", remote.url("")).json()
    assert doc["total"]["retirable_reference_bytes"] == files[0].stat().st_size
    assert doc["total"]["reclaimable_bytes"] == files[0].stat().st_size
    assert "prune -r --dryrun" in cli.ok("stats", remote.url("")).out

    cli.ok("prune", "-r", remote.url(""))
    doc = cli.ok("stats", "--json", remote.url("")).json()
    assert doc["total"]["reclaimable_bytes"] == 0
    assert doc["total"]["files"] == 4


def test_prune_errors_are_one_sentence(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    files = write_series(tmp_path / "src", 2)
    cli.ok("cp", "-r", "-q", tmp_path / "src", remote.url("rel/"))
    assert_clean_failure(
        cli("prune", "--keep-last", "1", remote.url(f"rel/{files[0].name}")), "is a file"
    )
    assert_clean_failure(cli("prune", "--older-than", "3m", remote.url("rel/")), "e.g. 90d")
    assert_clean_failure(cli("prune", "--keep-last", "0", remote.url("rel/")), "at least 1")
    assert_clean_failure(cli("prune", "--keep-last", "1", remote.url("nothing/")), "nothing")
