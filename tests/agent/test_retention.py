"""A watch's retention: its config keys, and what ``prune_watch`` deletes and keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dgagent.agent import config
from dgagent.agent.retention import prune_watch
from dgagent.engine.store import DeltaStore
from dgagent.errors import ConfigError
from dgagent.rpc.client import AgentClient
from dgagent.rpc.protocol import RpcError
from dgagent.rpc.records import Pruned
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage
from tests.agent.conftest import AgentProc, agent_config
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


def stored_names(root: Path) -> set[str]:
    """The names stored under ``rel/`` of the local store at ``root``."""
    store = DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=root.parent / "c2"))
    return {e.key.rsplit("/", 1)[1] for e in store.listing("rel/", recursive=True).files}


def test_the_agent_applies_a_watch_retention_on_its_schedule(
    agent: AgentProc, tmp_path: Path
) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    root.mkdir()
    files = write_series(folder, 5)
    url = f"file://{root}/rel/"
    watch = {"dir": str(folder), "url": url, "keep_last": 2}
    agent.write_config(agent_config([watch], reconcile=1.5))
    agent.start()
    agent.wait_for(lambda: agent.status()["done"] == 5, what="five stored files")
    for path in files[:3]:
        path.unlink()  # the build folder let go of the three oldest

    agent.wait_for(
        lambda: stored_names(root) == {p.name for p in files[3:]},
        what="the retention to delete the three versions gone from the folder",
    )
    assert all(p.exists() for p in files[3:])


def test_a_client_prunes_through_the_agent_and_hears_it_finished(
    agent: AgentProc, tmp_path: Path
) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    root.mkdir()
    files = write_series(folder, 5)
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}]))
    agent.start()
    agent.wait_for(lambda: agent.status()["done"] == 5, what="five stored files")
    url = f"file://{root}/rel/"

    # Every version is still in the watched folder, and the watch does not say prune_present.
    kept = Pruned.from_json(agent.call("prune", {"url": url, "keep_last": 1}), strict=True)
    assert kept.deleted == [] and kept.kept == 5
    for path in files[:4]:
        path.unlink()
    dry = Pruned.from_json(agent.call("prune", {"url": url, "keep_last": 1, "dryrun": True}))
    done = Pruned.from_json(agent.call("prune", {"url": url, "keep_last": 1}), strict=True)
    assert dry.deleted == done.deleted and len(done.deleted) == 4
    assert dry.stored_after == done.stored_after
    assert stored_names(root) == {files[-1].name}
    with AgentClient(agent.socket, timeout=30) as client:
        client.subscribe(since=0)
        found = [e for e in client.events(timeout=1.0) if e["type"] == "prune.finished"]
    assert [e["data"]["deleted"] for e in found] == [0, 4]
    with pytest.raises(RpcError, match="at least 1"):
        agent.call("prune", {"url": url, "keep_last": 0})


def test_watch_add_takes_a_retention_and_watch_list_shows_it(
    agent: AgentProc, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "store").mkdir()
    url = f"file://{tmp_path}/store/rel/"
    bad = agent.cli("watch", "add", str(folder), url, "--older-than", "3m", check=False)
    assert bad.returncode != 0 and "e.g. 90d" in bad.stderr and "Traceback" not in bad.stderr
    assert not agent.config.exists() or "keep_last" not in agent.config.read_text()

    agent.cli("watch", "add", str(folder), url, "--keep-last", "4", "--older-than", "90d")

    assert "(keep the last 4 and those of the last 90d)" in agent.cli("watch", "list").stdout
    (record,) = json.loads(agent.cli("watch", "list", "--json").stdout)["watches"]
    assert (record["keep_last"], record["older_than"], record["prune_present"]) == (4, "90d", False)
