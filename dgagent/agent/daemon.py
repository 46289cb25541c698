"""The agent process: one coordinator loop wiring watch → settle → plan → workers → engine.

``Agent.run`` is what ``dg-agent run`` calls (in the foreground, for service managers). It holds a
lock so only one agent runs per user, serves the socket API, and loops: it turns watch hints into
settle candidates, runs requested reconcile scans (at start, on a schedule, and whenever events may
have been lost), and queues settled files for the workers. SIGTERM drains in-flight work; SIGHUP
reloads the config.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from dgagent.agent import config as config_file
from dgagent.agent.config import AgentConfig
from dgagent.agent.disk import DiskPause
from dgagent.agent.index import Index
from dgagent.agent.lock import AlreadyRunningError, InstanceLock
from dgagent.agent.memory import trim
from dgagent.agent.notify import sd_notify, watchdog_interval
from dgagent.agent.pipeline import Pipeline
from dgagent.agent.problems import (
    Problem,
    check_store,
    failures,
    layout_advice,
    prerequisites,
)
from dgagent.agent.retention import prune_watch
from dgagent.agent.targets import abort_orphan_uploads, build_targets
from dgagent.agent.watcher import Watcher
from dgagent.agent.workers import Target, Workers
from dgagent.engine.cache import ReferenceCache
from dgagent.errors import DgError, ToolMissingError, disk_full
from dgagent.rpc.events import EventBus
from dgagent.rpc.jsonrpc import Handler
from dgagent.rpc.paths import AgentPaths
from dgagent.rpc.protocol import EventType
from dgagent.rpc.records import AgentError, AgentStarted, Nothing, PruneFinished, WatchNames
from dgagent.rpc.server import RpcServer
from dgagent.settings import EngineSettings, from_env
from dgagent.version import __version__

__all__ = ["Agent", "AlreadyRunningError"]

log = logging.getLogger(__name__)

TICK = 0.2
TIME_JUMP = 5.0
"""A tick this late means the process was stopped or the machine slept: scan."""
IDLE_CHECK = 2.0
ADVICE_EVERY = 5.0
"""Least seconds between recomputations of the layout advice (a scan of every stored file:
0.2 s at 50,000), done only when files were stored since, not at every status poll."""


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
        self.disk = DiskPause(
            self.bus,
            (self.settings.cache_dir.parent, self.paths.state_dir),
            on_resume=self._on_disk_space,
        )
        self._targets: dict[str, Target] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._instance_lock = InstanceLock(paths)
        self.stores_checked = False
        """Whether each watch's store has been checked once since start (``start`` waits)."""
        self.checked: dict[str, Problem] = {}
        """Problems found by checks (the config's last reload, each watch's store), by what
        was checked; status adds those the index shows (problems.py)."""
        self._advice: tuple[float, int, list[Problem]] = (0.0, -1, [])
        """When the layout advice was last computed, over how many stored files, and what it
        said (problems())."""
        self._declined: dict[str, set[tuple[str, ...]]] = {}
        """Per watch: the reference retirements its retention found not worth it (prune.py),
        so that the next rounds do not re-encode the same files to find the same."""
        self.index: Index
        self.workers: Workers
        self.pipeline: Pipeline

    @property
    def notes(self) -> dict[str, str]:
        """Per watch: the last permanent error or refused delete, for status."""
        return self.pipeline.notes

    # ----------------------------------------------------------- lifecycle

    def acquire_lock(self) -> None:
        self._instance_lock.acquire()

    def run(self, handlers: Mapping[str, Handler]) -> int:
        """Serve ``handlers`` (rpc.handlers: the socket API) until SIGTERM/SIGINT or a shutdown
        request; returns the exit code."""
        for missing in prerequisites():
            # Every delta would fail: refuse to start rather than fail each file in a log.
            raise ToolMissingError(f"{missing.problem} ({missing.fix})")
        self.acquire_lock()
        self.index = Index(self.paths.index)
        requeued = self.index.requeue_interrupted()
        if requeued:
            log.info("resuming %d operations interrupted by the last stop", requeued)
        retried = self.index.retry_failed()
        if retried:
            log.info("retrying %d files that failed before this start", retried)
        self.pipeline = Pipeline(
            self.index,
            self.bus,
            self.watcher,
            config=lambda: self.config,
            targets=self.targets,
            wake_workers=lambda: self.workers.wake(),  # noqa: PLW0108 (workers come later)
        )
        self._apply(self.config)
        threading.Thread(target=self.check_stores, name="check-stores", daemon=True).start()
        abort_orphan_uploads(self.targets().values(), datetime.fromtimestamp(self.started, tz=UTC))
        self.workers = Workers(
            self.index,
            self.bus,
            targets=lambda: self._targets,
            paused=self.paused,
            count=self.config.agent.workers,
            settle_seconds=self.config.agent.settle_seconds,
            on_permanent=self._note,
            on_disk_full=self.disk.pause,
        )
        server = RpcServer(
            self.paths.socket,
            handlers,
            self.bus,
            # records.Hello without the protocol, which the server adds
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
        scheduler.add_job(
            self.check_stores, "interval", seconds=self.config.agent.reconcile_interval
        )
        scheduler.add_job(
            self.apply_retention, "interval", seconds=self.config.agent.reconcile_interval
        )
        scheduler.start()
        self.workers.start()
        self.request_scan(None)
        sd_notify(f"READY=1\nSTATUS=watching {len(self._targets)} folders\nMAINPID={os.getpid()}")
        self.bus.publish(EventType.AGENT_STARTED, AgentStarted(os.getpid(), list(self._targets)))
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
            # In this order, so that nothing uses the index once it is closed: first what feeds
            # the queue (the loop has ended; the scheduler, waiting for a job in progress, and
            # the watcher), then the workers. The socket stays up while they drain, so clients
            # still see the agent finish its uploads; stopping it answers the requests in
            # flight. Whatever outlives all that (an upload past the drain timeout, a handler
            # past the server's grace) gets IndexClosedError from the closed index.
            sd_notify("STOPPING=1")
            self.bus.publish(EventType.AGENT_STOPPING, Nothing())
            scheduler.shutdown(wait=True)
            self.watcher.stop()
            drained = self.workers.drain(self.config.agent.drain_timeout)
            if not drained:
                log.warning("stopping with uploads still running; they are redone at next start")
            server.stop()
            self.index.close()
            self._instance_lock.release()
            log.info("dg-agent stopped")
        return 0

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
        targets = build_targets(config, settings=self.settings, cache=self.cache)
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
            self.checked["config"] = Problem(  # one key: a plain assignment needs no lock
                f"the config file is not valid, so the agent keeps its previous settings: {exc}",
                f"fix {self.paths.config_file} (or undo the edit), then: dg-agent stop && "
                "dg-agent start",
            )
            self.bus.publish(EventType.AGENT_ERROR, AgentError(str(exc)))
            return
        self.checked.pop("config", None)
        self._apply(config)
        threading.Thread(target=self.check_stores, name="check-stores", daemon=True).start()
        self.request_scan(None)
        self.bus.publish(EventType.CONFIG_RELOADED, WatchNames(list(self._targets)))

    def check_stores(self) -> None:
        """Whether each watch's store answers (one LIST each): at start, after a config change
        and at every reconcile interval, so a fixed bucket or credential clears its problem."""
        targets = self.targets()
        found = {f"store {name}": check_store(target) for name, target in targets.items()}
        with self._lock:
            for key in [k for k in self.checked if k.startswith("store ")]:
                if key not in found:  # a watch removed since
                    del self.checked[key]
            for key, problem in found.items():
                if problem is None:
                    self.checked.pop(key, None)
                    continue
                if key not in self.checked:
                    log.error("%s (%s)", problem.problem, problem.fix)
                self.checked[key] = problem
        self.stores_checked = True

    def apply_retention(self) -> None:
        """Each watch's retention (retention.py), on the reconcile schedule. A watch that is
        paused or still has files to store waits for the next round: its newest versions are
        stored before the oldest are counted out."""
        paused = self.paused()
        for name, target in self.targets().items():
            if target.watch.retention is None or name in paused or self.index.pending(name):
                continue
            declined = self._declined.setdefault(name, set())
            try:
                report = prune_watch(target.watch, target.store, target.prefix, declined=declined)
            except DgError as exc:
                log.warning("%s: its retention did not run this time: %s", name, exc)
                continue
            if report is not None and (report.deleted or report.references):
                url = f"{target.store.storage.url}/{target.prefix}"
                done = PruneFinished(
                    url, name, len(report.deleted), len(report.references), report.freed
                )
                self.bus.publish(EventType.PRUNE_FINISHED, done)

    def problems(self) -> list[Problem]:
        """Everything the user must act on, each with its fix (problems.py)."""
        with self._lock:
            checked = list(self.checked.values())
        targets = self.targets()
        now = time.monotonic()
        stored = self.index.counts().get("stored", 0)
        when, seen, advice = self._advice
        if stored != seen and now - when > ADVICE_EVERY:
            advice = layout_advice(self.index, targets)
            self._advice = (now, stored, advice)
        return [*checked, *failures(self.index, targets), *advice]

    def targets(self) -> dict[str, Target]:
        with self._lock:
            return dict(self._targets)

    def pause(self, watch: str | None) -> None:
        """Stop storing the files of ``watch`` (None: of every watch)."""
        if watch is None:
            self.paused_all = True
        else:
            self.paused_watches.add(watch)

    def resume(self, watch: str | None) -> None:
        """Take work again; None also lifts each watch's own pause."""
        if watch is None:
            self.paused_all = False
            self.paused_watches.clear()
        else:
            self.paused_watches.discard(watch)
        self.workers.wake()

    def paused(self) -> set[str]:
        if self.paused_all or self.disk.reason:
            return set(self._targets)
        return set(self.paused_watches)

    def _on_disk_space(self) -> None:
        """Space is back after a full disk: find what the index missed, and take work again."""
        self.request_scan(None)
        self.workers.wake()

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
                    trim()
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
                self.disk.check()
                self.pipeline.tick(hold=self.disk.reason is not None)
            except Exception as exc:  # the loop must outlive a full disk or a bug in one tick
                if disk_full(exc):
                    self.disk.pause(str(exc))
                else:
                    log.exception("error in the agent loop; continuing")
            if ping is not None and now - last_ping > ping and self._healthy():
                sd_notify("WATCHDOG=1")
                last_ping = now

    def _healthy(self) -> bool:
        return self.watcher.alive() or not self._targets

    def _supervise_watcher(self) -> None:
        roots = {name: t.watch.dir for name, t in self.targets().items()}
        if (self.watcher.stale() or not self.watcher.alive()) and self.watcher.watch(roots):
            self.bus.publish(EventType.WATCH_STATE, dict(self.watcher.states))
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
