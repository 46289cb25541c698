"""Activity (key 3): the agent's event log as it happens, with follow on or off and a filter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Log, Static

from tui import format as fmt
from tui.widgets import DgFooter, FilterInput, LinkBar

if TYPE_CHECKING:
    from tui.app import DgApp


def line(event: dict[str, Any]) -> str:
    return f"{fmt.short_time(event.get('time'))}  {fmt.event_text(event)}"


class ActivityScreen(Screen[None]):
    AUTO_FOCUS = "Log"
    DEFAULT_CSS = """
    ActivityScreen #follow { height: 1; padding: 0 1; color: $text-muted; }
    ActivityScreen Log { height: 1fr; }
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

    @property
    def dg(self) -> DgApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield LinkBar()
        yield Static(id="follow")
        yield FilterInput()
        yield Log(max_lines=5000, auto_scroll=True)
        yield DgFooter()

    def on_mount(self) -> None:
        self._rewrite()
        self.set_interval(0.25, self._append)
        self.query_one(Log).focus()

    def _matches(self, event: dict[str, Any]) -> bool:
        return not self.filter_text or self.filter_text.lower() in line(event).lower()

    def _rewrite(self) -> None:
        log = self.query_one(Log)
        log.clear()
        log.write_lines([line(e) for e in self.dg.events if self._matches(e)])
        self._written = self.dg.events_seen
        self._status()

    def _append(self) -> None:
        new = self.dg.events_seen - self._written
        if new <= 0:
            return
        events = list(self.dg.events)[-min(new, len(self.dg.events)) :]
        self.query_one(Log).write_lines([line(e) for e in events if self._matches(e)])
        self._written = self.dg.events_seen

    def _status(self) -> None:
        state = "on" if self.following else "off (f to follow)"
        where = f"  filter: {self.filter_text}" if self.filter_text else ""
        self.query_one("#follow", Static).update(f"follow {state}{where}")

    def action_follow(self) -> None:
        self.following = not self.following
        log = self.query_one(Log)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)
        self._status()

    def action_scroll(self, where: str) -> None:
        log = self.query_one(Log)
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
