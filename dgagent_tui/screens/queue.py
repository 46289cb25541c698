"""Queue (key 1): what the agent is doing now, with every file's ratio as it is stored."""

from __future__ import annotations

import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import DataTable, Input, Label, Static

from dgagent_tui import format as fmt
from dgagent_tui.footer import DgFooter
from dgagent_tui.screens.actions import ItemScreen, Target
from dgagent_tui.screens.detail import DetailScreen
from dgagent_tui.screens.queue_table import SORTS, QueueTable
from dgagent_tui.widgets import Bars, FilterInput, LinkBar, ProblemsStrip, tone_styles

FLUSH_EVERY = 0.25  # seconds: a few table updates a second, however many events arrive


class QueueScreen(ItemScreen):
    AUTO_FOCUS = "QueueTable"
    DEFAULT_CSS = """
    QueueScreen #summary { height: auto; padding: 0 1; }
    QueueScreen #charts { height: 3; }
    QueueScreen #charts > Vertical { width: 1fr; padding: 0 1; }
    QueueScreen #charts Bars { height: 2; }
    QueueScreen.-narrow #charts { display: none; }
    QueueScreen QueueTable { height: 1fr; }
    """
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("enter", "details", "Details", id="queue.details"),
        Binding("slash", "filter", "Filter", key_display="/", id="view.filter"),
        Binding("s", "sort", "Sort", show=False, id="view.sort"),
        Binding("S", "reverse", "Reverse", show=False, id="view.reverse"),
        Binding("r", "retry", "Retry", show=False, id="item.retry"),
        Binding("c", "cancel", "Cancel", show=False, id="item.cancel"),
        Binding("y", "copy", "Copy URI", show=False, id="item.copy"),
    ]

    def compose(self) -> ComposeResult:
        yield LinkBar()
        yield ProblemsStrip()
        yield Static(id="summary")
        with Horizontal(id="charts"):
            with Vertical():
                yield Label(id="tp-label")
                yield Bars(id="throughput")
            with Vertical():
                yield Label(id="ratio-label")
                yield Bars(id="ratios")
        yield FilterInput()
        yield QueueTable(id="queue")
        yield DgFooter()

    def on_mount(self) -> None:
        table = self.query_one(QueueTable)
        table.verified = lambda row: self._url(row.watch, row.path) in self.dg.verified
        table.styles_by_tone = tone_styles(self.app)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        table.set_columns(self.app.size.width)
        self.set_class(self.app.size.width < 100, "-narrow")
        self.dg.model.reset_needed = True
        self.flush()
        self.set_interval(FLUSH_EVERY, self.flush)
        self.set_interval(1.0, self.tick)
        self.tick()
        table.focus()

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width < 100, "-narrow")
        if self.query_one(QueueTable).set_columns(event.size.width):
            self.dg.model.reset_needed = True
            self.flush()

    def _theme_changed(self, _: object) -> None:
        self.query_one(QueueTable).styles_by_tone = tone_styles(self.app)
        self.query_one(ProblemsStrip).problems = []  # redrawn in the new colours at the flush
        self.dg.model.reset_needed = True

    # -- drawing -------------------------------------------------------------------------------

    def flush(self) -> float:
        """Move model changes into the table; returns the seconds it took (for the benchmark)."""
        started = time.perf_counter()
        model, table, now = self.dg.model, self.query_one(QueueTable), self.dg.clock()
        reset, changed, removed = model.take_changes()
        if reset:
            table.rebuild(model, now)
            self.tick()
        elif changed or removed:
            table.flush(model, changed, removed, now)
        self._summary()
        self.query_one(ProblemsStrip).show(self.dg.model.problems())
        return time.perf_counter() - started

    def tick(self) -> None:
        """Once a second: charts and the ages of the rows on screen."""
        model = self.dg.model
        series, ratios = model.throughput_series(), model.ratio_series()
        peak = max(series, default=0.0)
        self.query_one("#throughput", Bars).show(series, peak)
        self.query_one("#ratios", Bars).show(ratios, 1.0)  # a full bar is 100 % of the original
        self.query_one("#tp-label", Label).update(
            f"throughput, last minute: peak {fmt.size(peak)}/s"
            if peak
            else "nothing stored in the last minute"
        )
        self.query_one("#ratio-label", Label).update(
            f"stored / original, last {len(ratios)} files: latest {fmt.ratio(ratios[-1])}"
            if ratios
            else "stored / original: no file stored yet"
        )
        self.query_one(QueueTable).refresh_clock(model, self.dg.clock())

    def _summary(self) -> None:
        model = self.dg.model
        counts = model.counts()
        saved, original = model.saved()
        hit = model.cache_hit_rate()
        paused = "[b $warning]paused[/]  " if model.paused else ""
        failed = f"[b $error]{counts['failed']} failed[/]" if counts["failed"] else "0 failed"
        # A rate only while bytes are being stored: a long encode moves none until it ends,
        # and "0 B/s" beside it read as stuck. The rows say how long each stage has run.
        rate = model.throughput()
        moving = f"{fmt.size(rate)}/s stored (last 10 s) · " if rate else ""
        cache = f"reference cache {fmt.ratio(hit)} hits · " if hit is not None else ""
        share = f" ({fmt.ratio(saved / original)})" if original else ""
        text = (
            f"{paused}[b]{counts['uploading']}[/b] uploading · [b]{counts['queued']}[/b] queued · "
            f"[b]{counts['done']}[/b] done · {failed} · {moving}{cache}"
            f"saved [b]{fmt.size(saved)}[/b] of {fmt.size(original)}{share}"
        )
        self.query_one("#summary", Static).update(text)

    # -- selection and actions -----------------------------------------------------------------

    def _url(self, watch: str, path: str) -> str:
        for w in self.dg.model.watches:
            if w.dir == watch:
                return w.url.rstrip("/") + "/" + path
        return f"{watch}/{path}"

    def target(self) -> Target | None:
        key = self.query_one(QueueTable).selected_key()
        row = self.dg.model.rows.get(key) if key else None
        if row is None or row.state != "stored":
            return None
        return Target(self._url(row.watch, row.path))

    def action_details(self) -> None:
        key = self.query_one(QueueTable).selected_key()
        row = self.dg.model.rows.get(key) if key else None
        if row is not None:
            self.app.push_screen(DetailScreen.for_queue_row(row, self._url(row.watch, row.path)))

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_details()

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self.query_one(QueueTable)
        table.filter_text = event.value
        self.dg.model.reset_needed = True
        self.flush()

    @on(Input.Submitted, ".filter")
    def _filter_kept(self) -> None:
        self.query_one(QueueTable).focus()

    def action_sort(self) -> None:
        table = self.query_one(QueueTable)
        names = list(SORTS)
        table.sort_by = names[(names.index(table.sort_by) + 1) % len(names)]
        self.notify(f"sorted by {table.sort_by}", timeout=1.5)
        self.dg.model.reset_needed = True
        self.flush()

    def action_reverse(self) -> None:
        table = self.query_one(QueueTable)
        table.reverse = not table.reverse
        self.dg.model.reset_needed = True
        self.flush()

    def action_retry(self) -> None:
        self._item_call("retry")

    def action_cancel(self) -> None:
        self._item_call("cancel")

    def _item_call(self, method: str) -> None:
        key = self.query_one(QueueTable).selected_key()
        row = self.dg.model.rows.get(key) if key else None
        if key is None or row is None:
            return
        # Said here rather than as the agent's "not found" in an error box.
        if method == "retry" and row.state != "failed":
            self.notify("r retries a failed file; this one has not failed", severity="warning")
            return
        if method == "cancel" and row.state not in ("queued", "uploading"):
            self.notify("c cancels a queued or uploading file; this one is not", severity="warning")
            return
        params = {"watch": key[0], "path": key[1]}
        self.dg.run_op(self.dg.call(method, params), f"{method} {key[1]}")

    def action_copy(self) -> None:
        target = self._target_or_tell()
        if target is not None:
            self.app.copy_to_clipboard(target.url)
            self.notify(f"copied {target.url}")
