"""Browse against the fake agent: navigate, download, verify, and deletes that ask first."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button, Input, Static

from dgagent_tui.app import DgApp
from dgagent_tui.screens.browse import PAGE, BrowseScreen
from dgagent_tui.screens.modals import (
    ConfirmModal,
    DownloadModal,
    ErrorModal,
    PruneModal,
    TypedConfirmModal,
)
from dgagent_tui.testing import FakeAgent, FakeFile
from dgagent_tui.widgets import VimTable
from tests.tui.conftest import make_app, settle, wait_for


async def open_app_folder(pilot: Pilot[Any], app: DgApp) -> BrowseScreen:
    await wait_for(pilot, lambda: app.link_up and bool(app.model.status), "the snapshot")
    await pilot.press("2")
    screen = app.screen
    assert isinstance(screen, BrowseScreen)
    table = screen.query_one(VimTable)
    await wait_for(pilot, lambda: screen.root is not None and table.row_count == 3, "the store")
    await pilot.press("j", "enter")  # ".." then "app/"
    await wait_for(pilot, lambda: screen.prefix == "app/" and table.row_count == 6, "app/")
    return screen


def select(screen: BrowseScreen, name: str) -> None:
    table = screen.query_one(VimTable)
    for index in range(table.row_count):
        if table.get_row_at(index)[1] == name:
            table.move_cursor(row=index)
            return
    raise AssertionError(f"{name} is not listed")


async def test_browse_download_and_verify(fake_agent: FakeAgent, short_dir: Path) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        space = str(screen.query_one("#space").render())
        assert "reference 2.1 kB" in space and "5 files" in space and "saved" in space
        select(screen, "app-1.2.zip")

        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, DownloadModal)
        dest = short_dir / "out" / "got.zip"
        app.screen.query_one(Input).value = str(dest)
        await pilot.press("enter")
        await settle(pilot)
        content = fake_agent.state.files["app/app-1.2.zip"].content
        assert dest.read_bytes() == content

        await pilot.press("v")
        await settle(pilot)
        url = "s3://releases/app/app-1.2.zip"
        assert app.verified[url] == hashlib.sha256(content).hexdigest()
        assert (
            screen.query_one(VimTable).get_row_at(screen.query_one(VimTable).cursor_row)[0] == "✓"
        )
        assert fake_agent.called("verify") == [{"url": url}]


async def test_delete_asks_first_with_cancel_focused(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        select(screen, "app-1.1.zip")
        await pilot.press("delete")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        assert app.focused is modal.query_one("#cancel", Button)
        await pilot.press("enter")  # Enter on the focused Cancel
        await settle(pilot)
        assert fake_agent.called("delete") == []
        assert "app/app-1.1.zip" in fake_agent.state.files

        await pilot.press("delete")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert fake_agent.called("delete") == [{"url": "s3://releases/app/app-1.1.zip"}]
        assert "app/app-1.1.zip" not in fake_agent.state.files
        table = screen.query_one(VimTable)
        await wait_for(pilot, lambda: table.row_count == 5, "the listing without it")


async def test_deleting_a_deltaspaces_last_file_needs_its_name(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        await pilot.press("backspace")
        table = screen.query_one(VimTable)
        await wait_for(pilot, lambda: screen.prefix == "" and table.row_count == 3, "the root")
        await pilot.press("G", "enter")  # tools/
        await wait_for(pilot, lambda: screen.prefix == "tools/" and table.row_count == 2, "tools/")
        await pilot.press("j", "delete")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, TypedConfirmModal)
        assert modal.query_one("#yes", Button).disabled
        await pilot.press("escape")
        await settle(pilot)
        assert fake_agent.called("delete") == []

        await pilot.press("delete")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, TypedConfirmModal)
        modal.query_one(Input).focus()
        await pilot.press(*"cli-2.0.tar")
        assert not modal.query_one("#yes", Button).disabled
        await pilot.press("enter")
        await settle(pilot)
        assert fake_agent.called("delete") == [{"url": "s3://releases/tools/cli-2.0.tar"}]


async def test_read_only_disables_destructive_actions(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        select(screen, "app-1.1.zip")
        assert screen.check_action("delete", ()) is None
        assert screen.check_action("verify", ()) is True
        await pilot.press("delete", "R")
        await settle(pilot)
        assert app.screen is screen
        assert fake_agent.called("delete") == [] and fake_agent.called("restore") == []


async def test_a_failed_action_shows_an_error_modal(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        select(screen, "app-1.3.zip")
        with fake_agent.state.lock:
            del fake_agent.state.files["app/app-1.3.zip"]  # gone behind the TUI's back
        await pilot.press("v")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ErrorModal)
        assert "does not exist" in modal.message
        await pilot.press("escape")
        assert app.screen is screen


async def test_restore_asks_then_calls_the_agent(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        select(screen, "app-1.0.zip")
        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await settle(pilot)
        assert fake_agent.called("restore") == [{"url": "s3://releases/app/app-1.0.zip"}]


async def test_large_prefixes_are_listed_a_page_at_a_time(fake_agent: FakeAgent) -> None:
    with fake_agent.state.lock:
        for n in range(PAGE + 50):
            key = f"big/v{n:04}.zip"
            fake_agent.state.files[key] = FakeFile(key, b"x" * 100, "delta", 5)
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.link_up and bool(app.model.status), "the snapshot")
        await pilot.press("2")
        screen = app.screen
        assert isinstance(screen, BrowseScreen)
        table = screen.query_one(VimTable)
        await wait_for(pilot, lambda: screen.root is not None and table.row_count == 4, "the root")
        select(screen, "big/")
        await pilot.press("enter")
        await wait_for(pilot, lambda: table.row_count == PAGE + 1, "the first page")
        assert f"page 1/2 ({PAGE + 50} entries)" in str(screen.query_one("#space").render())
        await pilot.press("n")
        await wait_for(pilot, lambda: table.row_count == 51, "the second page")
        assert table.get_row_at(1)[1] == f"v{PAGE:04}.zip"
        await pilot.press("p")
        await wait_for(pilot, lambda: table.row_count == PAGE + 1, "the first page again")


async def test_the_codec_of_an_archive_delta_is_shown(fake_agent: FakeAgent) -> None:
    with fake_agent.state.lock:
        fake_agent.state.files["app/app-1.1.zip"].codec = "archive-v1"
        fake_agent.state.files["app/app-1.2.zip"].codec = "compat"
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        select(screen, "app-1.1.zip  [archive-v1]")
        select(screen, "app-1.2.zip")  # compat, DeltaGlider's own format: no mark
        select(screen, "app-1.1.zip  [archive-v1]")
        await pilot.press("enter")
        await settle(pilot)
        facts = str(app.screen.query_one("#facts", Static).render())
        assert "codec" in facts and "archive-v1" in facts


async def test_prune_asks_the_rule_previews_then_needs_the_folder_name(
    fake_agent: FakeAgent,
) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_app_folder(pilot, app)
        before = sorted(k for k in fake_agent.state.files if k.startswith("app/"))
        await pilot.press("X")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, PruneModal)
        keep = modal.query_one("#keep", Input)
        keep.value = "0"
        await pilot.press("enter")
        await settle(pilot)
        assert "at least 1" in str(modal.query_one("#problem", Static).render())
        keep.value = "2"
        modal.query_one("#newer", Input).value = "soon"
        await pilot.press("enter")
        await settle(pilot)
        assert "e.g. 90d" in str(modal.query_one("#problem", Static).render())
        modal.query_one("#newer", Input).value = ""
        await pilot.press("enter")
        await settle(pilot)

        confirm = app.screen
        assert isinstance(confirm, TypedConfirmModal)
        preview = {"url": "s3://releases/app/", "keep_last": 2, "dryrun": True}
        assert fake_agent.called("prune") == [preview]
        body = " ".join(str(w.render()) for w in confirm.query(Static))
        assert f"{len(before) - 2} of {len(before)} files would be deleted" in body
        assert sorted(k for k in fake_agent.state.files if k.startswith("app/")) == before
        assert confirm.query_one("#yes", Button).disabled
        confirm.query_one(Input).focus()
        await pilot.press(*"app")
        await pilot.press("enter")
        await settle(pilot)
        assert fake_agent.called("prune")[-1] == {"url": "s3://releases/app/", "keep_last": 2}
        assert sorted(k for k in fake_agent.state.files if k.startswith("app/")) == before[-2:]
        table = screen.query_one(VimTable)
        await wait_for(pilot, lambda: table.row_count == 3, "the listing after the prune")


async def test_prune_in_read_only_mode_does_nothing(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_app_folder(pilot, app)
        await pilot.press("X")
        await settle(pilot)
        assert not isinstance(app.screen, PruneModal)
        assert fake_agent.called("prune") == []
