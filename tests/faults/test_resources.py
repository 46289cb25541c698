"""Resource faults: a full disk under the cache or the index, an unreadable file, many files."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgagent.engine.store import DeltaStore, Entry
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage
from tests import artifacts
from tests.agent.conftest import AgentProc, agent_config
from tests.faults import oracle

MIB = 1024 * 1024


def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    probe = Path(tempfile.mkdtemp(prefix="dgmnt"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            return f"this machine refuses tmpfs mounts ({done.stderr.decode().strip()})"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    finally:
        probe.rmdir()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 3 MiB tmpfs, unmounted by the test's end."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    mount = Path(tempfile.mkdtemp(prefix="dgdisk"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


def local_store(root: Path, tmp_path: Path) -> DeltaStore:
    return DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=tmp_path / "oc"))


def test_a_full_cache_disk_pauses_the_agent_until_space_is_back(
    agent: AgentProc, small_disk: Path, tmp_path: Path
) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.env["DG_CACHE_DIR"] = str(small_disk / "references")
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}]))
    agent.start()
    big_tree = {**artifacts.source_tree(0), "blob.bin": os.urandom(2 * MIB)}
    for v in range(3):
        tree = {**big_tree, "VERSION": f"{v}".encode()}
        artifacts.write_tar(folder / f"app-{v}.tar", tree)
    agent.wait_for(lambda: agent.status()["disk_full"] is not None, what="the disk to fill")
    status = agent.status()
    assert status["paused"] and status["failed"] == 0
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    status = agent.wait_idle(120)
    assert status["disk_full"] is None and status["failed"] == 0 and status["done"] == 3
    oracle.check(local_store(root, tmp_path), folder, "rel/", tmp_path)


def _fill(disk: Path) -> Path:
    """A filler file written until the disk refuses (ENOSPC): not one block is left free."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (MIB, 64 * 1024, 4096, 1):
            chunk = b"\xff" * size
            try:
                while os.write(fd, chunk) == size:
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


def _objects(root: Path) -> dict[str, tuple[int, int]]:
    """Every file of a local store with its (inode, mtime_ns): a rewrite (temp + rename) shows."""
    return {
        p.relative_to(root).as_posix(): (st.st_ino, st.st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
        for st in [p.stat()]
    }


def _write_small_files(folder: Path, names: range) -> None:
    for n in names:
        path = folder / f"d{n % 5}" / f"f{n:03d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"file {n}\n" * (1 + n % 7))


def test_a_full_state_disk_pauses_the_agent_until_space_is_back(
    agent: AgentProc, small_disk: Path, tmp_path: Path
) -> None:
    """The index (SQLite, WAL) on a disk that fills up while the agent stores a wave of files,
    then a burst arrives: the agent pauses, keeps answering, loses nothing, and resumes alone."""
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    # Room for the index while it works; freeing the filler gives back more than the 32 MiB
    # the agent waits for before it resumes.
    subprocess.run(["mount", "-o", "remount,size=48m", str(small_disk)], check=True)
    state = small_disk / "state"
    agent.env["DG_STATE_DIR"] = str(state)
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}]))
    agent.start()
    assert agent.proc is not None
    for v in range(3):
        artifacts.write_zip(folder / f"app-{v}.zip", artifacts.source_tree(v))
    _write_small_files(folder, range(60))
    agent.wait_for(lambda: agent.status()["done"] >= 3, 120, "the first files to be stored")
    filler = _fill(small_disk)  # while the rest of the first wave is being stored
    filled = time.monotonic()
    assert shutil.disk_usage(small_disk).free < 64 * 1024
    stored_before = agent.status()["done"]
    _write_small_files(folder, range(60, 360))  # the burst: the index's WAL must grow for it
    for v in range(3, 8):
        artifacts.write_zip(folder / f"app-{v}.zip", artifacts.source_tree(v))
    total = 8 + 360
    agent.wait_for(lambda: agent.status()["disk_full"] is not None, 120, "the pause")
    paused = time.monotonic()
    end = paused + 12  # more than two of the agent's looks at the free space
    store = local_store(root, tmp_path)
    while time.monotonic() < end:
        assert agent.proc.poll() is None, agent.log_text()
        status = agent.status()  # the socket keeps answering
        assert status["paused"] and "disk is full" in status["disk_full"]
        assert status["failed"] == 0 and not status["idle"]
        rows = agent.call("queue", {"state": "stored", "limit": 1000})["items"]
        in_store = {
            f"{root.as_posix().lstrip('/')}/{e.key}"  # the agent's keys are from / (file://)
            for e in store.list_files("rel/", recursive=True)
            if isinstance(e, Entry)
        }
        assert {r["key"] for r in rows} <= in_store, "a file is reported stored but is not"
        time.sleep(0.5)
    waiting = total - status["done"]  # queued or still settling when the space came back
    filler.unlink()
    freed = time.monotonic()
    status = agent.wait_idle(300)
    resumed = time.monotonic()
    assert status["disk_full"] is None and not status["paused"]
    assert status["failed"] == 0 and status["done"] == total
    assert agent.proc.poll() is None  # resumed by itself: the same process
    assert "Traceback" not in agent.logs[0].read_text()
    oracle.check(store, folder, "rel/", tmp_path, index=state / "index.db")
    print(
        f"disk full {paused - filled:.1f} s after the fill ({stored_before} of {total} stored); "
        f"paused {freed - paused:.1f} s with {waiting} files waiting; "
        f"idle {resumed - freed:.1f} s after the filler was deleted"
    )

    # A kill -9 and a restart send nothing again: no object rewritten, no transfer logged.
    objects = _objects(root)
    transfers = len(agent.call("transfers", {"limit": 10_000})["items"])
    agent.kill()
    agent.start()
    agent.call("rescan")
    time.sleep(1.0)
    status = agent.wait_idle(120)
    assert status["done"] == total and status["failed"] == 0 and status["disk_full"] is None
    assert _objects(root) == objects
    assert len(agent.call("transfers", {"limit": 10_000})["items"]) == transfers
    assert not any("Traceback" in log.read_text() for log in agent.logs)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_an_unreadable_file_fails_alone_and_recovers(agent: AgentProc, tmp_path: Path) -> None:
    """Root reads everything; the agent runs without the capabilities that let it."""
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    if os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        agent.prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--"]
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}]))
    locked = folder / "secret.txt"
    locked.write_text("top secret\n")
    locked.chmod(0)
    (folder / "open.txt").write_text("fine\n")
    agent.start()
    status = agent.wait_idle(60)
    assert status["done"] == 1 and status["failed"] == 1
    failed = agent.call("queue", {"state": "failed"})["items"]
    assert failed[0]["path"] == "secret.txt" and "ermission" in failed[0]["error"]
    locked.chmod(0o644)
    agent.call("retry", {"watch": str(folder), "path": "secret.txt"})
    status = agent.wait_idle(60)
    assert status["done"] == 2 and status["failed"] == 0
    # Made readable while the agent was down: its start-up scan sees the change and retries.
    later = folder / "later.txt"
    later.write_text("later\n")
    later.chmod(0)
    assert agent.wait_idle(60)["failed"] == 1
    agent.stop()
    later.chmod(0o644)
    agent.start()
    status = agent.wait_idle(60)
    assert status["done"] == 3 and status["failed"] == 0
    oracle.check(local_store(root, tmp_path), folder, "rel/", tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fifty_thousand_files_in_one_folder_within_an_rss_budget(
    agent: AgentProc, tmp_path: Path
) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    for n in range(50_000):
        (folder / f"f{n:05d}.txt").write_text(f"{n}\n")
    agent.write_config(
        agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}], workers=4)
    )
    agent.start()
    peak = 0
    start = time.monotonic()
    deadline = start + 1700
    while time.monotonic() < deadline:
        peak = max(peak, _rss_kib(agent))
        status = agent.status()
        if status["idle"] and status["done"] == 50_000:
            break
        print(
            f"{time.monotonic() - start:.0f} s: done {status['done']}, queued "
            f"{status['queued']}, settling {status['settling']}, RSS {peak // 1024} MiB"
        )
        time.sleep(1.0)
    print(f"50,000 files stored; agent peak RSS {peak // 1024} MiB")
    assert agent.status()["done"] == 50_000
    assert peak < 300 * 1024, f"peak RSS {peak // 1024} MiB"


def _rss_kib(agent: AgentProc) -> int:
    assert agent.proc is not None
    for line in Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
