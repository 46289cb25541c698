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

from tui import format as fmt
from tui.agent.model import Key, QueueModel, QueueRow
from tui.widgets import Cell, VimTable

# column key → (label, width or None for auto)
COLUMNS: dict[str, tuple[str, int | None]] = {
    "flag": (" ", 1),
    "name": ("file", None),
    "watch": ("watch", 12),
    "original": ("original", 9),
    "stored": ("stored", 9),
    "ratio": ("ratio", 6),
    "progress": ("progress", 10),
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


def progress(row: QueueRow) -> str:
    if row.state == "stored":
        return "cache hit" if row.cache_hit else "stored"
    if row.state == "queued" and row.attempt:
        return f"retry {row.attempt}"
    if row.state == "uploading" and row.stage:
        if row.stage_total and row.moved:
            done = min(row.moved / row.stage_total, 1.0)
            return f"{fmt.bar(done, 4)} {done:4.0%}"
        return row.stage
    return row.state


def cells(row: QueueRow, now: float, columns: Iterable[str], verified: bool) -> list[str]:
    values = {
        "flag": lambda: flag(row, verified),
        "name": lambda: row.path + fmt.codec_mark(row.codec),
        "watch": lambda: posixpath.basename(row.watch.rstrip("/")),
        "original": lambda: fmt.size(row.original),
        "stored": lambda: fmt.size(row.stored),
        "ratio": lambda: fmt.ratio(row.ratio),
        "progress": lambda: progress(row),
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
        self._shown: dict[str, list[str]] = {}  # row key → the cell texts on screen
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
        self._shown = {}
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
        for key in changed:
            row = model.rows[key]
            rk = row_key(key)
            if rk not in self._shown:
                if self.matches(row):
                    self._add(row, now)
                    touched += len(self.columns_shown)
                continue
            new = cells(row, now, self.columns_shown, self.verified(row))
            old = self._shown[rk]
            for column, before, after in zip(self.columns_shown, old, new, strict=True):
                if before != after:
                    self._set_cell(rk, column, after)
                    touched += 1
            self._shown[rk] = new
        self._repaint()
        return touched

    def _set_cell(self, rk: str, column: str, text: str) -> None:
        """Change one cell's text without invalidating the row order.

        DataTable.update_cell bumps a counter that also keys the row order and line offsets,
        which then cost O(rows) to rebuild on the next frame (~100 ms at 10,000 rows). A new
        text changes neither, so write the cell and drop only the render caches, as DataTable
        does itself when styles change. Falls back to update_cell if the internals moved.
        """
        data = getattr(self, "_data", None)
        if not isinstance(data, dict) or not hasattr(self, "_row_render_cache"):
            self.update_cell(rk, column, Cell(text))
            return
        data[RowKey(rk)][ColumnKey(column)] = Cell(text)
        self._dirty_cells = True

    def _repaint(self) -> None:
        if self._dirty_cells:
            self._dirty_cells = False
            self._row_render_cache.clear()
            self._cell_render_cache.clear()
            self._row_renderable_cache.clear()
            self._line_cache.clear()
            self.refresh()

    def refresh_ages(self, model: QueueModel, now: float) -> None:
        """Ages change every second: update them only for the rows on screen."""
        if "age" not in self.columns_shown:
            return
        first = int(self.scroll_y)
        position = self.columns_shown.index("age")
        for index in range(first, min(first + self.size.height, self.row_count)):
            rk = self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value
            if rk is None or rk not in self._shown:
                continue
            watch, _, path = rk.partition("\0")
            row = model.rows.get((watch, path))
            if row is None or not row.updated:
                continue
            text = fmt.age(now - row.updated)
            if self._shown[rk][position] != text:
                self._shown[rk][position] = text
                self._set_cell(rk, "age", text)
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
        texts = cells(row, now, self.columns_shown, self.verified(row))
        self._shown[rk] = texts
        self.add_row(*(Cell(t) for t in texts), key=rk)
