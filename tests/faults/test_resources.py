"""Resource faults: a full disk under the cache, an unreadable file, many files at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgagent.engine.store import DeltaStore
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
