"""Help: every key of the screen underneath, with its binding id; typing filters at once."""

from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from dgagent_tui.screens.modals import MODAL_CSS

HelpRow = tuple[str, str, str]  # key, what it does, binding id (for the keymap file)


class HelpModal(ModalScreen[None]):
    DEFAULT_CSS = (
        MODAL_CSS.format(name="HelpModal")
        + """
    HelpModal > Vertical { width: 80; height: 90%; }
    HelpModal VerticalScroll { height: 1fr; }
    """
    )
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape", "close", "Close", id="help.close"),
        # The filter keeps the focus (typing filters), so the list scrolls from here: at 24
        # lines it does not fit.
        Binding("down", "scroll(1)", "Scroll down", show=False, id="help.down"),
        Binding("up", "scroll(-1)", "Scroll up", show=False, id="help.up"),
        Binding("pagedown", "scroll(10)", "Page down", show=False, id="help.pagedown"),
        Binding("pageup", "scroll(-10)", "Page up", show=False, id="help.pageup"),
    ]

    def __init__(self, rows: list[HelpRow], keymap_file: str) -> None:
        super().__init__()
        self.rows = sorted(set(rows), key=lambda r: (r[2].split(".")[0], r))
        self.keymap_file = keymap_file

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Keys[/b]  (type to filter; ↑ ↓ scroll; escape closes)")
            yield Input(placeholder="filter keys", id="help-filter")
            with VerticalScroll(can_focus=False):
                yield Static(id="rows")
            yield Static(f"[dim]Remap keys by id in {self.keymap_file} under \\[keymap][/dim]")

    def on_mount(self) -> None:
        self._show("")
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _filter(self, event: Input.Changed) -> None:
        self._show(event.value)

    def _show(self, text: str) -> None:
        needle = text.lower()
        lines = [
            f"{escape(key):<14} {escape(what):<34} [dim]{bid}[/dim]"
            for key, what, bid in self.rows
            if needle in f"{key} {what} {bid}".lower()
        ]
        self.query_one("#rows", Static).update("\n".join(lines) or "[dim]no key matches[/dim]")

    def action_scroll(self, lines: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
