"""watchdog observers turned into hints; the handler only enqueues, it never does I/O.

watchdog drops events silently when the kernel queue overflows and its threads can die, so the
agent treats everything here as a hint: a supervisor restarts a dead observer and asks for a
reconcile scan, which is the truth.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hint:
    watch: str
    path: Path
    """Absolute path the event named."""
    folder: bool = False
    """A directory appeared: list it (its files may predate the watch)."""
    closed: bool = False
    """A writer closed the file: it has probably settled."""


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: str, hints: queue.SimpleQueue[Hint]) -> None:
        self.watch = watch
        self.hints = hints

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        for raw in paths:
            if not raw:
                continue
            path = Path(raw if isinstance(raw, str) else raw.decode(errors="surrogateescape"))
            if isinstance(event, DirCreatedEvent | DirMovedEvent):
                self.hints.put(Hint(self.watch, path, folder=True))
            elif event.is_directory:
                if event.event_type == "deleted":
                    self.hints.put(Hint(self.watch, path, folder=True))
            else:
                self.hints.put(Hint(self.watch, path, closed=isinstance(event, FileClosedEvent)))


class Watcher:
    """One observer for all watched roots, rebuilt when it dies."""

    def __init__(self) -> None:
        self.hints: queue.SimpleQueue[Hint] = queue.SimpleQueue()
        self._observer: BaseObserver | None = None
        self._roots: dict[str, Path] = {}
        self._identity: dict[str, tuple[int, int] | None] = {}
        self._lock = threading.Lock()
        self.states: dict[str, str] = {}

    def watch(self, roots: dict[str, Path]) -> bool:
        """(Re)schedule exactly these roots; returns True when the observer was rebuilt."""
        with self._lock:
            alive = self._observer is not None and self._observer.is_alive()
            if alive and roots == self._roots and not self._stale_locked():
                return False
            self._stop_locked()
            observer = Observer()
            self.states = {}
            for name, root in roots.items():
                if not root.is_dir():
                    self.states[name] = "root missing"
                    continue
                try:
                    observer.schedule(_Handler(name, self.hints), str(root), recursive=True)
                    self.states[name] = "watching"
                except OSError as exc:
                    log.warning("cannot watch %s: %s (scans still run)", root, exc)
                    self.states[name] = f"not watched ({exc.strerror or exc}); scans only"
            observer.daemon = True
            observer.start()
            self._observer = observer
            self._roots = dict(roots)
            self._identity = {name: _identity(root) for name, root in roots.items()}
            return True

    def stale(self) -> bool:
        """A root vanished, appeared, or was replaced by a new folder of the same name (a clean
        build): its inotify watch no longer sees it, so the observer must be rebuilt."""
        with self._lock:
            return self._stale_locked()

    def _stale_locked(self) -> bool:
        return any(_identity(root) != self._identity.get(n) for n, root in self._roots.items())

    def alive(self) -> bool:
        with self._lock:
            return self._observer is not None and self._observer.is_alive()

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


def _identity(root: Path) -> tuple[int, int] | None:
    try:
        st = root.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if root.is_dir() else None
