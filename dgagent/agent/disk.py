"""The full-disk pause: stop taking work when the disk is full, resume once there is space.

A full disk (the index's or the reference cache's) would otherwise fail every file in turn, for
a condition that is none of theirs. Instead the first ENOSPC pauses uploads
for every watch, and the agent's loop rechecks the free space every few seconds; once enough is
back, the agent resumes and rescans for whatever the full index could not record.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dgagent.rpc.events import EventBus
from dgagent.rpc.protocol import EventType
from dgagent.rpc.records import PauseChanged

log = logging.getLogger(__name__)

DISK_RECHECK = 5.0
DISK_FREE_TO_RESUME = 32 * 1024 * 1024


class DiskPause:
    def __init__(
        self, bus: EventBus, folders: tuple[Path, ...], *, on_resume: Callable[[], None]
    ) -> None:
        self.bus = bus
        self.folders = folders
        """Where free space matters: the cache's parent and the state folder (the index)."""
        self.on_resume = on_resume
        self.reason: str | None = None
        """Why uploads are paused for lack of space (None: they are not)."""
        self._since = 0.0
        self._lock = threading.Lock()

    def pause(self, message: str) -> None:
        """Stop taking work until there is space again, rather than failing every file."""
        with self._lock:
            first = self.reason is None
            self.reason = message
            self._since = time.monotonic()
        if first:
            log.error("pausing: %s; uploads resume once space is freed", message)
            self.bus.publish(EventType.AGENT_PAUSED, PauseChanged(None, f"disk full: {message}"))

    def check(self) -> None:
        if self.reason is None or time.monotonic() - self._since < DISK_RECHECK:
            return
        free = min(shutil.disk_usage(f).free for f in self.folders if f.exists())
        if free >= DISK_FREE_TO_RESUME:
            log.info("disk space is back (%d MiB free); resuming", free // 2**20)
            self.reason = None
            self.bus.publish(EventType.AGENT_RESUMED, PauseChanged(None, "disk space is back"))
            # Whatever the full index could not record (a queued file, new times) is found again.
            self.on_resume()
        else:
            self._since = time.monotonic()
