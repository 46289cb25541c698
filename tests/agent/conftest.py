"""A real agent process per test: `dg-agent run` with its own config, state, cache and runtime
dirs, talked to over its socket, and stopped by its pid at the end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dgagent.rpc import AgentClient

DG_AGENT = Path(sys.executable).parent / "dg-agent"


@dataclass
class AgentProc:
    """One agent process and its private directories."""

    home: Path
    runtime: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)
    """Run the agent under this command (e.g. setpriv to drop root's file capabilities)."""

    @property
    def config(self) -> Path:
        return self.home / "config" / "dg-agent" / "config.toml"

    @property
    def socket(self) -> Path:
        return self.runtime / "dg-agent" / "agent.sock"

    def write_config(self, text: str) -> None:
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(  # noqa: PLW1510 (checked below, with the output)
            [str(DG_AGENT), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"dg-agent {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done

    def start(self) -> None:
        log = self.home / f"agent-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, str(DG_AGENT), "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited: {log.read_text()}")
            try:
                self.call("status")
                return
            except Exception:  # noqa: BLE001 (not up yet)
                time.sleep(0.1)
        raise AssertionError(f"agent did not answer: {log.read_text()}")

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with AgentClient(self.socket, timeout=30) as client:
            return client.call(method, params or {})

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")
        return result

    def wait_idle(self, timeout: float = 60.0) -> dict[str, Any]:
        """Until the agent reports idle twice in a row (nothing settling, queued or running)."""
        deadline = time.monotonic() + timeout
        streak = 0
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status()
            streak = streak + 1 if status["idle"] else 0
            if streak >= 2:
                return status
            time.sleep(0.25)
        raise AssertionError(f"agent not idle after {timeout} s: {status}\n{self.log_text()}")

    def wait_for(self, check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.log_text()}")

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.logs if p.exists())

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def agent_config(
    watches: list[dict[str, Any]],
    *,
    endpoint: str | None = None,
    settle: float = 0.4,
    reconcile: float = 3600,
    workers: int = 2,
) -> str:
    lines = [
        "[agent]",
        f"settle_seconds = {settle}",
        f"reconcile_interval = {reconcile}",
        f"workers = {workers}",
        "drain_timeout = 30",
    ]
    if endpoint:
        lines += ["[s3]", f'endpoint_url = "{endpoint}"', "checksum_when_required = true"]
    for w in watches:
        lines.append("[[watch]]")
        for key, value in w.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, list):
                lines.append(f"{key} = [{', '.join(repr(v) for v in value)}]".replace("'", '"'))
            else:
                lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProc]:
    # AF_UNIX paths are short: keep the runtime dir directly under /tmp.
    runtime = Path(tempfile.mkdtemp(prefix="dga", dir="/tmp"))
    home = tmp_path / "agent-home"
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_RUNTIME_DIR=str(runtime),
        DG_CACHE_DIR=str(home / "cache" / "references"),
        DG_LOG_LEVEL="INFO",
    )
    for var in ("DG_CONFIG", "DG_STATE_DIR", "DG_RUNTIME_DIR", "NOTIFY_SOCKET"):
        env.pop(var, None)
    proc = AgentProc(home, runtime, env)
    try:
        yield proc
    finally:
        proc.kill()
        shutil.rmtree(runtime, ignore_errors=True)
