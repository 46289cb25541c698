"""The queue table: rows from the QueueModel, updated cell by cell, never rebuilt per event.

A rebuild (clear and add every row) happens only when the user changes the filter, the sort or
the column set (terminal width), or after a full resync. Otherwise a flush adds new rows,
updates the cells whose text changed and removes dropped rows.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from typing import Any

from textual.coordinate import Coordinate
from textual.widgets.data_table import ColumnKey, RowKey

from dgagent_tui import format as fmt
from dgagent_tui.agent.model import Key, QueueModel, QueueRow
from dgagent_tui.widgets import Cell, VimTable

# column key → (label, width or None for auto)
COLUMNS: dict[str, tuple[str, int | None]] = {
    "flag": (" ", 1),
    "name": ("file", None),
    "watch": ("watch", 12),
    "original": ("original", 9),
    "stored": ("stored", 9),
    "ratio": ("ratio", 6),
    "progress": ("progress", 13),  # "reference 59s": a stage and how long it has taken
    "age": ("age", 4),
}
NARROW_HIDDEN = ("watch",)  # below 100 columns
TINY_HIDDEN = ("watch", "age")  # below 90 columns

SORTS: dict[str, Callable[[QueueRow], Any]] = {
    "arrival": lambda r: 0,
    "name": lambda r: r.path,
    "original": lambda r: r.original or 0,
    "stored": lambda r: r.stored or 0,
    "ratio": lambda r: r.ratio if r.ratio is not None else 2.0,
    "state": lambda r: (
        ("failed", "uploading", "queued", "stored").index(r.state)
        if r.state in ("failed", "uploading", "queued", "stored")
        else 9
    ),
    "age": lambda r: -r.updated,
}

KIND_FLAGS = {"reference": "R", "delta": "Δ", "direct": "=", "plain": "="}
STATE_FLAGS = {"uploading": "~", "queued": "·", "failed": "!"}


def row_key(key: Key) -> str:
    return f"{key[0]}\0{key[1]}"


def flag(row: QueueRow, verified: bool = False) -> str:
    if row.state == "stored":
        return "✓" if verified else KIND_FLAGS.get(row.kind or "", "=")
    return STATE_FLAGS.get(row.state, "?")


def progress(row: QueueRow, now: float) -> str:
    if row.state == "stored":
        return "cache hit" if row.cache_hit else "stored"
    if row.state == "queued" and row.attempt:
        return f"retry {row.attempt}"
    if row.state == "uploading":
        if row.stage_total and row.moved:
            done = min(row.moved / row.stage_total, 1.0)
            return f"{fmt.bar(done, 4)} {done:4.0%}"
        # No byte count to show (an xdelta3 encode reports none): say for how long the stage
        # has run, which is true, rather than a rate of 0 B/s, which is not.
        since = row.stage_started if row.stage else row.updated
        stage = row.stage or "uploading"
        return f"{stage} {fmt.age(now - since)}" if since else stage
    return row.state


def tone(row: QueueRow) -> str | None:
    """ "error" for a failed row, "warning" for one waiting to retry (as the activity log's
    ``fmt.severity`` colours the events), None for the rest."""
    if row.state == "failed":
        return "error"
    if row.state == "queued" and row.attempt:
        return "warning"
    return None


def cells(row: QueueRow, now: float, columns: Iterable[str], verified: bool) -> list[str]:
    values = {
        "flag": lambda: flag(row, verified),
        "name": lambda: row.path + fmt.codec_mark(row.codec),
        "watch": lambda: posixpath.basename(row.watch.rstrip("/")),
        "original": lambda: fmt.size(row.original),
        "stored": lambda: fmt.size(row.stored),
        "ratio": lambda: fmt.ratio(row.ratio),
        "progress": lambda: progress(row, now),
        "age": lambda: fmt.age(now - row.updated) if row.updated else "",
    }
    return [values[c]() for c in columns]


class QueueTable(VimTable):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.columns_shown: tuple[str, ...] = ()
        self.name_width = 0
        self.filter_text = ""
        self.sort_by = "arrival"
        self.reverse = False
        self.verified: Callable[[QueueRow], bool] = lambda row: False
        # tone → the Rich style of its rows; the screen fills it from the theme's colours
        self.styles_by_tone: dict[str, str] = {}
        self._shown: dict[str, list[str]] = {}  # row key → the cell texts on screen
        self._tones: dict[str, str | None] = {}  # row key → the tone its cells are drawn in
        self._dirty_cells = False

    def matches(self, row: QueueRow) -> bool:
        return not self.filter_text or self.filter_text.lower() in row.path.lower()

    def set_columns(self, width: int) -> bool:
        """Pick the columns that fit ``width``; True when they changed (rebuild needed)."""
        hidden = TINY_HIDDEN if width < 90 else NARROW_HIDDEN if width < 100 else ()
        wanted = tuple(c for c in COLUMNS if c not in hidden)
        # Every column has a fixed width (cells are not measured): the name takes the rest,
        # less two cells of padding per column and the scrollbar.
        others = sum((COLUMNS[c][1] or 0) + 2 for c in wanted if c != "name")
        name_width = max(12, width - others - 2 - 2)
        if (wanted, name_width) == (self.columns_shown, self.name_width):
            return False
        self.columns_shown, self.name_width = wanted, name_width
        return True

    def rebuild(self, model: QueueModel, now: float) -> None:
        """Clear and add every matching row, in the chosen order (keeps the cursor's row)."""
        current = self._cursor_key()
        self.clear(columns=True)
        for column in self.columns_shown:
            label, width = COLUMNS[column]
            self.add_column(label, key=column, width=width or self.name_width)
        rows = [r for r in model.rows.values() if self.matches(r)]
        if self.sort_by != "arrival":
            rows.sort(key=SORTS[self.sort_by], reverse=self.reverse)
        elif self.reverse:
            rows.reverse()
        self._shown, self._tones = {}, {}
        for row in rows:
            self._add(row, now)
        if current is not None and current in self._shown:
            self.move_cursor(row=self.get_row_index(current))

    def flush(self, model: QueueModel, changed: list[Key], removed: list[Key], now: float) -> int:
        """Apply one batch of model changes; returns the number of cells touched."""
        touched = 0
        for key in removed:
            rk = row_key(key)
            if rk in self._shown:
                self.remove_row(rk)
                del self._shown[rk]
                self._tones.pop(rk, None)
        for key in changed:
            row = model.rows[key]
            rk = row_key(key)
            if rk not in self._shown:
                if self.matches(row):
                    self._add(row, now)
                    touched += len(self.columns_shown)
                continue
            new = cells(row, now, self.columns_shown, self.verified(row))
            old, row_tone = self._shown[rk], tone(row)
            recolour = row_tone != self._tones.get(rk)  # a row turning red redraws every cell
            for column, before, after in zip(self.columns_shown, old, new, strict=True):
                if before != after or recolour:
                    self._set_cell(rk, column, after, row_tone)
                    touched += 1
            self._shown[rk], self._tones[rk] = new, row_tone
        self._repaint()
        return touched

    def _cell(self, text: str, row_tone: str | None) -> Cell:
        return Cell(text, self.styles_by_tone.get(row_tone, "") if row_tone else "")

    def _set_cell(self, rk: str, column: str, text: str, row_tone: str | None) -> None:
        """Change one cell's text without invalidating the row order.

        DataTable.update_cell bumps a counter that also keys the row order and line offsets,
        which then cost O(rows) to rebuild on the next frame (~100 ms at 10,000 rows). A new
        text changes neither, so write the cell and drop only the render caches, as DataTable
        does itself when styles change. Falls back to update_cell if the internals moved.
        """
        data = getattr(self, "_data", None)
        if not isinstance(data, dict) or not hasattr(self, "_row_render_cache"):
            self.update_cell(rk, column, self._cell(text, row_tone))
            return
        data[RowKey(rk)][ColumnKey(column)] = self._cell(text, row_tone)
        self._dirty_cells = True

    def _repaint(self) -> None:
        if self._dirty_cells:
            self._dirty_cells = False
            self._row_render_cache.clear()
            self._cell_render_cache.clear()
            self._row_renderable_cache.clear()
            self._line_cache.clear()
            self.refresh()

    def refresh_clock(self, model: QueueModel, now: float) -> None:
        """Ages and stage times change every second: update them only for the rows on screen."""
        timed = [c for c in ("age", "progress") if c in self.columns_shown]
        first = int(self.scroll_y)
        for index in range(first, min(first + self.size.height, self.row_count)):
            rk = self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value
            if rk is None or rk not in self._shown:
                continue
            watch, _, path = rk.partition("\0")
            row = model.rows.get((watch, path))
            if row is None:
                continue
            for column, text in zip(timed, cells(row, now, timed, False), strict=True):
                position = self.columns_shown.index(column)
                if self._shown[rk][position] != text:
                    self._shown[rk][position] = text
                    self._set_cell(rk, column, text, self._tones.get(rk))
        self._repaint()

    def selected_key(self) -> Key | None:
        rk = self._cursor_key()
        if rk is None:
            return None
        watch, _, path = rk.partition("\0")
        return (watch, path)

    def _cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    def _add(self, row: QueueRow, now: float) -> None:
        rk = row_key((row.watch, row.path))
        texts, row_tone = cells(row, now, self.columns_shown, self.verified(row)), tone(row)
        self._shown[rk], self._tones[rk] = texts, row_tone
        self.add_row(*(self._cell(t, row_tone) for t in texts), key=rk)
