"""Offline: the agent is not there, goes away, comes back; the app follows without a traceback."""

from __future__ import annotations

from pathlib import Path

from dgagent_tui.screens.offline import OfflineScreen
from dgagent_tui.screens.queue import QueueScreen
from dgagent_tui.testing import FakeAgent
from dgagent_tui.widgets import LinkBar
from tests.tui.conftest import make_app, wait_for


async def test_offline_screen_then_reconnect_when_the_agent_starts(short_dir: Path) -> None:
    agent = FakeAgent(short_dir / "agent.sock")
    app = make_app(agent.socket_path)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, OfflineScreen), "offline")
            details = app.screen.query_one("#details")
            await wait_for(pilot, lambda: "dg-agent start" in str(details.render()), "the advice")
            assert "no socket at agent.sock" in str(details.render())
            agent.start()
            await wait_for(pilot, lambda: isinstance(app.screen, QueueScreen), "the queue")
            assert app.link_up and not app.stale
    finally:
        agent.stop()


async def test_agent_going_away_marks_data_stale_and_reconnects(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.link_up and len(app.model.rows) == 12, "the queue")
        fake_agent.stop()
        await wait_for(pilot, lambda: app.stale and not app.link_up, "stale data")
        await wait_for(pilot, lambda: isinstance(app.screen, OfflineScreen), "offline")
        assert "data is stale" in app.link_text
        assert len(app.model.rows) == 12  # the last data stays, marked stale
        await pilot.press("1")  # the stale queue can still be looked at
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("3")

        fake_agent.start()
        await wait_for(pilot, lambda: app.link_up and not app.stale, "the link again")
        assert app.current_mode == "activity"  # where the user was; offline only hid it
        assert "connected" in app.link_text
        bar = app.screen.query_one(LinkBar)
        # Back to the connected colour once the data is fresh, not left in the stale one.
        await wait_for(pilot, lambda: not bar.has_class("-stale"), "the connected colour")
        assert not bar.has_class("-offline") and "reloading" not in str(bar.render())
