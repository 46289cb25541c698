"""Browse (key 2): stores → DeltaSpaces → files, with what each one saves, page by page."""

from __future__ import annotations

import posixpath
from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static

from dgagent.rpc import Method
from dgagent.rpc.records import BrowseEntry, Listing, Pruned, Stores, Summary
from dgagent_tui import format as fmt
from dgagent_tui.footer import DgFooter
from dgagent_tui.screens.actions import ItemScreen, Target
from dgagent_tui.screens.detail import DetailScreen
from dgagent_tui.screens.modals import PruneModal, TypedConfirmModal
from dgagent_tui.screens.queue_table import KIND_FLAGS
from dgagent_tui.widgets import Cell, FilterInput, LinkBar, VimTable

PAGE = 200  # files per page: big prefixes are listed a page at a time
EMPTY = Listing("", [], [], None, Summary(0, 0, 0, 0, 0.0, True), 0, 0)  # before the first load


def split_url(url: str) -> tuple[str, str]:
    """(store root, key prefix) of a store URL, as the agent's storage layer splits it.

    >>> split_url("s3://releases/app/"), split_url("file:///srv/store/rel/")
    (('s3://releases', 'app/'), ('file://', 'srv/store/rel/'))
    """
    if url.startswith("file://"):
        return "file://", url[len("file://") :].lstrip("/")
    scheme, _, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    return f"{scheme}://{bucket}", prefix


class BrowseScreen(ItemScreen):
    AUTO_FOCUS = "VimTable"
    DEFAULT_CSS = """
    BrowseScreen #crumbs { height: 1; padding: 0 1; background: $panel; }
    BrowseScreen #space { height: auto; padding: 0 1; }
    BrowseScreen VimTable { height: 1fr; }
    """
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("enter", "open", "Open", id="browse.open"),
        Binding("backspace,h", "up", "Up", id="browse.up"),
        Binding("n", "page(1)", "Next page", show=False, id="browse.next"),
        Binding("p", "page(-1)", "Prev page", show=False, id="browse.prev"),
        Binding("slash", "filter", "Filter", key_display="/", id="view.filter"),
        Binding("y", "copy", "Copy URI", show=False, id="item.copy"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="browse.reload"),
        Binding("X", "prune", "Prune", show=False, id="browse.prune"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.root: str | None = None  # the store being browsed; None lists the stores
        self.prefix = ""  # key prefix inside the store, "" or ending in "/"
        self.page_offset = 0
        self.listing: Listing | None = None
        self.stores: list[str] = []
        self.filter_text = ""
        self._rows: dict[str, tuple[str, Any]] = {}  # row key → ("store"|"prefix"|"file", what)
        self._opened_once = False  # with a single store, the first load opens it directly

    def compose(self) -> ComposeResult:
        yield LinkBar()
        yield Static(id="crumbs")
        yield Static(id="space")
        yield FilterInput()
        yield VimTable(id="objects")
        yield DgFooter()

    def on_mount(self) -> None:
        self.query_one(VimTable).focus()
        self.action_reload()

    def on_screen_resume(self) -> None:
        if self.listing or self.stores:
            self.action_reload()

    # -- loading -------------------------------------------------------------------------------

    def action_reload(self) -> None:
        if not self.dg.link_up:
            self._draw()
            return
        # Exclusive: a newer listing cancels an older one still waiting, so the last asked wins.
        # On the app, so a failure reaches its error modal (worker messages do not bubble).
        self.app.run_worker(
            self._load(), name="list", group="browse", exclusive=True, exit_on_error=False
        )

    async def _load(self) -> None:
        table = self.query_one(VimTable)
        table.loading = True
        try:
            if self.root is None:
                got = Stores.from_json(await self.dg.call(Method.BROWSE_BUCKETS))
                watched = [w.url for w in self.dg.model.watches]
                stores = [s for s in got.stores if s not in watched]
                self.stores = sorted(set(watched)) + stores
                if len(watched) == 1 and not self._opened_once:
                    # One watched folder: start where its files are, the stores are one level up.
                    self._opened_once = True
                    self.root, self.prefix = split_url(watched[0])
                    self.listing = await self._list(0)
                if got.error:
                    self.notify(f"listing buckets: {got.error}", severity="warning")
            else:
                self.listing = await self._list(self.page_offset)
        finally:
            table.loading = False
        self._draw()
        table.focus()

    async def _list(self, offset: int) -> Listing:
        params = {"url": self.url, "offset": offset, "limit": PAGE}
        return Listing.from_json(await self.dg.call(Method.BROWSE_LIST, params))

    @property
    def url(self) -> str:
        assert self.root is not None
        return f"{self.root}/{self.prefix}"

    # -- drawing -------------------------------------------------------------------------------

    def _draw(self) -> None:
        table = self.query_one(VimTable)
        keep = self._cursor_key()
        table.clear(columns=True)
        self._rows = {}
        self._fill(table)
        if keep in self._rows:  # keep the cursor on its row across redraws
            table.move_cursor(row=table.get_row_index(keep))

    def _cursor_key(self) -> str | None:
        table = self.query_one(VimTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value

    def _fill(self, table: VimTable) -> None:
        width = self.app.size.width
        wide = width >= 100
        crumbs = self.query_one("#crumbs", Static)
        if self.root is None:
            crumbs.update("[b]stores[/b] (watched URLs first)")
            table.add_column("store", key="name", width=max(width - 6, 12))
            for store in self.stores:
                if self._matches(store):
                    self._add(table, f"s:{store}", ("store", store), [store])
            self.query_one("#space", Static).update(f"{len(self.stores)} stores")
            return
        trail = " › ".join([self.root, *[p for p in self.prefix.split("/") if p]])  # noqa: RUF001
        crumbs.update(escape(trail + ("/" if self.prefix else "")))
        columns = [(" ", "flag", 1), ("original", "original", 9), ("stored", "stored", 9)]
        columns += [("saved", "saved", 12 if wide else 8)]
        columns += [("modified", "modified", 16)] if wide else []
        # Cells are not measured (see Cell): the name column takes the width that is left.
        name_width = max(12, width - sum(w + 2 for _, _, w in columns) - 4)
        columns.insert(1, ("name", "name", name_width))
        for label, key, column_width in columns:
            table.add_column(label, key=key, width=column_width)
        blanks = [""] * (len(columns) - 2)
        self._add(table, "..", ("up", None), ["", "..", *blanks])
        listing = self.listing or EMPTY
        for prefix in listing.prefixes:
            name = posixpath.basename(prefix.rstrip("/")) + "/"
            if self._matches(name):
                self._add(table, f"p:{prefix}", ("prefix", prefix), ["▸", name, *blanks])
        for record in listing.files:
            if not self._matches(record.name):
                continue
            url = f"{self.root}/{record.key}"
            saved = 1 - record.ratio if record.ratio is not None else None
            # A file that became a reference: its bytes are the reference's, counted once below.
            shown = "ref" if record.stored_as == "new reference" else None
            flag = "✓" if url in self.dg.verified else KIND_FLAGS.get(record.kind or "", "=")
            cells = [
                flag,
                record.name + fmt.codec_mark(record.codec),
                fmt.size(record.original_size),
                fmt.size(record.stored_size),
                shown or f"{fmt.bar(saved, 4 if wide else 3)} {fmt.ratio(saved)}",
                *([record.last_modified[:16].replace("T", " ")] if wide else []),
            ]
            self._add(table, f"f:{record.key}", ("file", record), cells)
        self._space_summary()

    def _add(self, table: VimTable, key: str, what: tuple[str, Any], cells: list[str]) -> None:
        self._rows[key] = what
        table.add_row(*(Cell(c) for c in cells), key=key)

    def _space_summary(self) -> None:
        """The folder's totals as the agent counts them (one definition everywhere: stored bytes
        are every object the folder holds, references included, each once)."""
        listing = self.listing or EMPTY
        summary = listing.summary
        original, stored = summary.original_bytes, summary.stored_bytes
        reference = listing.reference_size
        total = listing.total
        pages = max((total + PAGE - 1) // PAGE, 1)
        parts = [
            f"reference {fmt.size(reference)}" if reference is not None else "no DeltaSpace here",
            f"{summary.files} files",
            f"{fmt.size(original)} original → {fmt.size(stored)} stored",
        ]
        if original:
            # Files on pages not opened yet may count their stored size as their original one
            # (the agent reads their metadata when a page shows them): a lower bound then.
            bound = "" if summary.complete else "at least "
            parts.append(f"[b]{bound}{fmt.ratio(1 - stored / original)} saved[/b]")
        parts.append(f"page {self.page_offset // PAGE + 1}/{pages} ({total} entries)")
        self.query_one("#space", Static).update(" · ".join(parts))

    def _matches(self, name: str) -> bool:
        return not self.filter_text or self.filter_text.lower() in name.lower()

    # -- navigation ----------------------------------------------------------------------------

    def _selected(self) -> tuple[str, Any] | None:
        return self._rows.get(self._cursor_key() or "")

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        chosen = self._selected()
        if chosen is None:
            return
        what, value = chosen
        if what == "up":
            self.action_up()
        elif what == "store":
            self.root, self.prefix = split_url(value)
            self.page_offset = 0
            self.action_reload()
        elif what == "prefix":
            self.prefix, self.page_offset = value, 0
            self.action_reload()
        elif what == "file":
            target = self.target()
            assert target is not None
            screen = DetailScreen.for_stored_file(target.url, value, last=target.last_in_space)
            self.app.push_screen(screen)

    def action_up(self) -> None:
        if self.root is None:
            return
        if not self.prefix:
            self.root = None
        else:
            parent = posixpath.dirname(self.prefix.rstrip("/"))
            self.prefix = f"{parent}/" if parent else ""
        self.page_offset = 0
        self.action_reload()

    def action_page(self, step: int) -> None:
        total = (self.listing or EMPTY).total
        offset = self.page_offset + step * PAGE
        if self.root is not None and 0 <= offset < total:
            self.page_offset = offset
            self.action_reload()

    def target(self) -> Target | None:
        chosen = self._selected()
        if chosen is None or chosen[0] != "file" or self.root is None:
            return None
        record: BrowseEntry = chosen[1]
        listing = self.listing or EMPTY
        only_page = listing.total <= PAGE
        # Deleting the last file of a DeltaSpace also deletes its reference: ask for the name.
        last = listing.reference_size is not None and only_page and len(listing.files) == 1
        return Target(f"{self.root}/{record.key}", last)

    def changed(self) -> None:
        self._draw()

    def deleted(self) -> None:
        self.action_reload()

    # -- prune ---------------------------------------------------------------------------------

    def action_prune(self) -> None:
        """Prune the folder on show (and those under it): rule, preview, typed confirmation."""
        if self.root is None:
            self.notify(
                "open a store first: prune works on the folder you are in", severity="warning"
            )
            return
        url = self.url

        def chosen(rule: tuple[int | None, str | None] | None) -> None:
            if rule is not None:
                params: dict[str, Any] = {"url": url}
                if rule[0] is not None:
                    params["keep_last"] = rule[0]
                if rule[1] is not None:
                    params["older_than"] = rule[1]
                self.dg.run_op(self._preview_prune(params), f"prune preview of {url}")

        self.app.push_screen(PruneModal(url), chosen)

    async def _preview_prune(self, params: dict[str, Any]) -> None:
        dry = Pruned.from_json(await self.dg.call(Method.PRUNE, {**params, "dryrun": True}))
        if not dry.deleted and not dry.freed:
            self.notify(f"nothing to prune here ({dry.rule}): every version stays")
            return
        files = len(dry.deleted) + dry.kept
        body = (
            f"{dry.url}\n{len(dry.deleted)} of {files} files would be deleted ({dry.rule}); "
            f"{len(dry.references_deleted)} references deleted, {dry.retired} retired "
            f"({dry.reencoded} files re-encoded against a kept version).\n"
            f"Stored {fmt.size(dry.stored_before)} → {fmt.size(dry.stored_after)}: "
            f"{fmt.size(dry.freed)} back."
        )
        name = posixpath.basename(self.prefix.rstrip("/")) or (self.root or "")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.dg.run_op(self._prune(params, name), f"prune {dry.url}")

        self.app.push_screen(TypedConfirmModal("Prune for good?", body, name), confirmed)

    async def _prune(self, params: dict[str, Any], name: str) -> None:
        done = Pruned.from_json(await self.dg.call(Method.PRUNE, params))
        self.notify(
            f"pruned {name}: {len(done.deleted)} files and {len(done.references_deleted)} "
            f"references deleted, {fmt.size(done.freed)} back"
        )
        self.action_reload()

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._draw()

    @on(Input.Submitted, ".filter")
    def _filter_kept(self) -> None:
        self.query_one(VimTable).focus()

    def action_copy(self) -> None:
        target = self._target_or_tell()
        if target is not None:
            self.app.copy_to_clipboard(target.url)
            self.notify(f"copied {target.url}")
