"""Small widgets every screen uses: the link bar, a table with vim keys, a filter input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

if TYPE_CHECKING:
    from tui.app import DgApp


class LinkBar(Static):
    """One line: is the agent there, which one, and whether what we show is current."""

    DEFAULT_CSS = """
    LinkBar { height: 1; background: $boost; padding: 0 1; }
    LinkBar.-stale { background: $warning 30%; }
    LinkBar.-offline { background: $error 30%; }
    """

    def on_mount(self) -> None:
        app: DgApp = self.app  # type: ignore[assignment]
        self.watch(app, "link_text", self._show)

    def _show(self, text: str) -> None:
        app: DgApp = self.app  # type: ignore[assignment]
        self.update(text)
        self.set_class(app.stale and app.link_up, "-stale")
        self.set_class(not app.link_up, "-offline")


class DgFooter(Footer):
    """The key hints, packed tighter below 100 columns so the mode keys stay visible."""

    def on_mount(self) -> None:
        self.compact = self.app.size.width < 100

    def on_resize(self) -> None:
        self.compact = self.app.size.width < 100


class Cell:
    """Plain text for a DataTable cell: never parsed as markup, never measured.

    DataTable turns ``str`` cells into markup (a file named ``[old].zip`` would lose its
    brackets) and measures every cell of every new row, which costs seconds at 10,000 rows.
    This renderable has no ``__rich_measure__``, so columns need a fixed width.
    """

    __slots__ = ("style", "text")

    def __init__(self, text: str, style: str = "") -> None:
        self.text, self.style = text, style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Segment(self.text, console.get_style(self.style) if self.style else None)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cell({self.text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Cell):
            return self.text == other.text
        return self.text == other if isinstance(other, str) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.text)


class VimTable(DataTable[Any]):
    """A row-cursor DataTable that also answers j k g G."""

    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("g", "scroll_top", "Top", show=False, id="table.top"),
        Binding("G", "scroll_bottom", "Bottom", show=False, id="table.bottom"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def action_scroll_top(self) -> None:
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(row=max(self.row_count - 1, 0))


class FilterInput(Input):
    """The per-view filter: hidden until ``/``; escape clears and hides it."""

    DEFAULT_CSS = """
    FilterInput { display: none; height: 3; }
    FilterInput.-shown { display: block; }
    """

    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape", "dismiss_filter", "Clear filter", id="filter.clear"),
    ]

    def __init__(self) -> None:
        super().__init__(placeholder="filter (enter keeps it, escape clears)", classes="filter")

    def open(self) -> None:
        self.add_class("-shown")
        self.focus()

    def action_dismiss_filter(self) -> None:
        self.value = ""
        self.remove_class("-shown")
        self.screen.focus_next()
