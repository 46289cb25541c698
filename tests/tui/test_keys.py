"""Keys: remapping by binding id, the filterable help, and the command palette."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from dgagent_tui.screens.browse import BrowseScreen
from dgagent_tui.screens.help import HelpModal
from dgagent_tui.testing import FakeAgent
from tests.tui.conftest import make_app, settle, wait_for


async def test_bindings_are_remapped_by_id(fake_agent: FakeAgent, short_dir: Path) -> None:
    keymap = short_dir / "tui.toml"
    keymap.write_text('[keymap]\n"mode.browse" = "b"\n')
    app = make_app(fake_agent.socket_path, keymap_file=keymap)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.link_up, "the link")
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, BrowseScreen)


async def test_a_broken_keymap_is_reported_not_fatal(
    fake_agent: FakeAgent, short_dir: Path
) -> None:
    keymap = short_dir / "tui.toml"
    keymap.write_text("[keymap\n")
    app = make_app(fake_agent.socket_path, keymap_file=keymap)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.link_up, "the link")
        assert any("cannot read the key map" in n.message for n in app._notifications)


async def test_help_lists_keys_with_ids_and_filters_as_you_type(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.link_up, "the link")
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpModal)
        rows = app.screen.query_one("#rows", Static)
        assert "item.delete" in str(rows.render()) and "mode.browse" in str(rows.render())
        await pilot.press(*"verify")
        await settle(pilot)
        text = str(rows.render())
        assert "item.verify" in text and "item.delete" not in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpModal)


async def test_the_command_palette_offers_the_modes(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.link_up, "the link")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Queue", "Browse", "Activity", "Keys"} <= set(titles)
        assert len(titles) == len(set(titles)), titles  # "Keys" once, not Textual's and ours
        await pilot.press("ctrl+p", *"Browse")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, BrowseScreen), "browse")
