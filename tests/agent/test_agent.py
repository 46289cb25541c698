"""The agent end to end: a real `dg-agent run` process, real files, a real store."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dgagent.engine.store import DeltaStore, Entry
from dgagent.rpc import AgentClient
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage, S3Options, S3Storage, Storage
from tests import artifacts
from tests.agent.conftest import AgentProc, agent_config


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reader(storage: Storage, tmp_path: Path) -> DeltaStore:
    return DeltaStore(storage, settings=EngineSettings(cache_dir=tmp_path / "reader-cache"))


def assert_mirrored(store: DeltaStore, folder: Path, prefix: str, tmp_path: Path) -> None:
    """Every local file reads back bit-exact from the store."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        out = tmp_path / "readback" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        store.get(prefix + rel, out)
        assert sha(out) == sha(path), rel


def transfers(agent: AgentProc, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = agent.call("transfers", {"limit": 1000})["items"]
    return [t for t in items if t["path"] == path and t["op"] == "put" and not t.get("error")]


@pytest.fixture
def s3_watch(
    agent: AgentProc, tmp_path: Path, bucket: str, s3_endpoint: str
) -> tuple[Path, DeltaStore]:
    folder = tmp_path / "out"
    folder.mkdir()
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"s3://{bucket}/rel/"}], endpoint=s3_endpoint)
    )
    options = S3Options(endpoint_url=s3_endpoint, checksum_when_required=True)
    return folder, reader(S3Storage(bucket, options), tmp_path)


def test_versions_written_into_a_watched_folder_are_stored(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, store = s3_watch
    agent.start()
    for v in range(3):
        artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v))
        time.sleep(0.3)
    (folder / "sub").mkdir()
    artifacts.write_tar(folder / "sub" / "app.tar", artifacts.source_tree(0))
    status = agent.wait_idle()
    assert status["done"] == 4 and status["failed"] == 0
    assert_mirrored(store, folder, "rel/", tmp_path)
    kinds = {e.key: e.kind for e in store.list_files("rel/", recursive=True) if hasattr(e, "kind")}
    assert str(kinds["rel/app-1.2.zip"]) == "Kind.DELTA"
    assert status["bytes"]["stored"] < status["bytes"]["original"]


def test_a_file_being_appended_is_never_stored_half_written(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, store = s3_watch
    agent.start()
    target = folder / "growing.bin"
    stop = threading.Event()

    def append() -> None:
        with target.open("ab") as f:
            for _ in range(25):  # every 200 ms for 5 s
                f.write(os.urandom(4096))
                f.flush()
                time.sleep(0.2)
        stop.set()

    writer = threading.Thread(target=append)
    writer.start()
    while not stop.is_set():
        assert store.storage.head("rel/growing.bin") is None, "stored while still being written"
        time.sleep(0.3)
    writer.join()
    agent.wait_idle()
    assert_mirrored(store, folder, "rel/", tmp_path)
    assert len(transfers(agent, "growing.bin")) == 1


def test_atomic_rename_stores_only_the_final_file(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, store = s3_watch
    agent.start()
    partial = folder / "app-2.0.zip.tmp"
    data = artifacts.source_tree(2)
    artifacts.write_zip(partial, data)
    time.sleep(1.0)
    partial.rename(folder / "app-2.0.zip")
    agent.wait_idle()
    keys = [o.key for o in store.storage.list_objects("rel/")]
    assert not any(".tmp" in k for k in keys)
    assert_mirrored(store, folder, "rel/", tmp_path)


def test_mtime_rule_same_size_edit_and_touch(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, store = s3_watch
    agent.start()
    path = folder / "notes.txt"
    path.write_bytes(b"A" * 1000)
    agent.wait_idle()
    assert len(transfers(agent, "notes.txt")) == 1
    st = path.stat()
    # unchanged content, mtime moved by 0.5 s: not stored again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 500_000_000))
    agent.call("rescan")
    agent.wait_idle()
    assert len(transfers(agent, "notes.txt")) == 1
    # same size, other content, mtime moved by 2 s: detected and stored
    path.write_bytes(b"B" * 1000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    agent.wait_idle()
    assert len(transfers(agent, "notes.txt")) == 2
    assert_mirrored(store, folder, "rel/", tmp_path)
    # touched by 10 s but the same content: hashed, not stored again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    agent.call("rescan")
    agent.wait_idle()
    assert len(transfers(agent, "notes.txt")) == 2


def test_same_size_rewrites_within_the_mtime_tolerance_are_stored(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    """A same-size edit whose mtime stays within one second of the stored one is still found:
    made while the agent was down (seen by the start-up scan), and made under a running agent
    with the mtime then set back to the stored one (Syncthing's "sneaky" case)."""
    folder, store = s3_watch
    path = folder / "build.txt"
    path.write_bytes(b"version 1\n" * 100)
    agent.start()
    agent.wait_idle()
    assert len(transfers(agent, "build.txt")) == 1
    stored = path.stat()
    agent.kill()
    path.write_bytes(b"version 2\n" * 100)
    os.utime(path, ns=(stored.st_atime_ns, stored.st_mtime_ns + 300_000_000))
    agent.start()
    agent.wait_idle()
    assert len(transfers(agent, "build.txt")) == 2
    assert_mirrored(store, folder, "rel/", tmp_path)
    stored = path.stat()
    path.write_bytes(b"version 3\n" * 100)
    os.utime(path, ns=(stored.st_atime_ns, stored.st_mtime_ns))
    time.sleep(0.5)
    agent.call("rescan")
    agent.wait_idle()
    assert len(transfers(agent, "build.txt")) == 3
    assert_mirrored(store, folder, "rel/", tmp_path)
    # A rename back and forth moves only the ctime: hashed, not stored again.
    path.rename(folder / "moved.txt")
    (folder / "moved.txt").rename(path)
    agent.call("rescan")
    agent.wait_idle()
    assert len(transfers(agent, "build.txt")) == 3


def test_each_files_codec_is_reported(agent: AgentProc, tmp_path: Path) -> None:
    """A watch using the archive codec: queue items, transfers (as the file.stored events) and
    browse records say which codec each delta used (the TUI shows it from these)."""
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"file://{root}/rel/", "codec": "archive"}])
    )
    agent.start()
    artifacts.write_zip(folder / "app-1.0.zip", artifacts.source_tree(0))
    agent.wait_idle()
    for v in (1, 2):
        artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v))
    agent.wait_idle()
    items = {i["path"]: i for i in agent.call("queue", {"state": "stored"})["items"]}
    assert items["app-1.0.zip"]["codec"] == "compat"  # the delta of the reference's own file
    assert items["app-1.1.zip"]["codec"] == items["app-1.2.zip"]["codec"] == "archive-v3"
    logged = {t["path"]: t["codec"] for t in agent.call("transfers", {"limit": 10})["items"]}
    assert logged["app-1.2.zip"] == "archive-v3"
    listing = agent.call("browse.list", {"url": f"file://{root}/rel/"})
    assert {f["name"]: f["codec"] for f in listing["files"]} == {
        "app-1.0.zip": "compat",
        "app-1.1.zip": "archive-v3",
        "app-1.2.zip": "archive-v3",
    }
    # The README's one definition: stored bytes are every object there, references included.
    physical = [p for p in (root / "rel").rglob("*") if p.is_file() and ".dg-" not in str(p)]
    originals = sum(
        (folder / name).stat().st_size for name in ("app-1.0.zip", "app-1.1.zip", "app-1.2.zip")
    )
    assert listing["summary"] == {
        "files": 3,
        "original_bytes": originals,
        "stored_bytes": sum(p.stat().st_size for p in physical),
        "saved_bytes": originals - sum(p.stat().st_size for p in physical),
        "saved_percent": listing["summary"]["saved_percent"],
        "complete": True,
    }
    assert {f["name"]: f["stored_as"] for f in listing["files"]}["app-1.0.zip"] == "new reference"


@pytest.mark.parametrize("mirror", [True, False])
def test_delete_mirroring(agent: AgentProc, tmp_path: Path, mirror: bool) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"file://{root}/rel/", "delete": mirror}])
    )
    agent.start()
    files = [artifacts.write_zip(folder / f"a-{v}.zip", artifacts.source_tree(v)) for v in range(4)]
    agent.wait_idle()
    files[1].unlink()
    agent.wait_idle()
    time.sleep(1.0)
    agent.wait_idle()
    store = reader(LocalStorage(root), tmp_path)
    names = sorted(getattr(e, "key", "") for e in store.list_files("rel/", recursive=True))
    expected = ["rel/a-0.zip", "rel/a-2.zip", "rel/a-3.zip"]
    assert names == (expected if mirror else sorted([*expected, "rel/a-1.zip"]))
    assert (root / "rel" / "reference.bin").exists()  # still needed by the other deltas
    assert_mirrored(store, folder, "rel/", tmp_path)


def test_an_emptied_root_deletes_nothing(agent: AgentProc, tmp_path: Path) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"file://{root}/rel/", "delete": True}])
    )
    agent.start()
    for v in range(3):
        artifacts.write_zip(folder / f"a-{v}.zip", artifacts.source_tree(v))
    agent.wait_idle()
    for path in folder.iterdir():
        path.unlink()
    time.sleep(1.5)
    agent.call("rescan")
    status = agent.wait_idle()
    store = reader(LocalStorage(root), tmp_path)
    assert len([e for e in store.list_files("rel/", recursive=True)]) == 3
    assert "empty" in (status["watches"][0]["note"] or "")
    # the root removed altogether: nothing deleted either
    folder.rmdir()
    time.sleep(1.5)
    agent.call("rescan")
    agent.wait_idle()
    assert len([e for e in store.list_files("rel/", recursive=True)]) == 3


def test_kill_9_in_a_burst_then_restart_converges(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, store = s3_watch
    agent.start()
    for v in range(12):
        artifacts.write_zip(folder / f"app-{v:02d}.zip", artifacts.source_tree(v % 5))
        (folder / f"note-{v:02d}.txt").write_text(f"note {v}\n" * 100)
    time.sleep(1.5)  # the agent is in the middle of the burst
    agent.kill()
    agent.start()
    status = agent.wait_idle(120)
    assert status["failed"] == 0
    assert_mirrored(store, folder, "rel/", tmp_path)
    # nothing left half-written: no multipart uploads in flight, every delta has its reference
    objects = [o.key for o in store.storage.list_objects("rel/")]
    assert all(not k.endswith(".delta") or "rel/reference.bin" in objects for k in objects)


def test_sigterm_drains_and_exits_zero(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, store = s3_watch
    agent.start()
    for v in range(4):
        artifacts.write_zip(folder / f"app-{v}.zip", artifacts.source_tree(v))
    agent.wait_for(
        lambda: agent.status()["uploading"] + agent.status()["done"] > 0, what="an upload to start"
    )
    assert agent.stop() == 0
    agent.start()
    agent.wait_idle()
    assert_mirrored(store, folder, "rel/", tmp_path)


def test_a_second_agent_refuses_to_start(agent: AgentProc, tmp_path: Path) -> None:
    agent.write_config(agent_config([]))
    agent.start()
    second = agent.cli("run", check=False)
    assert second.returncode != 0
    assert "already running" in second.stderr
    assert agent.status()["pid"] == agent.proc.pid  # type: ignore[union-attr]


def test_sigstop_while_5000_files_appear(agent: AgentProc, tmp_path: Path) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}], workers=4)
    )
    agent.start()
    agent.signal(signal.SIGSTOP)
    try:
        for n in range(5000):
            sub = folder / f"d{n % 10}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{n}.txt").write_text(f"file {n}\n")
    finally:
        agent.signal(signal.SIGCONT)
    status = agent.wait_idle(300)
    assert status["done"] == 5000 and status["failed"] == 0
    stored = [o for o in LocalStorage(root).list_objects("rel/")]
    assert len(stored) == 5000


def test_socket_is_private_and_survives_bad_input(agent: AgentProc, tmp_path: Path) -> None:
    agent.write_config(agent_config([]))
    agent.start()
    assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.socket.parent.stat().st_mode) == 0o700
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(agent.socket))
        f = s.makefile("rwb")
        f.write(b"{not json\n")
        f.flush()
        assert b"-32700" in f.readline()
        f.write(b"x" * (10 * 1024 * 1024) + b"\n")
        f.flush()
        assert b"-32600" in f.readline()
        f.write(b'{"jsonrpc":"2.0","id":7,"method":"status"}\n')
        f.flush()
        assert b'"id": 7' in f.readline().replace(b'"id":7', b'"id": 7')
    assert agent.status()["pid"]


def test_events_stream_and_replay(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, _ = s3_watch
    agent.start()
    with AgentClient(agent.socket, timeout=30) as client:
        client.subscribe()
        # One after the other: two first puts racing for reference.bin are another test's
        # subject, and moto's If-None-Match check is not atomic under concurrent PUTs (the
        # engine's after-check then stores the loser direct, which this test would misread).
        artifacts.write_zip(folder / "app-0.zip", artifacts.source_tree(0))
        seen: list[dict[str, Any]] = []
        for event in client.events(timeout=30):
            seen.append(event)
            done = len([e for e in seen if e["type"] == "file.stored"])
            if done == 1 and not (folder / "app-1.zip").exists():
                artifacts.write_zip(folder / "app-1.zip", artifacts.source_tree(1))
            if done == 2:
                break
    stored = {e["data"]["path"]: e["data"] for e in seen if e["type"] == "file.stored"}
    assert set(stored) == {"app-0.zip", "app-1.zip"}
    later = min(stored.values(), key=lambda d: int(d["stored_size"]))  # not the reference maker
    assert later["original_size"] > 10 * later["stored_size"] > 0
    seqs = [e["seq"] for e in seen if "seq" in e]
    assert seqs == sorted(seqs)
    with AgentClient(agent.socket, timeout=30) as late:
        late.subscribe(since=0)
        replayed = [e["type"] for e in late.events(timeout=1)]
    assert "file.stored" in replayed


def test_large_files_report_their_progress(agent: AgentProc, tmp_path: Path) -> None:
    """A file of a few MiB sends file.progress events (stage, bytes done of total) between
    file.uploading and file.stored; small files send none."""
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}]))
    agent.start()
    blob = random.Random(5).randbytes(6 * 1024 * 1024)
    with AgentClient(agent.socket, timeout=30) as client:
        client.subscribe()
        (folder / "small.txt").write_text("small\n")
        for v in range(2):
            tree = {**artifacts.source_tree(v), "pkg/data.bin": blob}
            artifacts.write_zip(folder / f"big-{v}.zip", tree, stored=(".bin",))
        seen: list[dict[str, Any]] = []
        for event in client.events(timeout=60):
            seen.append(event)
            if len([e for e in seen if e["type"] == "file.stored"]) == 3:
                break
    progress = [e["data"] for e in seen if e["type"] == "file.progress"]
    assert {p["path"] for p in progress} == {"big-0.zip", "big-1.zip"}
    stages = {
        name: [p for p in progress if p["path"] == name] for name in ("big-0.zip", "big-1.zip")
    }
    # Whichever of the two the agent takes first creates the DeltaSpace's reference (the two
    # settle close together, so either may); the other is encoded against it.
    first, second = sorted(
        stages, key=lambda name: "reference" not in [p["stage"] for p in stages[name]]
    )
    assert [p["stage"] for p in stages[first]][:2] == ["hashing", "reference"]
    assert "encoding" in [p["stage"] for p in stages[second]]
    assert "reference" not in [p["stage"] for p in stages[second]]
    uploads = [p for p in stages[first] if p["stage"] == "reference"]
    assert uploads[-1]["done"] == uploads[-1]["total"] == (folder / first).stat().st_size
    order = [e["type"] for e in seen if e.get("data", {}).get("path") == second]
    assert order.index("file.uploading") < order.index("file.progress")
    assert order.index("file.progress") < order.index("file.stored")


def test_watch_add_applies_to_a_running_agent_and_status_json(
    agent: AgentProc, tmp_path: Path
) -> None:
    agent.write_config(agent_config([]))
    agent.start()
    folder, root = tmp_path / "late", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    (folder / "a.txt").write_text("hello\n")
    agent.cli("watch", "add", str(folder), f"file://{root}/late/")
    agent.wait_for((root / "late" / "a.txt").exists, what="the new watch to sync")
    status = agent.wait_idle()
    listed = agent.cli("watch", "list", "--json").stdout
    assert str(folder) in listed
    doc = json.loads(agent.cli("status", "--json").stdout)
    for key in ("pid", "idle", "queued", "uploading", "done", "failed", "watches", "cache"):
        assert key in doc
    assert doc["bytes"]["original"] >= 6 and status["done"] == 1
    agent.cli("watch", "remove", str(folder))
    agent.wait_for(lambda: not agent.status()["watches"], what="the watch to go")


def test_deltaglider_reads_what_the_agent_stored(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path, bucket: str
) -> None:
    folder, _ = s3_watch
    agent.start()
    files = [
        artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v)) for v in range(3)
    ]
    agent.wait_idle()
    upstream = Path(sys.executable).parent / "deltaglider"
    env = dict(os.environ, HOME=str(tmp_path / "dg-home"))
    for f in files:
        out = tmp_path / "up" / f.name
        out.parent.mkdir(exist_ok=True)
        subprocess.run(
            [str(upstream), "cp", f"s3://{bucket}/rel/{f.name}", str(out)],
            env=env,
            check=True,
            capture_output=True,
        )
        assert sha(out) == sha(f)


def test_a_reconcile_of_unchanged_files_makes_no_s3_request(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path
) -> None:
    folder, _ = s3_watch
    for n in range(300):
        (folder / f"f{n:03d}.txt").write_text(f"file {n}\n")
    agent.start()
    before = agent.wait_idle()["requests"]["total"]
    assert before > 300  # the first scan stored them all
    agent.call("rescan")
    time.sleep(0.5)
    after = agent.wait_idle()
    assert after["requests"]["total"] == before
    assert after["done"] == 300
    assert all(w["last_scan"] for w in after["watches"])


def test_the_agent_stores_a_release_series_as_sync_does(
    agent: AgentProc, s3_watch: tuple[Path, DeltaStore], tmp_path: Path, bucket: str
) -> None:
    """Reference rotation depends on the order: the agent, with several workers and a folder
    of versions found all at once, stores them one at a time in release order, so it makes the
    same decisions (delta, new reference) as a cold sync of the same files."""
    from tests.engine.test_rotation import drifting_series  # noqa: PLC0415 (shared generator)

    folder, store = s3_watch
    series = drifting_series(tmp_path / "series", 12)
    for n, path in enumerate(series):  # mtimes in release order, names not (1.10 < 1.2)
        os.utime(path, (1_700_000_000 + 60 * n, 1_700_000_000 + 60 * n))
    agent.cli("sync", str(tmp_path / "series"), f"s3://{bucket}/synced/")
    for path in series:
        target = folder / path.name
        target.write_bytes(path.read_bytes())
        os.utime(target, (path.stat().st_mtime, path.stat().st_mtime))
    agent.start()
    status = agent.wait_idle()
    assert status["done"] == len(series) and status["failed"] == 0

    def whys(prefix: str) -> dict[str, str | None]:
        entries = store.list_files(prefix, recursive=True)
        return {e.key[len(prefix) :]: e.why for e in entries if isinstance(e, Entry)}

    synced, watched = whys("synced/"), whys("rel/")
    assert watched == synced
    assert sum(1 for w in watched.values() if (w or "").startswith("new reference")) >= 2
    assert_mirrored(store, folder, "rel/", tmp_path)


def test_browse_reads_one_page_of_metadata_and_says_when_its_summary_is_a_bound(
    agent: AgentProc, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """A first look at a folder HEADs only the page it shows: the summary counts the other
    pages' deltas at their stored size and says it is incomplete, until the cache knows them."""
    folder = tmp_path / "out"
    folder.mkdir()
    url = f"s3://{bucket}/rel/"
    agent.write_config(agent_config([{"dir": str(folder), "url": url}], endpoint=s3_endpoint))
    agent.start()
    for v in range(3):
        artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v))
    agent.wait_idle()
    first = agent.call("browse.list", {"url": url, "limit": 1})
    assert len(first["files"]) == 1 and first["files"][0]["original_size"] is not None
    assert first["summary"]["complete"] is False
    whole = agent.call("browse.list", {"url": url})
    assert whole["summary"]["complete"] is True
    originals = sum((folder / f"app-1.{v}.zip").stat().st_size for v in range(3))
    assert whole["summary"]["original_bytes"] == originals
    assert whole["summary"]["original_bytes"] > first["summary"]["original_bytes"]
    again = agent.call("browse.list", {"url": url, "limit": 1})  # the cache knows them now
    assert again["summary"] == whole["summary"]
