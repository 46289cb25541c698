"""The watch pipeline: hints → settle → plan → queue, and the reconcile scans behind it.

Watch events arrive as hints; a hint only puts a path in the settler (or, for a folder or the
root, asks for a scan). Scans are the truth: they compare the folder with the index and decide
deletions under their guards. Settled files are planned against the index and queued for the
workers. The agent's loop calls ``tick`` a few times a second.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from dgagent.agent.config import AgentConfig, Watch
from dgagent.agent.index import Index
from dgagent.agent.reconcile import deletions, differs, excluded, plan, scan
from dgagent.agent.settle import Settler
from dgagent.agent.watcher import Hint, Watcher
from dgagent.agent.workers import Target
from dgagent.errors import DgError
from dgagent.rpc.events import EventBus
from dgagent.rpc.protocol import EventType
from dgagent.rpc.records import DeleteRefused, FileSeen, ScanFinished, ScanStarted

log = logging.getLogger(__name__)

BURST = 2000
"""More hints than this in one tick: events may have been dropped, so scan as well."""


class Pipeline:
    def __init__(
        self,
        index: Index,
        bus: EventBus,
        watcher: Watcher,
        *,
        config: Callable[[], AgentConfig],
        targets: Callable[[], dict[str, Target]],
        wake_workers: Callable[[], None],
    ) -> None:
        self.index = index
        self.bus = bus
        self.watcher = watcher
        self.config = config
        self.targets = targets
        self.wake_workers = wake_workers
        self.settler = Settler(config().agent.settle_seconds)
        self.notes: dict[str, str] = {}
        """Per watch: the last refused delete (or permanent error), for status."""
        self.last_scan: dict[str, float] = {}
        self.scanning = False
        self._scan_due: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def request_scan(self, watch: str | None = None, delay: float = 0.0) -> None:
        with self._lock:
            due = time.monotonic() + delay
            self._scan_due[watch] = min(due, self._scan_due.get(watch, due))

    def busy(self) -> bool:
        """Anything settling, scanning or about to be scanned, or hints not yet taken."""
        return bool(
            len(self.settler) or self.scanning or self._scan_due or not self.watcher.hints.empty()
        )

    def tick(self, *, hold: bool = False) -> None:
        """One round; with ``hold`` (the index cannot be written: a full disk) only take the
        hints, so files keep settling in memory and nothing is planned until the agent resumes."""
        self._take_hints()
        if hold:
            return
        self._run_due_scans()
        self._settle()

    def _take_hints(self) -> None:
        targets = self.targets()
        taken = 0
        while taken < BURST * 5:
            try:
                hint = self.watcher.hints.get_nowait()
            except queue.Empty:
                break
            taken += 1
            target = targets.get(hint.watch)
            if target is not None:
                self._hint(target.watch, hint)
        if taken >= BURST:
            self.request_scan(None, delay=1.0)

    def _hint(self, watch: Watch, hint: Hint) -> None:
        try:
            relative = hint.path.relative_to(watch.dir).as_posix()
        except ValueError:
            return
        if relative == ".":
            self.request_scan(watch.name, delay=0.5)  # the root itself changed (e.g. deleted)
            return
        if hint.folder:
            # A folder appeared (its files may predate our watch on it) or vanished: scan it.
            self.request_scan(watch.name, delay=0.2)
            return
        if not excluded(watch, relative):
            self.settler.hint(watch.name, relative, closed=hint.closed)

    def _run_due_scans(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [w for w, t in self._scan_due.items() if t <= now]
            for w in due:
                del self._scan_due[w]
        if not due:
            return
        names = list(self.targets()) if None in due else [w for w in due if w is not None]
        self.scanning = True
        try:
            for name in names:
                target = self.targets().get(name)
                if target is not None:
                    self._reconcile(target.watch)
        finally:
            self.scanning = False

    def _reconcile(self, watch: Watch) -> None:
        started = time.monotonic()
        self.bus.publish(EventType.SCAN_STARTED, ScanStarted(watch.name))
        scanned = scan(watch)
        tracked = self.index.tracked(watch.name)
        hinted = 0
        for relative, st in scanned.files.items():
            row = tracked.get(relative)
            # A failed file is not retried in a loop, only once it changed after failing (a new
            # build, or a chmod that makes it readable: both move its ctime).
            retry = row is None or row.state != "failed" or st.st_ctime > row.updated
            if retry and differs(st, row):
                self.settler.hint(watch.name, relative)
                hinted += 1
        decision = deletions(watch, scanned, tracked, self.config().agent.max_delete_fraction)
        queued_deletes = 0
        if watch.delete:
            if decision.refused:
                self.notes[watch.name] = decision.refused
                refused = DeleteRefused(watch.name, decision.refused)
                self.bus.publish(EventType.DELETE_REFUSED, refused)
            for relative in decision.paths:
                queued_deletes += self.index.enqueue(watch.name, relative, "delete")
        elif not scanned.root_missing and not scanned.errors:
            for relative in decision.paths:  # not mirrored: stop tracking what went away
                self.index.forget(watch.name, relative)
        if queued_deletes:
            self.wake_workers()
        self.last_scan[watch.name] = time.time()
        self.bus.publish(
            EventType.SCAN_FINISHED,
            ScanFinished(
                watch=watch.name,
                files=len(scanned.files),
                changed=hinted,
                deletes=queued_deletes,
                errors=scanned.errors[:5],
                root_missing=scanned.root_missing,
                seconds=round(time.monotonic() - started, 3),
            ),
        )

    def _settle(self) -> None:
        targets = self.targets()
        queued = 0
        ready = self.settler.tick(lambda n: t.watch.dir if (t := targets.get(n)) else None)
        done = 0
        try:
            for name, relative, st in ready:
                target = targets.get(name)
                if target is None:
                    pass
                elif st is None:
                    self._gone(target.watch, relative)
                elif self._plan(target.watch, relative, st):
                    queued += 1
                done += 1
        except Exception:
            # The index could not be written (a full disk): the settler already let go of these
            # files, so hand this one and the rest back rather than lose them until a scan.
            for name, relative, _ in ready[done:]:
                self.settler.hint(name, relative)
            raise
        finally:
            if queued:
                self.wake_workers()

    def _plan(self, watch: Watch, relative: str, st: os.stat_result) -> bool:
        """Queue a settled file when it needs storing; True when it was queued."""
        try:
            op = plan(self.index, watch, relative, st)
        except DgError as exc:
            log.warning("%s/%s: %s", watch.name, relative, exc)
            return False
        if not op or not self.index.enqueue(watch.name, relative, op, st.st_mtime_ns):
            return False
        self.bus.publish(EventType.FILE_QUEUED, FileSeen(watch.name, relative, st.st_size))
        return True

    def _gone(self, watch: Watch, relative: str) -> None:
        row = self.index.get(watch.name, relative)
        if row is None:
            return
        if row.state in ("queued", "failed") and row.op == "put":
            self.index.cancel(watch.name, relative)
        if watch.delete:
            # Deletes are decided by a full scan, with its guards (empty root, share deleted).
            self.request_scan(watch.name, delay=self.config().agent.settle_seconds)
