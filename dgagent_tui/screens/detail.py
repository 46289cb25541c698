"""Detail: one file, everything known about it, and what can be done to it."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from dgagent.rpc.records import BrowseEntry
from dgagent_tui import format as fmt
from dgagent_tui.agent.model import QueueRow
from dgagent_tui.footer import DgFooter
from dgagent_tui.screens.actions import ItemScreen, Target
from dgagent_tui.widgets import LinkBar, tone_styles

ON_STORED = frozenset({"download", "restore", "verify", "delete"})


class DetailScreen(ItemScreen):
    DEFAULT_CSS = """
    DetailScreen #facts { padding: 1 2; height: auto; }
    """
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("escape,backspace", "back", "Back", id="detail.back"),
    ]

    def __init__(self, url: str | None, facts: dict[str, Any], *, last_in_space: bool = False):
        super().__init__()
        self.url, self.facts, self.last_in_space = url, facts, last_in_space

    @classmethod
    def for_queue_row(cls, row: QueueRow, url: str) -> DetailScreen:
        facts = {
            "file": row.path,
            "watch": row.watch,
            "state": row.state,
            "kind": row.kind,
            **({"codec": row.codec} if row.codec else {}),
            "original": row.original,
            "stored": row.stored,
            "ratio": row.ratio,
            "cache hit": row.cache_hit,
            **({"why": row.why} if row.why else {}),
            "attempts": row.attempt,
            "error": row.error,
        }
        return cls(url if row.state == "stored" else None, facts)

    @classmethod
    def for_stored_file(cls, url: str, record: BrowseEntry, *, last: bool) -> DetailScreen:
        facts = {
            "file": record.key,
            "kind": record.kind,
            **({"codec": record.codec} if record.codec else {}),
            "original": record.original_size,
            "stored": record.stored_size,
            "ratio": record.ratio,
            "SHA-256": record.sha256,
            "modified": record.last_modified,
            **({"why": record.why} if record.why else {}),
            **({"reference": record.reference} if record.reference else {}),
        }
        return cls(url, facts, last_in_space=last)

    def compose(self) -> ComposeResult:
        yield LinkBar()
        with VerticalScroll():
            yield Static(id="facts")
        yield DgFooter()

    def on_mount(self) -> None:
        self.changed()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ON_STORED and self.url is None:
            return False  # not stored yet: hide the keys rather than answer "select a file"
        return super().check_action(action, parameters)

    def changed(self) -> None:
        lines = [f"[b]{escape(self.url or str(self.facts.get('file')))}[/b]", ""]
        red = tone_styles(self.app)["error"]
        for name, value in self.facts.items():
            if name == "error" and value:
                lines.append(f"{name:<10} [{red}]{escape(str(value))}[/]")
                lines.append(f"{'':<10} [dim]fix the cause, then press r on the queue to retry[/]")
                continue
            if name in ("original", "stored"):
                text = fmt.size(value)
            elif name == "ratio" and value is not None:
                text = f"{fmt.ratio(value)}  {fmt.bar(value, 20)}▏ stored / original"
            elif value is None:
                text = fmt.MISSING
            elif isinstance(value, bool):
                text = "yes" if value else "no"
            else:
                text = str(value)
            lines.append(f"{name:<10} {escape(text)}")
        sha = self.dg.verified.get(self.url or "")
        if self.url is None:
            lines += ["", "[dim]not stored yet: nothing to download, verify or delete[/dim]"]
        else:
            verified = f"[b $success]✓ SHA-256 {sha}[/]" if sha else "not yet (v)"
            lines += ["", f"verified   {verified}"]
        self.query_one("#facts", Static).update("\n".join(lines))

    def target(self) -> Target | None:
        return Target(self.url, self.last_in_space) if self.url else None

    def deleted(self) -> None:
        self.dismiss(None)

    def action_back(self) -> None:
        self.dismiss(None)
