"""The demo as a new user meets it: ``python -m dgagent.demo DIR``, then what the README says next
(``source DIR/env.sh && dg-agent status`` from another folder, ``--stop``), a second run, and the
folders it must refuse. Each agent the demo starts is stopped by its pid at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dgagent.demo import demo_environment
from dgagent.rpc import AgentClient, AgentNotRunning

# One version (a zip, a tar, the release notes) keeps each run to a few seconds.
QUICK = ("--versions", "1")
# By its full path where a test is about something else than env.sh's PATH.
DG_AGENT = Path(sys.executable).parent / "dg-agent"
# What a new user's shell has: no virtualenv on PATH, so env.sh must bring dg-agent.
BARE_PATH = "/usr/bin:/bin"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is
    return state != "Z"


def wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Demo:
    """The demo's work folder, and the pids of the agents it started there."""

    work: Path
    pids: set[int] = field(default_factory=set)

    @property
    def runtime(self) -> Path:
        return Path(demo_environment(self.work)["XDG_RUNTIME_DIR"])

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The demo, run from a folder that is not the checkout; notes the pid of its agent."""
        done = subprocess.run(  # noqa: PLW1510 (each test checks the exit code)
            [sys.executable, "-m", "dgagent.demo", *args, str(self.work)],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=180,
        )
        pid = self.agent_pid()
        if pid is not None:
            self.pids.add(pid)
        return done

    def agent_pid(self) -> int | None:
        try:
            with AgentClient(self.runtime / "dg-agent" / "agent.sock", timeout=10) as client:
                return int(client.call("status")["pid"])
        except AgentNotRunning:
            return None

    def files(self) -> list[tuple[Path, int]]:
        """What the demo wrote and stored: each file with its mtime."""
        found = [*(self.work / "releases").rglob("*"), *(self.work / "store").rglob("*")]
        return sorted((p, p.stat().st_mtime_ns) for p in found if p.is_file())

    def shell(self, script: str) -> subprocess.CompletedProcess[str]:
        """``script`` in a bash with a bare PATH, after sourcing the demo's env.sh."""
        env = {**os.environ, "PATH": BARE_PATH}
        return subprocess.run(  # noqa: PLW1510 (each test checks the exit code)
            ["bash", "-c", f'source "{self.work}/env.sh" && {script}'],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    made = Demo(tmp_path / "demo-out")
    try:
        yield made
    finally:
        pid = made.agent_pid()
        for running in made.pids | ({pid} if pid is not None else set()):
            if alive(running):
                os.kill(running, signal.SIGTERM)
                if not wait_gone(running):
                    os.kill(running, signal.SIGKILL)
        shutil.rmtree(made.runtime, ignore_errors=True)


def test_env_sh_brings_dg_agent_to_any_folder(demo: Demo) -> None:
    first = demo.run(*QUICK)
    assert first.returncode == 0, first.stdout + first.stderr
    pid = demo.agent_pid()
    assert pid is not None

    status = demo.shell("cd / && dg-agent status")

    assert status.returncode == 0, status.stdout + status.stderr
    assert f"pid {pid}" in status.stdout
    assert str(demo.work / "releases") in status.stdout


def test_stop_only_stops_the_agent(demo: Demo) -> None:
    assert demo.run(*QUICK).returncode == 0
    pid = demo.agent_pid()
    assert pid is not None
    before = demo.files()

    stop = demo.run("--stop")

    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"stopped the demo agent (pid {pid})" in stop.stdout
    assert "wrote" not in stop.stdout
    assert wait_gone(pid)
    assert demo.files() == before

    again = demo.run("--stop")

    assert again.returncode == 0
    assert again.stdout.strip() == (
        f"demo: no demo agent is running for {demo.work}, so there is nothing to stop"
    )


def test_second_run_keeps_an_added_watch(demo: Demo, tmp_path: Path) -> None:
    assert demo.run(*QUICK).returncode == 0
    first = demo.agent_pid()
    assert first is not None
    extra, extra_store = tmp_path / "extra", tmp_path / "extra-store"
    extra.mkdir()
    extra_store.mkdir()
    added = demo.shell(f'"{DG_AGENT}" watch add "{extra}" "file://{extra_store}/"')
    assert added.returncode == 0, added.stdout + added.stderr

    second = demo.run(*QUICK)

    assert second.returncode == 0, second.stdout + second.stderr
    listed = demo.shell(f'"{DG_AGENT}" watch list --json')
    watches = {w["dir"] for w in json.loads(listed.stdout)["watches"]}
    assert watches == {str(extra), str(demo.work / "releases")}
    assert f"stopping the demo agent an earlier run left running (pid {first})" in second.stdout
    assert wait_gone(first)
    # The rewritten release went into the emptied store again (the index did not call it done).
    stored = demo.work / "store" / "releases"
    assert (stored / "reference.bin").is_file()
    assert (stored / "RELEASE-NOTES.txt").read_text() == "app 1.0.0: fixes\n"


def test_a_folder_that_cannot_be_written_is_one_sentence(demo: Demo, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    demo.work = blocker / "demo-out"  # writable by no one, root included

    done = demo.run(*QUICK)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"demo: cannot write to {demo.work} (")
    assert done.stderr.count("\n") == 1
    assert blocker.read_text() == "not a folder"


def test_a_folder_of_the_users_own_is_refused(demo: Demo) -> None:
    mine = demo.work / "store" / "my-file.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("keep me")

    done = demo.run(*QUICK)

    assert done.returncode == 1
    assert done.stderr.startswith(f"demo: {demo.work} is neither empty nor an earlier demo's")
    assert done.stderr.count("\n") == 1
    assert mine.read_text() == "keep me"
    assert sorted(p.name for p in demo.work.iterdir()) == ["store"]
