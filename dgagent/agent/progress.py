"""Progress of one put as ``file.progress`` events: which stage it is in and how far along.

Only files of at least ``MIN_SIZE`` report: a small file is stored before anyone could read its
progress, and a burst of ten thousand of them must not flood the event stream. Within a stage the
byte count is sent at most ``RATE`` times a second; a new stage, and the count that completes a
stage, are always sent.
"""

from __future__ import annotations

import threading
import time

from dgagent.rpc.events import EventBus
from dgagent.rpc.protocol import EventType
from dgagent.rpc.records import Progress

MIN_SIZE = 4 * 1024 * 1024
RATE = 4.0


class PutProgress:
    """Fed by DeltaStore.put (``stage`` and ``advance``) from one worker thread, or from the
    upload threads of one multipart upload (hence the lock)."""

    def __init__(self, bus: EventBus, watch: str, path: str, size: int) -> None:
        self.bus, self.watch, self.path = bus, watch, path
        self.enabled = size >= MIN_SIZE
        self.name = ""
        self.total: int | None = None
        self.done = 0
        self._sent = 0.0
        self._lock = threading.Lock()

    def stage(self, name: str, total: int | None) -> None:
        with self._lock:
            self.name, self.total, self.done = name, total, 0
        self._publish(force=True)

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            finished = self.total is not None and self.done >= self.total
        self._publish(force=finished)  # the last count always goes out: a bar ends full

    def _publish(self, *, force: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._sent < 1 / RATE:
                return
            self._sent = now
            data = Progress(self.watch, self.path, self.name, self.done, self.total)
        self.bus.publish(EventType.FILE_PROGRESS, data)
