"""Settle: a file is worth storing only once it has stopped changing.

Watch events and scans only *hint* that a path may have changed. Each hinted path is stat'ed on
every tick; it is ready when its size and mtime_ns have held for the settle window (a close-write
event shortens the wait). A path that disappeared is ready too, as "gone". Temp names that build
tools and editors use while writing are never hinted at all.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TEMPORARY = (
    "*.tmp", "*.temp", "*.part", "*.partial", "*.crdownload", "*.download", ".~*", "~$*",
    "*.swp", "*.swx", "*.swo", ".#*", "*~", "4913", "*.dg-part-*", ".dg-tmp-*", ".dg-meta",
)  # fmt: skip
"""Names of files still being written (and our own scratch names), never stored."""


def is_temporary(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in TEMPORARY)


@dataclass
class _Pending:
    size: int = -1
    mtime_ns: int = -1
    changed: float = 0.0
    closed: bool = False
    hints: int = 0


Ready = tuple[str, str, os.stat_result | None]
"""(watch, relative path, stat or None when the file is gone)."""


class Settler:
    """Paths waiting to stop changing; thread-safe (hints come from watchdog threads)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()

    def hint(self, watch: str, path: str, *, closed: bool = False) -> None:
        with self._lock:
            item = self._pending.setdefault((watch, path), _Pending(changed=time.monotonic()))
            # A writer's close-after-write marks the file probably complete; any later
            # modification event undoes that.
            item.closed = closed
            item.hints += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def tick(self, root_of: Callable[[str], Path | None]) -> list[Ready]:
        """Stat every pending path; return those that settled (or vanished)."""
        now = time.monotonic()
        with self._lock:
            items = list(self._pending.items())
        ready: list[Ready] = []
        done: list[tuple[tuple[str, str], int]] = []
        for (watch, path), item in items:
            root = root_of(watch)
            if root is None:
                done.append(((watch, path), item.hints))
                continue
            try:
                st = os.stat(root / path)
            except (FileNotFoundError, NotADirectoryError):
                ready.append((watch, path, None))
                done.append(((watch, path), item.hints))
                continue
            except OSError:
                continue  # unreadable for now (permissions, I/O); try again next tick
            if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
                item.size, item.mtime_ns, item.changed = st.st_size, st.st_mtime_ns, now
                continue
            wait = self.window / 4 if item.closed else self.window
            if now - item.changed >= wait:
                ready.append((watch, path, st))
                done.append(((watch, path), item.hints))
        with self._lock:
            for key, seen in done:
                # a hint that arrived while we looked means "changed again": keep waiting
                if key in self._pending and self._pending[key].hints == seen:
                    del self._pending[key]
        return ready
