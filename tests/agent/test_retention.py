"""A watch's retention: its config keys, and what ``prune_watch`` deletes and keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgagent.agent import config
from dgagent.agent.retention import prune_watch
from dgagent.engine.store import DeltaStore
from dgagent.errors import ConfigError
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage
from tests.artifacts import write_series


def test_retention_keys_round_trip_through_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[[watch]]\ndir = "{tmp_path}"\nurl = "file:///x/"\nkeep_last = 3\n'
        'older_than = "90d"\nprune_present = true\n'
    )
    (watch,) = config.load(path).watches
    assert (watch.keep_last, watch.older_than, watch.prune_present) == (3, "90d", True)
    assert watch.retention is not None and watch.retention.older_than == 90 * 86_400
    config.save(path, config.load(path))
    assert config.load(path).watches == (watch,)
    plain = config.dumps(config.AgentConfig(watches=(config.Watch(tmp_path, "file:///x/"),)))
    assert "keep_last" not in plain and "prune_present" not in plain
    assert config.Watch(tmp_path, "file:///x/").retention is None


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("keep_last = 0", "at least 1"),
        ('older_than = "3m"', r"e\.g\. 90d"),
        ("keep_last = true", "int"),
    ],
)
def test_bad_retention_keys_are_one_sentence(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[watch]]\ndir = "{tmp_path}"\nurl = "file:///x/"\n{line}\n')
    with pytest.raises(ConfigError, match=needle):
        config.load(path)


def test_files_still_in_the_folder_stay_unless_the_watch_says_otherwise(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    files = write_series(folder, 6)
    root = tmp_path / "store"
    root.mkdir()
    store = DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=tmp_path / "c" / "r"))
    for path in files:
        store.put(path, f"app/{path.name}")
    for path in files[1:3]:
        path.unlink()  # the build folder let go of versions 1 and 2; 0 and 3-5 are still there
    watch = config.Watch(folder, "file:///unused/", keep_last=2)

    report = prune_watch(watch, store, "app/")

    assert report is not None
    assert sorted(e.key for e in report.deleted) == [f"app/{p.name}" for p in files[1:3]]
    listed = {e.key for e in store.listing("app/", recursive=True).files}
    assert listed == {f"app/{p.name}" for p in (files[0], *files[3:])}
    everything = config.Watch(folder, "file:///unused/", keep_last=2, prune_present=True)
    prune_watch(everything, store, "app/")
    assert {e.key for e in store.listing("app/", recursive=True).files} == {
        f"app/{p.name}" for p in files[-2:]
    }
    assert prune_watch(config.Watch(folder, "file:///unused/"), store, "app/") is None
