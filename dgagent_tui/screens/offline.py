"""Offline: the agent does not answer. Says why, how to start it, and keeps trying."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widgets import Static

from dgagent_tui.footer import DgFooter
from dgagent_tui.widgets import LinkBar

if TYPE_CHECKING:
    from dgagent_tui.app import DgApp


class OfflineScreen(Screen[None]):
    DEFAULT_CSS = """
    OfflineScreen Center { height: 1fr; align: center middle; }
    OfflineScreen #box {
        width: 76; max-width: 100%; height: auto; border: round $error; padding: 1 2;
    }
    """

    def compose(self) -> ComposeResult:
        yield LinkBar()
        with Center(), Vertical(id="box"):
            yield Static("[b]The agent is not running[/b]")
            yield Static(id="details")
        yield DgFooter()

    def on_mount(self) -> None:
        app: DgApp = self.app  # type: ignore[assignment]
        self.watch(app, "link_text", lambda _: self._show(), init=False)
        self._show()

    def _show(self) -> None:
        app: DgApp = self.app  # type: ignore[assignment]
        stale = (
            "\nThe queue and browse views keep the last data they had, marked stale.\n"
            if app.stale
            else ""
        )
        # The label stands for the socket path everywhere (tests pin it for stable screenshots).
        error = (app.last_error or "connecting…").replace(str(app.socket_path), app.label)
        self.query_one("#details", Static).update(
            f"\nsocket  {escape(app.label)}\n"
            f"error   {escape(error)}\n\n"
            "Start it in another terminal with:\n\n"
            "    [b]dg-agent start[/b]     (or [b]dg-agent run[/b] in the foreground)\n\n"
            f"Retrying by itself (next try in {app.retry_in:.1f} s); this screen switches to the "
            f"queue as soon as the agent answers.{stale}\n"
            "[dim]q quits; the agent is never stopped by dg-tui.[/dim]"
        )
