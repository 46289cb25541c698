"""The worker pool: takes due operations off the index queue and runs them through the engine.

Failures are sorted: a transient one (network, throttling, a full disk) is retried with
exponential backoff and full jitter, the next attempt time kept in the index; a permanent one
(access denied, no such bucket, a reserved name) is marked failed and shown, not retried in a
loop. A file that changed while it was being stored simply goes round again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from dgagent.agent.config import Watch
from dgagent.agent.index import Index, IndexClosedError, Row
from dgagent.agent.progress import PutProgress
from dgagent.engine.store import DeltaStore
from dgagent.errors import (
    AccessDeniedError,
    ConfigError,
    DgError,
    IntegrityError,
    NotFoundError,
    ReservedNameError,
    SourceChangedError,
    ToolMissingError,
    UnreadableError,
    UnsafePathError,
    disk_full,
)
from dgagent.rpc.events import EventBus
from dgagent.rpc.protocol import EventType
from dgagent.rpc.records import FileDeleted, FileFailed, FileRetry, FileSeen, FileStored, ratio

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
PERMANENT = (
    AccessDeniedError,
    ConfigError,
    ReservedNameError,
    SourceChangedError,
    ToolMissingError,
    UnreadableError,
    UnsafePathError,
)


class Failure(Enum):
    """What a failed operation calls for, decided by the error's type (never its text)."""

    CHANGED = "changed"  # the file changed while stored: again once it settles
    DISK_FULL = "disk full"  # not the file's fault: pause, then again
    PERMANENT = "permanent"  # retrying cannot help: shown until the user acts
    TRANSIENT = "transient"  # retried with backoff, up to MAX_ATTEMPTS


def failure(exc: DgError) -> Failure:
    """The kind of ``exc``.

    >>> [failure(e).name for e in (SourceChangedError(""), IntegrityError(""), DgError(""))]
    ['CHANGED', 'PERMANENT', 'TRANSIENT']
    """
    if isinstance(exc, SourceChangedError):
        return Failure.CHANGED
    if disk_full(exc):
        return Failure.DISK_FULL
    if isinstance(exc, (*PERMANENT, NotFoundError, IntegrityError)):
        return Failure.PERMANENT
    return Failure.TRANSIENT


def backoff(attempt: int) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^attempt)], at least half a second."""
    return max(0.5, random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))


@dataclass(frozen=True)
class Target:
    """Where one watch's files go."""

    watch: Watch
    store: DeltaStore
    prefix: str

    def key(self, relative: str) -> str:
        return self.prefix + relative


class Workers:
    def __init__(
        self,
        index: Index,
        bus: EventBus,
        *,
        targets: Callable[[], dict[str, Target]],
        paused: Callable[[], set[str]],
        count: int,
        settle_seconds: float,
        on_permanent: Callable[[str, str], None],
        on_disk_full: Callable[[str], None],
    ) -> None:
        self.index = index
        self.bus = bus
        self.targets = targets
        self.paused = paused
        self.count = count
        self.settle_seconds = settle_seconds
        self.on_permanent = on_permanent
        self.on_disk_full = on_disk_full
        self._wake = threading.Condition()
        self._taking = True
        self._threads: list[threading.Thread] = []
        self._active = 0
        self._lock = threading.Lock()
        self._unrecorded: list[tuple[Row, str]] = []
        """Failures the index could not take yet (its disk was full); recorded once it can."""

    def _needs_order(self, path: str) -> bool:
        """Whether this file must wait for the one before it in its DeltaSpace (all watches
        share the engine's settings, so any target can tell)."""
        for target in self.targets().values():
            return target.store.needs_release_order(path)
        return True

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def start(self) -> None:
        for n in range(self.count):
            thread = threading.Thread(target=self._loop, name=f"dg-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def drain(self, timeout: float) -> bool:
        """Stop taking work; wait for what is in flight. True when everything finished."""
        with self._wake:
            self._taking = False
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _loop(self) -> None:
        try:
            self._take_work()
        except IndexClosedError:
            # Only after drain() gave up on us: the agent stopped meanwhile. The row stays
            # 'uploading' in the index, and the next start queues it again (requeue_interrupted).
            log.info(
                "a worker stopped mid-operation because the agent stopped; redone at next start"
            )

    def _take_work(self) -> None:
        while True:
            with self._wake:
                if not self._taking:
                    return
            try:
                self._record_later()
                rows = self.index.claim(1, self.paused(), serial=self._needs_order)
            except IndexClosedError:
                raise
            except Exception as exc:  # noqa: BLE001 (the index's disk is full: wait, do not die)
                self._index_failed(exc)
                continue
            if not rows:
                with self._wake:
                    if self._taking:
                        self._wake.wait(0.5)
                continue
            with self._lock:
                self._active += 1
            try:
                self._run(rows[0])
            except IndexClosedError:
                raise
            except Exception as exc:  # noqa: BLE001 (a bug or a full disk must not kill the worker)
                self._unexpected(rows[0], exc)
            finally:
                with self._lock:
                    self._active -= 1

    def _index_failed(self, exc: Exception) -> None:
        if disk_full(exc):
            self.on_disk_full(str(exc))
        else:
            log.error("cannot take work from the index", exc_info=exc)
        with self._wake:
            if self._taking:
                self._wake.wait(1.0)

    def _unexpected(self, row: Row, exc: Exception) -> None:
        if disk_full(exc):
            self.on_disk_full(str(exc))
        else:
            log.error("unexpected failure on %s/%s", row.watch, row.path, exc_info=exc)
        try:
            self.index.requeue(row.watch, row.path, 5.0, str(exc))
        except Exception as again:  # noqa: BLE001 (the index itself may be on the full disk)
            # Left as it is the row would stay 'uploading' with no worker on it: the agent would
            # never be idle again, and that file never stored until a restart.
            log.warning("cannot record the failure of %s/%s yet: %s", row.watch, row.path, again)
            with self._lock:
                self._unrecorded.append((row, str(exc)))

    def _record_later(self) -> None:
        """Put back in the queue the files whose failure the index could not take before.

        Quietly: while the disk is still full this fails again, and reporting it would push the
        agent's next look at the free space back each time (it waits for a quiet spell).
        """
        with self._lock:
            pending, self._unrecorded = self._unrecorded, []
        for n, (row, message) in enumerate(pending):
            try:
                self.index.requeue(row.watch, row.path, 0.0, message)
            except Exception:  # noqa: BLE001 (still full: try again on the next round)
                with self._lock:
                    self._unrecorded.extend(pending[n:])
                return

    def _run(self, row: Row) -> None:
        target = self.targets().get(row.watch)
        if target is None:  # the watch was removed meanwhile
            self.index.forget(row.watch, row.path)
            return
        started = time.monotonic()
        try:
            if row.op == "delete":
                self._delete(target, row)
            else:
                self._put(target, row, started)
        except IndexClosedError:
            raise  # not the file's failure: it cannot even be recorded
        except DgError as exc:
            self._failed(target, row, exc, time.monotonic() - started)

    def _put(self, target: Target, row: Row, started: float) -> None:
        source = target.watch.dir / row.path
        try:
            st = source.stat()
        except FileNotFoundError:
            self.index.cancel(row.watch, row.path)  # gone before we got to it; scans decide
            return
        self.bus.publish(EventType.FILE_UPLOADING, FileSeen(row.watch, row.path, st.st_size))
        reporter = PutProgress(self.bus, row.watch, row.path, st.st_size)
        result = target.store.put(
            source,
            target.key(row.path),
            max_ratio=target.watch.max_ratio,
            codec=target.watch.codec,
            policy=target.watch.reference_policy,
            stage=reporter.stage,
            progress=reporter.advance,
        )
        stored = result.stored_size + result.reference_size
        self.index.stored(
            row.watch,
            row.path,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            sha256=result.sha256,
            key=result.key,
            kind=result.kind.value,
            codec=result.codec,
            original_size=result.original_size,
            stored_size=stored,
            cache_hit=None if result.cache_hit is None else int(result.cache_hit),
            why=result.why,
        )
        record = self._record(
            row,
            key=result.key,
            kind=result.kind.value,
            codec=result.codec,
            original=result.original_size,
            stored=stored,
            cache_hit=result.cache_hit,
            seconds=time.monotonic() - started,
            why=result.why,
        )
        try:
            fields = record.to_json()
            del fields["ratio"]
            self.index.log_transfer(**fields)
        except Exception as exc:
            # The file is stored and its row says so: only its line in the history is lost.
            # Requeueing it (below, in _unexpected) would store it a second time.
            if not disk_full(exc):
                raise
            self.on_disk_full(str(exc))
        self.bus.publish(EventType.FILE_STORED, record)
        log.info(
            "stored %s/%s as %s: %d of %d bytes",
            row.watch,
            row.path,
            result.kind.value,
            stored,
            result.original_size,
        )

    def _delete(self, target: Target, row: Row) -> None:
        key = row.key or target.key(row.path)
        with contextlib.suppress(NotFoundError):  # already gone is what we wanted
            target.store.delete([key])
        self.index.forget(row.watch, row.path)
        self.index.log_transfer(watch=row.watch, path=row.path, op="delete", key=key)
        self.bus.publish(EventType.FILE_DELETED, FileDeleted(row.watch, row.path, key))

    @staticmethod
    def _record(
        row: Row,
        *,
        key: str,
        kind: str,
        codec: str | None,
        original: int,
        stored: int,
        cache_hit: bool | None,
        seconds: float,
        why: str,
    ) -> FileStored:
        return FileStored(
            watch=row.watch,
            path=row.path,
            op="put",
            key=key,
            kind=kind,
            codec=codec,
            original_size=original,
            stored_size=stored,
            ratio=ratio(stored, original),
            cache_hit=cache_hit,
            seconds=round(seconds, 3),
            why=why,
        )

    def _failed(self, target: Target, row: Row, exc: DgError, seconds: float) -> None:
        message = str(exc)
        source = target.watch.dir / row.path
        if row.op != "delete" and not source.exists():
            self.index.cancel(row.watch, row.path)
            return
        kind = failure(exc)
        if kind is Failure.DISK_FULL:
            self.on_disk_full(message)
            self.index.requeue(row.watch, row.path, 1.0, message)  # not the file's fault
            return
        self.index.log_transfer(
            watch=row.watch, path=row.path, op=row.op, error=message, seconds=round(seconds, 3)
        )
        if kind is Failure.CHANGED:
            self.index.retry_later(row.watch, row.path, self.settle_seconds, message)
        elif kind is Failure.PERMANENT or row.attempts + 1 >= MAX_ATTEMPTS:
            self.index.fail(row.watch, row.path, message)
            self.bus.publish(
                EventType.FILE_FAILED, FileFailed(row.watch, row.path, row.op, message)
            )
            if isinstance(exc, AccessDeniedError | NotFoundError):
                self.on_permanent(row.watch, message)
        else:
            delay = backoff(row.attempts)
            self.index.retry_later(row.watch, row.path, delay, message)
            retry = FileRetry(
                row.watch, row.path, row.op, message, row.attempts + 1, round(delay, 2)
            )
            self.bus.publish(EventType.FILE_RETRY, retry)
        log.warning("%s/%s: %s", row.watch, row.path, message)
