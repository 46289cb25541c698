"""The queue as the TUI keeps it: one row per (watch, path), changed rows remembered for a flush.

Events change rows here, at any rate; the screen asks ``take_changes()`` a few times a second and
touches only those rows in its table. Stored rows are capped (oldest dropped first) so a
long-running session does not grow without bound; pending and failed rows are always kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

MAX_DONE_ROWS = 2000
Key = tuple[str, str]


@dataclass(frozen=True)
class Problem:
    """A state the user must act on, as the agent's ``status`` reports it, with its fix."""

    problem: str
    fix: str
    watch: str | None = None  # None: the agent as a whole


def problems(status: dict[str, Any]) -> list[Problem]:
    """The ``problems`` of a ``status`` answer; none from an agent that does not send them.

    A malformed entry is skipped rather than trusted: it comes from another program.

    >>> problems({}), problems({"problems": None})
    ([], [])
    >>> problems({"problems": [{"watch": None, "problem": "no xdelta3", "fix": "install it"}, 7]})
    [Problem(problem='no xdelta3', fix='install it', watch=None)]
    """
    found = []
    for entry in status.get("problems") or []:
        if isinstance(entry, dict) and entry.get("problem"):
            watch = str(entry["watch"]) if entry.get("watch") else None
            found.append(Problem(str(entry["problem"]), str(entry.get("fix") or ""), watch))
    return found


@dataclass(frozen=True)
class QueueRow:
    watch: str
    path: str
    state: str  # queued, uploading, stored, failed
    kind: str | None = None  # reference, delta, direct, plain
    codec: str | None = None  # for a delta: compat, archive-v1 or archive-v2
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
    def from_item(cls, item: dict[str, Any]) -> QueueRow:
        return cls(
            watch=item["watch"],
            path=item["path"],
            state=item.get("state") or "queued",
            kind=item.get("kind"),
            codec=item.get("codec"),
            original=item.get("original_size"),
            stored=item.get("stored_size"),
            cache_hit=item.get("cache_hit"),
            error=item.get("error"),
            updated=float(item.get("updated") or 0.0),
            attempt=int(item.get("attempts") or 0),
            key=item.get("key"),
            why=item.get("why"),
        )


class QueueModel:
    """Rows, summary counters and the recent history the sparklines draw."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.rows: OrderedDict[Key, QueueRow] = OrderedDict()
        self.status: dict[str, Any] = {}
        self.stored_since_status = 0
        # (time, original bytes, stored bytes, seconds) of recent stores, for throughput and ratio
        self.recent: deque[tuple[float, int, int, float]] = deque(maxlen=600)
        self._changed: set[Key] = set()
        self._removed: set[Key] = set()
        self.reset_needed = True

    # -- loading and events ------------------------------------------------------------------

    def load(
        self,
        status: dict[str, Any],
        items: Iterable[dict[str, Any]],
        transfers: Iterable[dict[str, Any]],
    ) -> None:
        """Replace everything with a fresh snapshot (after connecting or after lost events)."""
        rows = sorted((QueueRow.from_item(i) for i in items), key=lambda r: r.updated)
        self.rows = OrderedDict(((r.watch, r.path), r) for r in rows)
        self._cap_done()
        self.set_status(status)
        self.recent.clear()
        for t in sorted(transfers, key=lambda t: float(t.get("time") or 0)):
            if t.get("op") == "put" and not t.get("error") and t.get("stored_size") is not None:
                self.recent.append(
                    (
                        float(t.get("time") or 0),
                        int(t.get("original_size") or 0),
                        int(t["stored_size"]),
                        float(t.get("seconds") or 0),
                    )
                )
        self._changed.clear()
        self._removed.clear()
        self.reset_needed = True

    def set_status(self, status: dict[str, Any]) -> None:
        self.status = status
        self.stored_since_status = 0

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one agent event into the rows; unknown event types are ignored."""
        kind, data = event.get("type", ""), event.get("data") or {}
        if not kind.startswith("file.") or "path" not in data or "watch" not in data:
            return
        key: Key = (data["watch"], data["path"])
        now = self.clock()
        row = self.rows.get(key) or QueueRow(data["watch"], data["path"], "queued", updated=now)
        if kind == "file.queued":
            row = QueueRow(row.watch, row.path, "queued", original=data.get("size"), updated=now)
        elif kind == "file.uploading":
            row = replace(row, state="uploading", original=data.get("size", row.original))
            row = replace(row, updated=now, error=None, stage=None)
        elif kind == "file.progress" and row.state == "uploading":  # else late: the put ended
            moved, total, stage = int(data.get("done") or 0), data.get("total"), data.get("stage")
            started = row.stage_started if stage == row.stage else now
            row = replace(row, stage=stage, stage_started=started, moved=moved, stage_total=total)
        elif kind == "file.stored":
            row = self._stored(row, data, now)
        elif kind == "file.retry":
            attempt = int(data.get("attempt") or 0)
            row = replace(row, state="queued", error=data.get("error"), attempt=attempt, stage=None)
        elif kind == "file.failed":
            row = replace(row, state="failed", error=data.get("error"), updated=now, stage=None)
        elif kind == "file.deleted":
            if self.rows.pop(key, None) is not None:
                self._removed.add(key)
                self._changed.discard(key)
            return
        else:
            return
        if key in self.rows and self.rows[key].state != "stored" and row.state == "stored":
            self.rows.move_to_end(key)  # keeps stored rows in the order they finished, for the cap
        self.rows[key] = row
        self._changed.add(key)
        self._removed.discard(key)
        if row.state == "stored":
            self._cap_done()

    def _stored(self, row: QueueRow, data: dict[str, Any], now: float) -> QueueRow:
        row = replace(
            row,
            state="stored",
            kind=data.get("kind"),
            codec=data.get("codec"),
            original=data.get("original_size"),
            stored=data.get("stored_size"),
            cache_hit=data.get("cache_hit"),
            key=data.get("key"),
            why=data.get("why"),
            error=None,
            updated=now,
            stage=None,
        )
        self.stored_since_status += 1
        if row.original is not None and row.stored is not None:
            seconds = float(data.get("seconds") or 0)
            self.recent.append((now, row.original, row.stored, seconds))
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
        counts["done"] = int(self.status.get("done") or 0) + self.stored_since_status
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
        cache = self.status.get("cache") or {}
        hits, misses = int(cache.get("hits") or 0), int(cache.get("misses") or 0)
        return hits / (hits + misses) if hits + misses else None

    def saved(self) -> tuple[int, int]:
        """(bytes saved, bytes original) over everything the agent stored."""
        totals = self.status.get("bytes") or {}
        return int(totals.get("saved") or 0), int(totals.get("original") or 0)
