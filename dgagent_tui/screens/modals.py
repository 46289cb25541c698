"""Modal dialogs: confirm (Cancel focused), typed confirm, prune rule, download destination,
error, help."""

from __future__ import annotations

import re

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 72; max-width: 95%; height: auto; border: thick $primary; background: $surface;
    padding: 1 2;
}}
{name} Horizontal {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} Button {{ margin-left: 2; }}
"""


class ConfirmModal(ModalScreen[bool]):
    """Yes or no; Cancel has the focus, so a stray Enter never confirms."""

    DEFAULT_CSS = MODAL_CSS.format(name="ConfirmModal")
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape,n", "answer(False)", "Cancel", id="confirm.no"),
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
    ]

    def __init__(self, title: str, body: str, *, yes: str = "Delete") -> None:
        super().__init__()
        self.title_text, self.body, self.yes = title, body, yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{self.title_text}[/b]")
            yield Static(self.body)
            yield Static("[dim]\\[y] yes · \\[n] or escape: cancel[/dim]")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(f"{self.yes} (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TypedConfirmModal(ModalScreen[bool]):
    """For deletes that cannot be undone in bulk: type the name to enable the button."""

    DEFAULT_CSS = MODAL_CSS.format(name="TypedConfirmModal")
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape", "cancel", "Cancel", id="confirm.no"),
    ]

    def __init__(self, title: str, body: str, name: str) -> None:
        super().__init__()
        self.title_text, self.body, self.expected = title, body, name

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{self.title_text}[/b]")
            yield Static(self.body)
            yield Static(f"Type [b]{self.expected}[/b] to confirm:")
            yield Input(id="typed")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Delete", id="yes", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = event.value != self.expected

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value == self.expected:
            self.dismiss(True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_cancel(self) -> None:
        self.dismiss(False)


_DURATION = re.compile(r"\d+(\.\d+)?\s*(s|min|h|d|w|y)")


class PruneModal(ModalScreen[tuple[int | None, str | None] | None]):
    """The retention rule of a prune: keep each line's last N versions and/or those newer than
    a duration. It only asks; the agent previews what would go before anything does."""

    DEFAULT_CSS = MODAL_CSS.format(name="PruneModal") + "PruneModal #problem { color: $error; }"
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape", "cancel", "Cancel", id="prune.cancel"),
    ]

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Prune old versions[/b]")
            yield Static(
                f"{self.url}\nIn this folder and those under it, each release line keeps its "
                "newest versions; the rest are deleted, and references no kept file needs are "
                "given back. Files still in a watched folder stay. A preview comes first."
            )
            yield Label("keep the last N versions of each line (empty: no count rule)")
            yield Input(value="5", id="keep")
            yield Label("and the versions newer than (e.g. 90d, 12w, 1y; empty: no age rule)")
            yield Input(id="newer")
            yield Static("", id="problem")
            with Horizontal():
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Preview", id="preview", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#keep", Input).focus()

    def _rule(self) -> tuple[int | None, str | None] | None:
        keep = self.query_one("#keep", Input).value.strip()
        newer = self.query_one("#newer", Input).value.strip().lower()
        problem = ""
        if keep and (not keep.isdigit() or int(keep) < 1):
            problem = "the count must be a whole number of at least 1"
        elif newer and not _DURATION.fullmatch(newer):
            problem = "the age must be a number and a unit: s, min, h, d, w or y (e.g. 90d)"
        elif not keep and not newer:
            problem = "give a count, an age, or both"
        self.query_one("#problem", Static).update(problem)
        return None if problem else (int(keep) if keep else None, newer or None)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._preview()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "preview":
            self._preview()
        else:
            self.dismiss(None)

    def _preview(self) -> None:
        rule = self._rule()
        if rule is not None:
            self.dismiss(rule)

    def action_cancel(self) -> None:
        self.dismiss(None)


class DownloadModal(ModalScreen[str | None]):
    """Where to put a downloaded file (a path on the agent's machine; ~ is expanded there)."""

    DEFAULT_CSS = MODAL_CSS.format(name="DownloadModal")
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape", "cancel", "Cancel", id="download.cancel"),
    ]

    def __init__(self, url: str, default: str) -> None:
        super().__init__()
        self.url, self.default = url, default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Download[/b]")
            yield Static(self.url)
            yield Static("to (a folder keeps the file's name):")
            yield Input(self.default, id="dest")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Download", id="ok", variant="primary")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        value = self.query_one("#dest", Input).value.strip()
        self.dismiss(value or None if event.button.id == "ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorModal(ModalScreen[None]):
    """An error in words, never a traceback; ``c`` copies it (OSC 52 works over SSH)."""

    DEFAULT_CSS = MODAL_CSS.format(name="ErrorModal")
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape,enter", "close", "Close", id="error.close"),
        Binding("c", "copy", "Copy", id="error.copy"),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text, self.message = title, message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b $error]{self.title_text}[/]")
            yield Static(self.message, markup=False)
            yield Static("[dim]\\[c] copy · escape: close[/dim]")
            with Horizontal():
                yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed)
    def _pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.message)
        self.notify("copied")
