"""Small widgets the screens use: the link bar, a table with vim keys, a filter input, the
problems strip, bar charts and plain cells (the footer has its own module)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.scrollbar import ScrollBarRender
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from dgagent_tui import format as fmt
from dgagent_tui.agent.model import Problem

if TYPE_CHECKING:
    from dgagent_tui.app import DgApp


def tone_styles(app: App[Any]) -> dict[str, str]:
    """The Rich styles of the "error" and "warning" tones in the app's theme, so failed rows,
    failed events and the problems strip share one red and one amber whatever the theme."""
    variables = app.theme_variables or app.get_css_variables()
    return {"error": variables.get("error", "red"), "warning": variables.get("warning", "yellow")}


class WholeCellScrollBarRender(ScrollBarRender):
    """Scrollbars whose thumb fills whole cells.

    Textual draws the thumb's ends with eighth-block glyphs (``▁▂`` twice over in a vertical bar
    two cells wide). In a terminal whose colours blur the track into the background only those
    glyphs show, and users took them for stray marks. A whole-cell thumb is a plain block.
    """

    VERTICAL_BARS: ClassVar[list[str]] = [" "] * 8
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "] * 8


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
        # The state is watched apart from the text: after a reconnect the text stays
        # "connected" while the state goes from stale to current, and the colour must follow.
        self.watch(app, "link_state", self._show)

    def _show(self, _: str) -> None:
        app: DgApp = self.app  # type: ignore[assignment]
        self.update(app.link_text)
        self.set_class(app.link_state == "stale", "-stale")
        self.set_class(app.link_state == "down", "-offline")


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


class ProblemsStrip(VerticalScroll):
    """What the agent says the user must act on, each with the command that fixes it.

    Hidden while there is nothing (or the agent is too old to say); shown in the theme's warning
    colour at the top of the queue, where it is seen first. Many problems scroll (tab reaches
    the strip) rather than being cut off at its height.
    """

    DEFAULT_CSS = """
    ProblemsStrip {
        display: none; height: auto; max-height: 40%;
        background: $warning 15%; border-left: outer $warning; padding: 0 1;
    }
    ProblemsStrip.-shown { display: block; }
    ProblemsStrip > Static { height: auto; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems: list[Problem] = []

    def compose(self) -> ComposeResult:
        yield Static()

    @property
    def text(self) -> str:
        return str(self.query_one(Static).render())

    def show(self, problems: list[Problem]) -> None:
        if problems == self.problems:
            return  # called a few times a second; redraw only on a change
        self.problems = problems
        self.set_class(bool(problems), "-shown")
        amber = tone_styles(self.app)["warning"]
        n = len(problems)
        text = Text(f"{n} problem{'s' * (n != 1)} need{'s' * (n == 1)} you:", style=f"bold {amber}")
        for problem in problems:
            where = f"{problem.watch}: " if problem.watch else ""
            text.append(f"\n▲ {where}", style=amber)
            text.append(problem.problem)
            if problem.fix:
                text.append("\n  → ", style=amber)
                text.append(problem.fix, style="bold")
        self.query_one(Static).update(text)


class Bars(Widget):
    """A small bar chart: one column per value, newest at the right, on a fixed scale (so an
    idle minute is blank and a 1 % ratio looks small, unlike Textual's min-to-max Sparkline)."""

    DEFAULT_CSS = """
    Bars { height: 2; color: $primary; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values: list[float] = []
        self.top = 1.0

    def show(self, values: list[float], top: float) -> None:
        if (values, top) != (self.values, self.top):
            self.values, self.top = values, top
            self.refresh()

    def render(self) -> str:
        lines = fmt.spark(self.values, self.size.width, top=self.top, rows=self.size.height)
        return "\n".join(lines)


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
