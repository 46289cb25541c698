"""The agent process: one coordinator loop wiring watch → settle → plan → workers → engine.

``Agent.run`` is what ``dg-agent run`` calls (in the foreground, for service managers). It holds a
lock so only one agent runs per user, serves the socket API, and loops: it turns watch hints into
settle candidates, runs requested reconcile scans (at start, on a schedule, and whenever events may
have been lost), and queues settled files for the workers. SIGTERM drains in-flight work; SIGHUP
reloads the config.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import shutil
import signal
import stat
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from dgagent import __version__
from dgagent.agent import config as config_file
from dgagent.agent.config import AgentConfig
from dgagent.agent.events import EventBus
from dgagent.agent.index import Index
from dgagent.agent.notify import sd_notify, watchdog_interval
from dgagent.agent.paths import AgentPaths
from dgagent.agent.pipeline import Pipeline
from dgagent.agent.rpc import handlers
from dgagent.agent.server import RpcServer
from dgagent.agent.watcher import Watcher
from dgagent.agent.workers import Target, Workers
from dgagent.cli.paths import folder_prefix
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.store import DeltaStore
from dgagent.errors import ConfigError, DgError, disk_full
from dgagent.settings import EngineSettings, from_env
from dgagent.storage import S3Storage, parse_location

log = logging.getLogger(__name__)


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()

TICK = 0.2
TIME_JUMP = 5.0
"""A tick this late means the process was stopped or the machine slept: scan."""
DISK_RECHECK = 5.0
IDLE_CHECK = 2.0
DISK_FREE_TO_RESUME = 32 * 1024 * 1024


class AlreadyRunningError(DgError):
    """Another agent holds the lock."""


class Agent:
    def __init__(self, paths: AgentPaths, config: AgentConfig | None = None) -> None:
        self.paths = paths
        self.config = config or config_file.load(paths.config_file)
        self.settings: EngineSettings = from_env()
        self.cache = ReferenceCache(
            self.settings.cache_dir, max_bytes=self.settings.cache_max_bytes
        )
        self.bus = EventBus()
        self.watcher = Watcher()
        self.started = time.time()
        self.paused_watches: set[str] = set()
        self.paused_all = False
        self.disk_full: str | None = None
        """Why uploads are paused for lack of space (None: they are not)."""
        self._disk_full_at = 0.0
        self._targets: dict[str, Target] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._lock_fd: int | None = None
        self.index: Index
        self.workers: Workers
        self.pipeline: Pipeline

    @property
    def notes(self) -> dict[str, str]:
        """Per watch: the last permanent error or refused delete, for status."""
        return self.pipeline.notes

    # ----------------------------------------------------------- lifecycle

    def acquire_lock(self) -> None:
        runtime = self.paths.runtime_dir
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(runtime)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise ConfigError(
                f"the runtime folder {runtime} is not a folder owned by you; remove it or set "
                "XDG_RUNTIME_DIR to a private folder"
            )
        os.chmod(runtime, 0o700)
        self.paths.check_socket_length()
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunningError(f"dg-agent is already running (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or a shutdown request; returns the exit code."""
        self.acquire_lock()
        self.index = Index(self.paths.index)
        requeued = self.index.requeue_interrupted()
        if requeued:
            log.info("resuming %d operations interrupted by the last stop", requeued)
        self.pipeline = Pipeline(
            self.index,
            self.bus,
            self.watcher,
            config=lambda: self.config,
            targets=self.targets,
            wake_workers=lambda: self.workers.wake(),  # noqa: PLW0108 (workers come later)
        )
        self._apply(self.config)
        self._abort_orphan_uploads()
        self.workers = Workers(
            self.index,
            self.bus,
            targets=lambda: self._targets,
            paused=self.paused,
            count=self.config.agent.workers,
            settle_seconds=self.config.agent.settle_seconds,
            on_permanent=self._note,
            on_disk_full=self._on_disk_full,
        )
        server = RpcServer(
            self.paths.socket,
            handlers(self),
            self.bus,
            info={
                "agent": __version__,
                "pid": os.getpid(),
                "started": self.started,
                "instance": uuid.uuid4().hex,
            },
        )
        server.start()
        self._install_signals()
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            self.request_scan, "interval", seconds=self.config.agent.reconcile_interval
        )
        scheduler.start()
        self.workers.start()
        self.request_scan(None)
        sd_notify(f"READY=1\nSTATUS=watching {len(self._targets)} folders\nMAINPID={os.getpid()}")
        self.bus.publish("agent.started", {"pid": os.getpid(), "watches": list(self._targets)})
        log.info(
            "dg-agent %s (pid %d) listening on %s; watching %s",
            __version__,
            os.getpid(),
            self.paths.socket,
            ", ".join(self._targets) or "nothing yet",
        )
        try:
            self._loop()
        finally:
            sd_notify("STOPPING=1")
            self.bus.publish("agent.stopping", {})
            scheduler.shutdown(wait=False)
            self.watcher.stop()
            drained = self.workers.drain(self.config.agent.drain_timeout)
            if not drained:
                log.warning("stopping with uploads still running; they are redone at next start")
            server.stop()
            self.index.close()
            self._release_lock()
            log.info("dg-agent stopped")
        return 0

    def _abort_orphan_uploads(self) -> None:
        """Multipart uploads a killed agent left behind: everything started before this start."""
        before = datetime.fromtimestamp(self.started, tz=UTC)
        for target in self.targets().values():
            storage = target.store.storage
            if not isinstance(storage, S3Storage):
                continue
            try:
                keys = storage.abort_stale_uploads(target.prefix, before)
            except DgError as exc:
                log.warning(
                    "could not look for unfinished uploads in %s: %s", target.watch.url, exc
                )
                continue
            if keys:
                log.info(
                    "aborted %d unfinished multipart uploads in %s", len(keys), target.watch.url
                )

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def _install_signals(self) -> None:
        def on_term(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set():
                os._exit(1)  # a second signal: the user wants out now
            self._stop.set()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._reload.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)

    # -------------------------------------------------------------- config

    def _apply(self, config: AgentConfig) -> None:
        """Build the targets of the configured watches and (re)watch their roots."""
        targets: dict[str, Target] = {}
        for watch in config.watches:
            location = parse_location(watch.url, config.s3.options(), shared_client=True)
            store = DeltaStore(location.storage, settings=self.settings, cache=self.cache)
            targets[watch.name] = Target(watch, store, folder_prefix(location.key))
        removed = set(self._targets) - set(targets)
        with self._lock:
            self.config = config
            self._targets = targets
        for name in removed:
            self.index.forget_watch(name)
            self.notes.pop(name, None)
        self.watcher.watch({name: t.watch.dir for name, t in targets.items()})

    def reload(self) -> None:
        try:
            config = config_file.load(self.paths.config_file)
        except DgError as exc:
            log.error("config not reloaded: %s", exc)
            self.bus.publish("agent.error", {"error": str(exc)})
            return
        self._apply(config)
        self.request_scan(None)
        self.bus.publish("config.reloaded", {"watches": list(self._targets)})

    def targets(self) -> dict[str, Target]:
        with self._lock:
            return dict(self._targets)

    def paused(self) -> set[str]:
        if self.paused_all or self.disk_full:
            return set(self._targets)
        return set(self.paused_watches)

    def _on_disk_full(self, message: str) -> None:
        """Stop taking work until there is space again, rather than failing every file."""
        with self._lock:
            first = self.disk_full is None
            self.disk_full = message
            self._disk_full_at = time.monotonic()
        if first:
            log.error("pausing: %s; uploads resume once space is freed", message)
            self.bus.publish("agent.paused", {"watch": None, "reason": f"disk full: {message}"})

    def _check_disk_space(self) -> None:
        if self.disk_full is None or time.monotonic() - self._disk_full_at < DISK_RECHECK:
            return
        folders = (self.settings.cache_dir.parent, self.paths.state_dir)
        free = min(shutil.disk_usage(f).free for f in folders if f.exists())
        if free >= DISK_FREE_TO_RESUME:
            log.info("disk space is back (%d MiB free); resuming", free // 2**20)
            self.disk_full = None
            self.bus.publish("agent.resumed", {"watch": None, "reason": "disk space is back"})
            # Whatever the full index could not record (a queued file, new times) is found again.
            self.request_scan(None)
            self.workers.wake()
        else:
            self._disk_full_at = time.monotonic()

    def _note(self, watch: str, message: str) -> None:
        self.notes[watch] = message

    # ---------------------------------------------------------------- loop

    def request_scan(self, watch: str | None = None, delay: float = 0.0) -> None:
        """Ask for a reconcile of one watch (or all) at the next tick after ``delay``."""
        self.pipeline.request_scan(watch, delay)

    def _loop(self) -> None:
        last = time.monotonic()
        last_roots = 0.0
        ping = watchdog_interval()
        last_ping = 0.0
        last_idle_check = 0.0
        was_idle = False
        while not self._stop.wait(TICK):
            now = time.monotonic()
            if now - last_idle_check > IDLE_CHECK:
                last_idle_check = now
                idle = self.idle()
                if idle and not was_idle:
                    self._trim()
                was_idle = idle
            if now - last > TIME_JUMP:
                log.info("the agent was paused for %.0f s; scanning for missed changes", now - last)
                self.request_scan(None)
            last = now
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            if now - last_roots > 2.0:
                last_roots = now
                self._supervise_watcher()
            try:
                # Checked first: a tick that fails on the full disk must not keep it from resuming.
                self._check_disk_space()
                self.pipeline.tick(hold=self.disk_full is not None)
            except Exception as exc:  # the loop must outlive a full disk or a bug in one tick
                if disk_full(exc):
                    self._on_disk_full(str(exc))
                else:
                    log.exception("error in the agent loop; continuing")
            if ping is not None and now - last_ping > ping and self._healthy():
                sd_notify("WATCHDOG=1")
                last_ping = now

    @staticmethod
    def _trim() -> None:
        """Give memory freed by a burst back to the system once the agent goes idle.

        glibc keeps freed heap in its arenas; after storing thousands of files that is tens of
        MB an idle agent would hold for nothing.
        """
        if _LIBC is not None:
            _LIBC.malloc_trim(0)

    def _healthy(self) -> bool:
        return self.watcher.alive() or not self._targets

    def _supervise_watcher(self) -> None:
        roots = {name: t.watch.dir for name, t in self.targets().items()}
        if (self.watcher.stale() or not self.watcher.alive()) and self.watcher.watch(roots):
            self.bus.publish("watch.state", dict(self.watcher.states))
            self.request_scan(None)

    # -------------------------------------------------------------- status

    def idle(self) -> bool:
        counts = self.index.counts()
        return (
            not counts.get("queued")
            and not counts.get("uploading")
            and self.workers.active == 0
            and not self.pipeline.busy()
        )

    def status(self) -> dict[str, Any]:
        counts = self.index.counts()
        totals = self.index.totals()
        watches = []
        for name, target in self.targets().items():
            t = totals.get(name, {"files": 0, "original": 0, "stored": 0})
            watches.append(
                {
                    "dir": name,
                    "url": target.watch.url,
                    "delete": target.watch.delete,
                    "state": "paused"
                    if name in self.paused()
                    else self.watcher.states.get(name, "?"),
                    "note": self.notes.get(name),
                    "last_scan": self.pipeline.last_scan.get(name),
                    **t,
                }
            )
        requests: Counter[str] = Counter()
        # Buckets on one endpoint share a client, and so its counter: count each counter once.
        counters = {
            id(c): c
            for t in self.targets().values()
            if (c := getattr(t.store.storage, "requests", None)) is not None
        }
        for counter in counters.values():
            requests.update(counter)
        original = sum(t["original"] for t in totals.values())
        stored = sum(t["stored"] for t in totals.values())
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started": self.started,
            "uptime": round(time.time() - self.started, 1),
            "idle": self.idle(),
            "paused": self.paused_all or self.disk_full is not None,
            "disk_full": self.disk_full,
            "scanning": self.pipeline.scanning,
            "settling": len(self.pipeline.settler),
            "queued": counts.get("queued", 0),
            "uploading": counts.get("uploading", 0),
            "done": counts.get("stored", 0),
            "failed": counts.get("failed", 0),
            "retrying": self.index.retrying(),
            "watches": watches,
            "cache": {"hits": self.cache.hits, "misses": self.cache.misses},
            "bytes": {"original": original, "stored": stored, "saved": original - stored},
            "config": str(self.paths.config_file),
            "requests": {"total": sum(requests.values()), **requests},
        }
