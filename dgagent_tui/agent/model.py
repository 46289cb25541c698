"""The queue as the TUI keeps it: one row per (watch, path), changed rows remembered for a flush.

Events change rows here, at any rate; the screen asks ``take_changes()`` a few times a second and
touches only those rows in its table. Stored rows are capped (oldest dropped first) so a
long-running session does not grow without bound; pending and failed rows are always kept.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from dgagent.rpc import EventType, ProtocolError
from dgagent.rpc.records import (
    FileDeleted,
    FileFailed,
    FileRetry,
    FileSeen,
    FileStored,
    Problem,
    Progress,
    QueueItem,
    Record,
    Status,
    Transfer,
    WatchStatus,
    event_data,
)

__all__ = ["MAX_DONE_ROWS", "Problem", "QueueModel", "QueueRow"]

log = logging.getLogger(__name__)

MAX_DONE_ROWS = 2000
Key = tuple[str, str]


@dataclass(frozen=True)
class QueueRow:
    watch: str
    path: str
    state: str  # queued, uploading, stored, failed
    kind: str | None = None  # reference, delta, direct, plain
    codec: str | None = None  # for a delta: compat, archive-v1, -v2 or -v3
    original: int | None = None
    stored: int | None = None
    cache_hit: bool | None = None
    error: str | None = None
    updated: float = 0.0
    attempt: int = 0
    key: str | None = None
    stage: str | None = None  # of a large file being stored: hashing, encoding, uploading…
    stage_started: float = 0.0  # when that stage began: a long encode shows how long, not 0 B/s
    moved: int = 0  # bytes of that stage done so far
    stage_total: int | None = None
    why: str | None = None  # why the agent stored it as it did (delta, new reference, whole)

    @property
    def ratio(self) -> float | None:
        if self.original and self.stored is not None:
            return self.stored / self.original
        return None

    @classmethod
    def from_item(cls, item: QueueItem) -> QueueRow:
        return cls(
            watch=item.watch,
            path=item.path,
            state=item.state,
            kind=item.kind,
            codec=item.codec,
            original=item.original_size,
            stored=item.stored_size,
            cache_hit=item.cache_hit,
            error=item.error,
            updated=item.updated,
            attempt=item.attempts,
            key=item.key,
            why=item.why,
        )


class QueueModel:
    """Rows, summary counters and the recent history the sparklines draw."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rows: OrderedDict[Key, QueueRow] = OrderedDict()
        self.status: Status | None = None  # None until the first snapshot
        self.stored_since_status = 0
        # (time, original bytes, stored bytes, seconds) of recent stores, for throughput and ratio
        self.recent: deque[tuple[float, int, int, float]] = deque(maxlen=600)
        self._changed: set[Key] = set()
        self._removed: set[Key] = set()
        self.reset_needed = True

    # -- loading and events ------------------------------------------------------------------

    def load(
        self,
        status: Status,
        items: Iterable[QueueItem],
        transfers: Iterable[Transfer],
    ) -> None:
        """Replace everything with a fresh snapshot (after connecting or after lost events)."""
        rows = sorted((QueueRow.from_item(i) for i in items), key=lambda r: r.updated)
        self.rows = OrderedDict(((r.watch, r.path), r) for r in rows)
        self._cap_done()
        self.set_status(status)
        self.recent.clear()
        for t in sorted(transfers, key=lambda t: t.time):
            if t.op == "put" and not t.error and t.stored_size is not None:
                self.recent.append((t.time, t.original_size or 0, t.stored_size, t.seconds or 0.0))
        self._changed.clear()
        self._removed.clear()
        self.reset_needed = True

    def set_status(self, status: Status) -> None:
        self.status = status
        self.stored_since_status = 0

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one agent event into the rows; other events, and those of a shape this version
        does not know, are ignored."""
        try:
            data = event_data(EventType(str(event.get("type"))), event.get("data"))
        except (ValueError, ProtocolError) as exc:  # an event type or shape from another version
            log.debug("ignoring event %r: %s", event.get("type"), exc)
            return
        if not isinstance(data, FileSeen | Progress | FileStored | FileRetry | FileFailed):
            if isinstance(data, FileDeleted):
                self._deleted((data.watch, data.path))
            return
        key: Key = (data.watch, data.path)
        now = self.clock()
        row = self.rows.get(key) or QueueRow(data.watch, data.path, "queued", updated=now)
        row = self._changed_row(row, event["type"], data, now)
        if key in self.rows and self.rows[key].state != "stored" and row.state == "stored":
            self.rows.move_to_end(key)  # keeps stored rows in the order they finished, for the cap
        self.rows[key] = row
        self._changed.add(key)
        self._removed.discard(key)
        if row.state == "stored":
            self._cap_done()

    def _changed_row(  # noqa: PLR0911 (one return an event type)
        self, row: QueueRow, type: str, data: Record, now: float
    ) -> QueueRow:
        if type == EventType.FILE_QUEUED and isinstance(data, FileSeen):
            return QueueRow(row.watch, row.path, "queued", original=data.size, updated=now)
        if isinstance(data, FileSeen):  # file.uploading
            row = replace(row, state="uploading", original=data.size)
            return replace(row, updated=now, error=None, stage=None)
        if isinstance(data, Progress):
            if row.state != "uploading":  # late: the put ended
                return row
            started = row.stage_started if data.stage == row.stage else now
            return replace(
                row,
                stage=data.stage,
                stage_started=started,
                moved=data.done,
                stage_total=data.total,
            )
        if isinstance(data, FileStored):
            return self._stored(row, data, now)
        if isinstance(data, FileRetry):
            return replace(row, state="queued", error=data.error, attempt=data.attempt, stage=None)
        assert isinstance(data, FileFailed)
        return replace(row, state="failed", error=data.error, updated=now, stage=None)

    def _deleted(self, key: Key) -> None:
        if self.rows.pop(key, None) is not None:
            self._removed.add(key)
            self._changed.discard(key)

    def _stored(self, row: QueueRow, data: FileStored, now: float) -> QueueRow:
        row = replace(
            row,
            state="stored",
            kind=data.kind,
            codec=data.codec,
            original=data.original_size,
            stored=data.stored_size,
            cache_hit=data.cache_hit,
            key=data.key,
            why=data.why,
            error=None,
            updated=now,
            stage=None,
        )
        self.stored_since_status += 1
        self.recent.append((now, data.original_size, data.stored_size, data.seconds))
        return row

    def _cap_done(self) -> None:
        stored = [k for k, r in self.rows.items() if r.state == "stored"]
        for key in stored[: max(len(stored) - MAX_DONE_ROWS, 0)]:
            del self.rows[key]
            self._removed.add(key)
            self._changed.discard(key)

    def take_changes(self) -> tuple[bool, list[Key], list[Key]]:
        """(rebuild everything?, keys changed or added, keys removed) since the last call."""
        reset, self.reset_needed = self.reset_needed, False
        changed = [k for k in self._changed if k in self.rows]
        removed = list(self._removed)
        self._changed.clear()
        self._removed.clear()
        return reset, changed, removed

    # -- summary -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = {"queued": 0, "uploading": 0, "failed": 0}
        for row in self.rows.values():
            if row.state in counts:
                counts[row.state] += 1
        counts["done"] = (self.status.done if self.status else 0) + self.stored_since_status
        return counts

    def throughput(self, window: float = 10.0) -> float:
        """Original bytes stored per second over the last ``window`` seconds."""
        since = self.clock() - window
        return sum(original for t, original, _, _ in self.recent if t >= since) / window

    def throughput_series(self, points: int = 30, step: float = 2.0) -> list[float]:
        """Bytes per second in ``points`` buckets of ``step`` seconds, oldest first."""
        now = self.clock()
        series = [0.0] * points
        for t, original, _, _ in self.recent:
            age = now - t
            if 0 <= age < points * step:
                series[points - 1 - int(age // step)] += original / step
        return series

    def ratio_series(self, points: int = 40) -> list[float]:
        """stored / original of the last ``points`` stores, oldest first."""
        last = list(self.recent)[-points:]
        return [stored / original for _, original, stored, _ in last if original]

    def cache_hit_rate(self) -> float | None:
        if self.status is None:
            return None
        hits, misses = self.status.cache.hits, self.status.cache.misses
        return hits / (hits + misses) if hits + misses else None

    def saved(self) -> tuple[int, int]:
        """(bytes saved, bytes original) over everything the agent stored."""
        if self.status is None:
            return 0, 0
        return self.status.bytes.saved, self.status.bytes.original

    @property
    def paused(self) -> bool:
        return self.status is not None and self.status.paused

    @property
    def watches(self) -> list[WatchStatus]:
        return [] if self.status is None else self.status.watches

    def problems(self) -> list[Problem]:
        """What the user must act on, as the last ``status`` said."""
        return [] if self.status is None else self.status.problems
