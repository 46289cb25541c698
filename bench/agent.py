"""The agent's figures, measured on a real ``dg-agent run`` process with private XDG dirs.

- landing → stored: a file is written into a watched folder (the clock starts when it is closed)
  until the agent's ``file.stored`` event (its own timestamp); a burst of small files, then a
  ~20 MB artifact series landed one version at a time. The settle window is included: it is
  the product's default, shown in the table.
- reconcile: ``rescan`` of N unchanged stored files, until every ``scan.finished`` event and an
  idle agent; S3 requests are the change of ``status.requests.total``.
- idle: RSS (``VmRSS``) and CPU (``utime + stime`` of ``/proc/<pid>/stat``) over a quiet window
  with those N files watched.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.corpus import Family, synthetic_series
from bench.measure import median, percentile
from bench.servers import BIN
from dgagent.agent.config import AgentSection
from dgagent.rpc import AgentClient

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Agent:
    """One ``dg-agent run`` process; stopped by its pid."""

    home: Path
    env: dict[str, str]
    runtime: Path
    proc: subprocess.Popen[bytes] | None = None
    stored: dict[str, float] = field(default_factory=dict)
    """``watch/path`` → wall-clock time of its ``file.stored`` event."""
    working: dict[str, float] = field(default_factory=dict)
    """``watch/path`` → the event's ``seconds``: the worker's time on it (the put itself)."""
    scans: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: AgentClient | None = None

    @property
    def socket(self) -> Path:
        return self.runtime / "dg-agent" / "agent.sock"

    def start(self, config: str) -> None:
        path = self.home / "config" / "dg-agent" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config)
        with (self.home / "agent.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "dg-agent"), "run"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log()}")
            try:
                self.call("status")
                break
            except Exception:  # noqa: BLE001 (not up yet)
                time.sleep(0.1)
        else:
            raise RuntimeError(f"agent did not answer: {self.log()}")
        self._listener = AgentClient(self.socket, timeout=30)
        self._listener.connect()
        self._listener.subscribe()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        assert self._listener is not None
        try:
            for event in self._listener.events():
                data = event.get("data") or {}
                when = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
                with self._lock:
                    if event["type"] == "file.stored":
                        self.stored[f"{data['watch']}/{data['path']}"] = when
                        self.working[f"{data['watch']}/{data['path']}"] = data.get("seconds", 0)
                    elif event["type"] == "scan.finished":
                        self.scans.append({**data, "at": time.time()})
        except Exception:  # noqa: BLE001 (the agent stopped)
            return

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with AgentClient(self.socket, timeout=60) as client:
            return client.call(method, params or {})

    def wait_idle(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            status: dict[str, Any] = self.call("status")
            streak = streak + 1 if status["idle"] else 0
            if streak >= 2:
                return status
            time.sleep(0.25)
        raise RuntimeError(f"agent not idle after {timeout} s")

    def wait_stored(self, keys: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(k in self.stored for k in keys):
                    return
            time.sleep(0.02)
        missing = [k for k in keys if k not in self.stored]
        raise RuntimeError(f"not stored after {timeout} s: {missing[:5]}\n{self.log()}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB (KiB) → MB
        return 0.0

    def log(self) -> str:
        path = self.home / "agent.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.runtime, ignore_errors=True)


def _land(src: Path, dest: Path) -> float:
    """Write ``src`` into the watched folder as a build would; the time it was closed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dest.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return time.time()


def _many_files(root: Path, count: int) -> None:
    rng = random.Random(10_000)
    for i in range(count):
        path = root / f"d{i // 100:03d}" / f"note-{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(200, 4000)))


def _burst_files(ctx: Context, count: int) -> list[Path]:
    """``count`` successive versions of a synthetic ~1 MB tar (one DeltaSpace)."""
    return synthetic_series(ctx.fresh("burst-src"), versions=count, size=1_000_000, seed=11)


def _artifact_series(ctx: Context, versions: int) -> tuple[list[Path], str]:
    """About 20 MB versions: a corpus family of that size when there is one, else synthetic."""
    fams: list[Family] = [
        f
        for f in ctx.families
        if 15e6 <= f.original / len(f.files) <= 30e6 and ".tar" in f.newest.name
    ]
    if fams and not fams[0].newest.name.endswith(".gz"):
        return list(fams[0].files[:versions]), fams[0].name
    files = synthetic_series(ctx.fresh("artifact-src"), versions=versions, size=20_000_000)
    return files, "synthetic tar"


@dataclass(frozen=True)
class Plan:
    """How much the agent section does (``--quick`` does less, and the table says so)."""

    many: int
    idle_seconds: int
    burst: int
    versions: int

    @classmethod
    def of(cls, quick: bool) -> Plan:
        return cls(1_000, 20, 12, 4) if quick else cls(10_000, 60, 24, 6)


def _environment(ctx: Context, home: Path, runtime: Path) -> dict[str, str]:
    env = ctx.env(home / "cache" / "references")
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_RUNTIME_DIR=str(runtime),
        DG_LOG_LEVEL="WARNING",
    )
    env.pop("NOTIFY_SOCKET", None)
    return env


def _burst(ctx: Context, agent: Agent, folder: Path, count: int) -> dict[str, Any]:
    files = _burst_files(ctx, count)
    landed = {f"{folder}/{p.name}": _land(p, folder / p.name) for p in files}
    agent.wait_stored(list(landed), timeout=600)
    lat = [agent.stored[k] - t for k, t in landed.items()]
    work = [agent.working[k] for k in landed]
    return {
        "files": count,
        "bytes_each": files[0].stat().st_size,
        "median": median(lat),
        "p95": percentile(lat, 95),
        "samples": lat,
        "put_median": median(work),
        "put_samples": work,
    }


def _artifact(agent: Agent, folder: Path, series: list[Path], origin: str) -> dict[str, Any]:
    lat, work = [], []
    for p in series:
        key = f"{folder}/{p.name}"
        t = _land(p, folder / p.name)
        agent.wait_stored([key], timeout=600)
        lat.append(agent.stored[key] - t)
        work.append(agent.working[key])
    return {
        "origin": origin,
        "versions": len(series),
        "bytes_each": int(median([p.stat().st_size for p in series]) or 0),
        "median": median(lat),
        "median_deltas": median(lat[1:]),
        "first": lat[0],
        "samples": lat,
        "put_median": median(work),
        "put_samples": work,
    }


def _reconcile(agent: Agent, watches: int, files: int) -> dict[str, Any]:
    before = agent.wait_idle(timeout=120)["requests"]["total"]
    scans_before = len(agent.scans)
    start = time.perf_counter()
    agent.call("rescan")
    deadline = time.monotonic() + 600
    while len(agent.scans) < scans_before + watches and time.monotonic() < deadline:
        time.sleep(0.01)
    scanned = time.perf_counter() - start
    status = agent.wait_idle(timeout=600)
    scans = agent.scans[scans_before:]
    return {
        "files": files,
        "seconds": scanned,
        "scan_seconds": {s["watch"]: s.get("seconds") for s in scans},
        "changed": sum(s.get("changed", 0) for s in scans),
        "s3_requests": status["requests"]["total"] - before,
        "requests_since_start": status["requests"],
    }


def _idle(agent: Agent, seconds: int) -> dict[str, Any]:
    time.sleep(2)
    cpu0, t0 = agent.cpu_seconds(), time.monotonic()
    rss = [agent.rss_mb()]
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        rss.append(agent.rss_mb())
    wall = time.monotonic() - t0
    return {
        "seconds": wall,
        "rss_mb": rss[-1],
        "rss_mb_max": max(rss),
        "cpu_percent": 100 * (agent.cpu_seconds() - cpu0) / wall,
    }


def measure(ctx: Context, log: Any) -> dict[str, Any]:
    plan = Plan.of(ctx.quick)
    home = ctx.fresh("agent-home")
    runtime = Path(tempfile.mkdtemp(prefix="dgb", dir="/tmp"))  # AF_UNIX paths are short
    bucket = ctx.bucket("agent")
    dirs = {name: ctx.fresh(f"watch-{name}") for name in ("many", "burst", "artifact")}
    log(f"agent: writing {plan.many:,} files to watch")
    _many_files(dirs["many"], plan.many)
    config = f'[s3]\nendpoint_url = "{ctx.s3.endpoint}"\nchecksum_when_required = true\n' + "".join(
        f'[[watch]]\ndir = "{d}"\nurl = "s3://{bucket}/{name}/"\n' for name, d in dirs.items()
    )
    agent = Agent(home, _environment(ctx, home, runtime), runtime)
    defaults = AgentSection()
    result: dict[str, Any] = {
        "settle_seconds": defaults.settle_seconds,
        "workers": defaults.workers,
        "files_watched": plan.many,
        "watches": len(dirs),
        "idle_window_seconds": plan.idle_seconds,
    }
    try:
        log(f"agent: storing {plan.many:,} files (initial scan)")
        start = time.perf_counter()
        agent.start(config)
        agent.wait_idle(timeout=1800)
        result["initial_store_seconds"] = time.perf_counter() - start
        log(f"agent: burst of {plan.burst} files")
        result["burst"] = _burst(ctx, agent, dirs["burst"], plan.burst)
        series, origin = _artifact_series(ctx, plan.versions)
        log(f"agent: {len(series)} versions of a ~20 MB artifact ({origin}), one at a time")
        result["artifact"] = _artifact(agent, dirs["artifact"], series, origin)
        total = plan.many + plan.burst + len(series)
        log(f"agent: reconcile of {total:,} unchanged files")
        result["reconcile"] = _reconcile(agent, len(dirs), total)
        log(f"agent: idle for {plan.idle_seconds} s with {plan.many:,} files watched")
        result["idle"] = _idle(agent, plan.idle_seconds)
    finally:
        agent.stop()
    return result
