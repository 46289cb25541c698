"""Retention (engine/prune.py) on a local folder and on moto: what goes, what stays readable,
and how much space comes back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dgagent.engine import keys
from dgagent.engine.metadata import direct_metadata
from dgagent.engine.prune import Pruner, Retention, parse_duration, reclaimable
from dgagent.engine.store import DeltaStore
from dgagent.errors import ConfigError
from dgagent.settings import EngineSettings
from dgagent.storage.base import ObjectInfo, Storage
from tests.artifacts import write_series

DAY = 86_400.0
SPACE = "rel"


def stored(store: DeltaStore, prefix: str = "") -> dict[str, int]:
    return {o.key: o.size for o in store.storage.list_objects(prefix) if isinstance(o, ObjectInfo)}


def put_all(store: DeltaStore, files: list[Path], space: str = SPACE) -> None:
    for path in files:
        store.put(path, f"{space}/{path.name}")


def reads_back(store: DeltaStore, files: list[Path], work: Path, space: str = SPACE) -> None:
    for path in files:
        out = work / f"out-{path.name}"
        got = store.get(f"{space}/{path.name}", out)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == got.sha256
        assert out.read_bytes() == path.read_bytes(), path.name


def test_keep_last_costs_about_what_storing_only_those_would(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "src", 30)
    put_all(store, files)
    before = stored(store)
    assert sum(keys.is_reference(k) for k in before) >= 3  # rotation made several references

    report = Pruner(store, Retention(keep_last=5)).run(f"{SPACE}/", recursive=False)

    after = stored(store)
    assert [e.key for e in report.deleted] == [f"{SPACE}/{p.name}" for p in files[:25]]
    assert report.retired, "the newest reference's own version was deleted: it is retired"
    assert report.stored_before == sum(before.values())
    assert report.stored_after == sum(after.values())
    reads_back(store, files[25:], tmp_path)
    # What storing only the last 5 costs, in a DeltaSpace of its own.
    put_all(store, files[25:], space="alone")
    only_five = sum(stored(store, "alone/").values())
    pruned = sum(stored(store, f"{SPACE}/").values())
    print(f"pruned: {pruned} B, only the 5 stored: {only_five} B")
    assert pruned <= 1.10 * only_five


def test_dryrun_writes_nothing_and_tells_the_real_figures(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "src", 24)
    put_all(store, files)
    before = stored(store)

    dry = Pruner(store, Retention(keep_last=4)).run(f"{SPACE}/", recursive=False, dryrun=True)

    assert stored(store) == before
    real = Pruner(store, Retention(keep_last=4)).run(f"{SPACE}/", recursive=False)
    assert [e.key for e in dry.deleted] == [e.key for e in real.deleted]
    assert [r.key for r in dry.references] == [r.key for r in real.references]
    assert dry.stored_after == real.stored_after == sum(stored(store).values())


def test_older_than_keeps_the_recent_and_either_rule_keeps(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "src", 12)  # mtimes one day apart
    put_all(store, files)
    newest = files[-1].stat().st_mtime
    now = newest + 0.5 * DAY

    report = Pruner(store, Retention(older_than=3 * DAY), now=now).run(
        f"{SPACE}/", recursive=False, dryrun=True
    )
    assert [e.key.rsplit("/", 1)[1] for e in report.kept] == [p.name for p in files[-3:]]
    both = Pruner(store, Retention(keep_last=5, older_than=3 * DAY), now=now).run(
        f"{SPACE}/", recursive=False
    )
    assert len(both.kept) == 5
    reads_back(store, files[-5:], tmp_path)


def test_each_release_line_keeps_its_own_last_versions_and_protected_files_stay(
    store: DeltaStore, tmp_path: Path
) -> None:
    app = write_series(tmp_path / "src", 8, name="app")
    lib = write_series(tmp_path / "src", 8, name="lib")
    put_all(store, app + lib)
    protected = f"{SPACE}/{app[0].name}"

    report = Pruner(store, Retention(keep_last=2), protect=lambda k: k == protected).run(
        f"{SPACE}/", recursive=False
    )

    kept = sorted(e.key.rsplit("/", 1)[1] for e in report.kept)
    assert kept == sorted([app[0].name, app[-2].name, app[-1].name, lib[-2].name, lib[-1].name])
    reads_back(store, [app[0], app[-2], app[-1], lib[-2], lib[-1]], tmp_path)
    gone = {e.key for e in report.deleted}
    assert not gone & {f"{SPACE}/{n}" for n in kept}


def test_without_a_rule_only_references_holding_space_for_nothing_go(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "src", 6)
    put_all(store, files)
    first = f"{SPACE}/{files[0].name}"
    store.delete([first])  # its reference stays: the other five need it
    listing = store.listing(f"{SPACE}/", recursive=False)
    held = reclaimable(listing.files, listing.objects)
    assert held.retirable == files[0].stat().st_size and held.unneeded == 0

    report = Pruner(store, Retention()).run(f"{SPACE}/", recursive=False)

    assert not report.deleted
    assert [r.reference for r in report.retired] == [keys.reference_key(SPACE)]
    assert keys.reference_key(SPACE) not in stored(store)
    # The newest file became the reference: the deltas shrink, one whole file is still paid.
    assert 0 < report.freed == report.stored_before - sum(stored(store).values())
    reads_back(store, files[1:], tmp_path)
    listing = store.listing(f"{SPACE}/", recursive=False)
    assert reclaimable(listing.files, listing.objects).total == 0


def test_single_policy_never_moves_deltas_off_reference_bin(
    backend: tuple[Storage, str], tmp_path: Path
) -> None:
    settings = EngineSettings(cache_dir=tmp_path / "cache" / "refs", reference_policy="single")
    store = DeltaStore(backend[0], settings=settings)
    files = write_series(tmp_path / "src", 6)
    put_all(store, files)

    report = Pruner(store, Retention(keep_last=2)).run(f"{SPACE}/", recursive=False)

    assert not report.retired
    assert keys.reference_key(SPACE) in stored(store)
    reads_back(store, files[-2:], tmp_path)


def test_recursive_prune_covers_every_deltaspace_below(store: DeltaStore, tmp_path: Path) -> None:
    one = write_series(tmp_path / "a", 5)
    two = write_series(tmp_path / "b", 5)
    put_all(store, one, space="top/a")
    put_all(store, two, space="top/b/deeper")

    report = Pruner(store, Retention(keep_last=1)).run("top/", recursive=True)

    assert sorted(e.key for e in report.kept) == [
        f"top/a/{one[-1].name}",
        f"top/b/deeper/{two[-1].name}",
    ]
    reads_back(store, one[-1:], tmp_path, space="top/a")
    reads_back(store, two[-1:], tmp_path, space="top/b/deeper")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90d", 90 * DAY), ("12w", 84 * DAY), ("36h", 1.5 * DAY), ("1y", 365 * DAY)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["90", "3m", "-1d", "0d", "soon"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. 90d"):
        parse_duration(text)


def test_keep_last_zero_points_to_rm() -> None:
    with pytest.raises(ConfigError, match="rm -r"):
        Retention(keep_last=0)


def test_a_retirement_found_not_worth_it_is_not_tried_again_until_something_changes(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "src", 3)
    put_all(store, files[:2])
    # With version 0 gone, retiring its reference would make version 1 the reference: that
    # gives back one small delta, under RETIRE_GAIN of the reference's size.
    store.delete([f"{SPACE}/{files[0].name}"])
    declined: set[tuple[str, ...]] = set()

    first = Pruner(store, Retention(), declined=declined).run(f"{SPACE}/", recursive=False)
    assert not first.retired and any("was kept" in n for n in first.notes) and declined
    again = Pruner(store, Retention(), declined=declined).run(f"{SPACE}/", recursive=False)
    assert not again.retired and not again.notes  # not re-encoded to find the same

    put_all(store, files[2:])  # a new version against the same reference: worth a new look
    later = Pruner(store, Retention(), declined=declined).run(f"{SPACE}/", recursive=False)
    assert later.retired or later.notes
    reads_back(store, files[1:], tmp_path)


def test_a_pruned_name_takes_a_delta_its_whole_object_shadows(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "src", 4)
    put_all(store, files)
    # Both forms of one name, as two racing writers can leave them (the whole one is read).
    shadowed = f"{SPACE}/{files[1].name}"
    assert keys.delta_key(shadowed) in stored(store)
    whole = direct_metadata(
        name=files[1].name,
        sha256=hashlib.sha256(files[1].read_bytes()).hexdigest(),
        size=files[1].stat().st_size,
        mtime=files[1].stat().st_mtime,
    )
    store.storage.upload(shadowed, files[1], whole)

    report = Pruner(store, Retention(keep_last=2)).run(f"{SPACE}/", recursive=False)

    assert shadowed in {e.key for e in report.deleted}
    left = stored(store)
    assert shadowed not in left and keys.delta_key(shadowed) not in left
    reads_back(store, files[2:], tmp_path)
