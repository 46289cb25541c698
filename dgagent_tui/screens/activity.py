"""Activity (key 3): the agent's event log as it happens, with follow on or off and a filter."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.geometry import Size
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip
from textual.widgets import Input, Static

from dgagent_tui import format as fmt
from dgagent_tui.footer import DgFooter
from dgagent_tui.widgets import FilterInput, LinkBar, tone_styles

if TYPE_CHECKING:
    from dgagent_tui.app import DgApp


INDENT = 10  # "HH:MM:SS  ": wrapped lines start under the text, not under the time
MAX_LINES = 20_000  # screen lines kept (an event may wrap over a few)
DIM = Style(dim=True)


def line(event: dict[str, Any]) -> str:
    return f"{fmt.short_time(event.get('time'))}  {fmt.event_text(event)}"


def wrapped(event: dict[str, Any], width: int) -> list[tuple[str, str, str | None]]:
    """An event as screen lines (time or indent, text, tone), wrapped to ``width`` columns.

    >>> event = {"time": "2026-11-25T10:00:01Z", "type": "file.failed",
    ...          "data": {"path": "a.zip", "error": "the bucket refused it"}}
    >>> wrapped(event, 40)
    [('10:00:01  ', 'failed    a.zip: the bucket', 'error'), ('          ', 'refused it', 'error')]
    """
    tone = fmt.severity(event)
    parts = textwrap.wrap(
        fmt.event_text(event), max(width - INDENT, 20), break_on_hyphens=False
    ) or [""]
    prefix = f"{fmt.short_time(event.get('time'))}  "
    return [(prefix if n == 0 else " " * INDENT, part, tone) for n, part in enumerate(parts)]


class EventLog(ScrollView, can_focus=True):
    """The log, wrapped to its width with a hanging indent (nothing is cut at the right edge),
    failures in the theme's error colour and retries in its warning colour.

    Lines are kept as plain text and styled only when drawn, for the lines on screen, so a
    filter that rewrites thousands of events stays quick.
    """

    ALLOW_SELECT = True  # error messages are worth copying
    DEFAULT_CSS = """
    EventLog { background: $surface; color: $text; overflow-y: scroll; overflow-x: hidden; }
    EventLog:focus { background-tint: $foreground 5%; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.auto_scroll = True
        self.tones: dict[str, str] = {}  # tone → Rich style (the theme's error and warning)
        self._lines: list[tuple[str, str, str | None]] = []

    @property
    def lines(self) -> list[str]:
        """The text of every line, as shown."""
        return [prefix + text for prefix, text, _ in self._lines]

    def clear(self) -> None:
        self._lines.clear()
        self.virtual_size = Size(0, 0)
        self.refresh()

    def write_events(self, events: list[dict[str, Any]]) -> None:
        # overflow-y is "scroll", so this width does not change when the scrollbar appears
        width = self.scrollable_content_region.width or self.app.size.width - 2
        at_end = self.is_vertical_scroll_end
        for event in events:
            self._lines += wrapped(event, width)
        del self._lines[: max(len(self._lines) - MAX_LINES, 0)]
        self.virtual_size = Size(width, len(self._lines))
        if self.auto_scroll and at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def strip(self, index: int, width: int) -> Strip:
        """Line ``index`` of the log, drawn ``width`` cells wide (with the mouse selection)."""
        base = self.rich_style
        if not 0 <= index < len(self._lines):
            return Strip.blank(width, base)
        prefix, text, tone = self._lines[index]
        line = Text(no_wrap=True, end="")
        line.append(prefix, base + DIM if prefix.strip() else base)
        line.append(text, base + Style.parse(self.tones[tone]) if tone in self.tones else base)
        selection = self.text_selection
        span = selection.get_span(index) if selection is not None else None
        if span is not None:
            start, end = span
            selected = self.screen.get_component_rich_style("screen--selection")
            line.stylize(selected, start, len(line) if end == -1 else end)
        strip = Strip(line.render(self.app.console), line.cell_len)
        return strip.adjust_cell_length(width, base).apply_offsets(0, index)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract("\n".join(self.lines)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()

    def render_line(self, y: int) -> Strip:
        return self.strip(self.scroll_offset.y + y, self.size.width)


class ActivityScreen(Screen[None]):
    AUTO_FOCUS = "EventLog"
    DEFAULT_CSS = """
    ActivityScreen #follow { height: 1; padding: 0 1; color: $text-muted; }
    ActivityScreen EventLog { height: 1fr; }
    """
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("f", "follow", "Follow on/off", id="activity.follow"),
        Binding("slash", "filter", "Filter", key_display="/", id="view.filter"),
        Binding("j", "scroll('down')", "Down", show=False, id="table.down"),
        Binding("k", "scroll('up')", "Up", show=False, id="table.up"),
        Binding("g", "scroll('home')", "Top", show=False, id="table.top"),
        Binding("G", "scroll('end')", "Bottom", show=False, id="table.bottom"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.following = True
        self.filter_text = ""
        self._written = 0  # app.events_seen when we last wrote
        self._width = 0  # the width the log was last wrapped to

    @property
    def dg(self) -> DgApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield LinkBar()
        yield Static(id="follow")
        yield FilterInput()
        yield EventLog()
        yield DgFooter()

    def on_mount(self) -> None:
        self.query_one(EventLog).tones = tone_styles(self.app)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self.call_after_refresh(self._rewrite)  # once the log has a width to wrap to
        self.set_interval(0.25, self._append)
        self.query_one(EventLog).focus()

    def _theme_changed(self, _: object) -> None:
        self.query_one(EventLog).tones = tone_styles(self.app)
        self._rewrite()

    def on_resize(self, event: Resize) -> None:
        if event.size.width != self._width:  # lines were wrapped to the old width
            self._width = event.size.width
            self.call_after_refresh(self._rewrite)

    def _matches(self, event: dict[str, Any]) -> bool:
        return not self.filter_text or self.filter_text.lower() in line(event).lower()

    def _rewrite(self) -> None:
        log = self.query_one(EventLog)
        log.clear()
        log.write_events([e for e in self.dg.events if self._matches(e)])
        if self.following:
            log.scroll_end(animate=False)
        self._written = self.dg.events_seen
        self._status()

    def _append(self) -> None:
        new = self.dg.events_seen - self._written
        if new <= 0:
            return
        events = list(self.dg.events)[-min(new, len(self.dg.events)) :]
        self.query_one(EventLog).write_events([e for e in events if self._matches(e)])
        self._written = self.dg.events_seen
        self._status()

    def _status(self) -> None:
        state = "on" if self.following else "off (f to follow)"
        where = f"  filter: {escape(self.filter_text)}" if self.filter_text else ""
        self.query_one("#follow", Static).update(
            f"follow {state}{where}  ·  {len(self.dg.events)} events"
        )

    def action_follow(self) -> None:
        self.following = not self.following
        log = self.query_one(EventLog)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)
        self._status()

    def action_scroll(self, where: str) -> None:
        log = self.query_one(EventLog)
        if where == "down":
            log.scroll_down(animate=False)
        elif where == "up":
            log.scroll_up(animate=False)
        elif where == "home":
            log.scroll_home(animate=False)
        else:
            log.scroll_end(animate=False)

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._rewrite()
