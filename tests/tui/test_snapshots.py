"""SVG snapshots of every screen at 120x40 and 80x24 (fixed data, frozen clock, no blink).

Update them after an intended change with: pytest tests/tui --snapshot-update
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from dgagent_tui.agent.link import Backoff
from dgagent_tui.app import DgApp
from dgagent_tui.screens.browse import BrowseScreen
from dgagent_tui.screens.offline import OfflineScreen
from dgagent_tui.testing import FakeAgent, demo_problems, demo_state
from dgagent_tui.widgets import ProblemsStrip, VimTable
from tests.tui.conftest import make_app, serving, wait_for

SIZES = [(120, 40), (80, 24)]
Run = Callable[[Pilot[Any]], Awaitable[None]]


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, DgApp)
    await wait_for(pilot, lambda: app.link_up and len(app.model.rows) == 12, "the queue")
    await pilot.pause(0.4)  # one flush and one chart tick


async def queue(pilot: Pilot[Any]) -> None:
    await loaded(pilot)


async def browse(pilot: Pilot[Any]) -> None:
    await loaded(pilot)
    await pilot.press("2")
    screen = pilot.app.screen
    assert isinstance(screen, BrowseScreen)
    await wait_for(pilot, lambda: screen.root is not None, "the store")
    await pilot.press("j", "enter")
    table = screen.query_one(VimTable)
    await wait_for(
        pilot,
        lambda: screen.prefix == "app/" and table.row_count == 6 and not table.loading,
        "app/",
    )
    await pilot.pause(0.1)
    await pilot.press("j", "j")


async def activity(pilot: Pilot[Any]) -> None:
    await loaded(pilot)
    await pilot.press("3")
    await pilot.pause(0.4)


async def detail(pilot: Pilot[Any]) -> None:
    await loaded(pilot)
    await pilot.press("j", "enter")
    await pilot.pause(0.2)


async def help_modal(pilot: Pilot[Any]) -> None:
    await loaded(pilot)
    await pilot.press("question_mark")
    await pilot.pause(0.1)
    pilot.app.screen.query_one(Input).cursor_blink = False
    await pilot.press(*"item")
    await pilot.pause(0.1)


async def delete_modal(pilot: Pilot[Any]) -> None:
    await browse(pilot)
    await pilot.press("delete")
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    "run", [queue, browse, activity, detail, help_modal, delete_modal], ids=lambda f: f.__name__
)
def test_screen(snap_compare: Any, fake_agent: FakeAgent, run: Run, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(fake_agent.socket_path), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_with_problems(snap_compare: Any, short_dir: Path, size: tuple[int, int]) -> None:
    state = demo_state()
    state.problems = demo_problems()

    async def shown(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        strip = pilot.app.screen.query_one(ProblemsStrip)
        await wait_for(pilot, lambda: strip.display, "the problems")

    with serving(short_dir, state) as agent:
        assert snap_compare(make_app(agent.socket_path), terminal_size=size, run_before=shown)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_offline_screen(snap_compare: Any, short_dir: Path, size: tuple[int, int]) -> None:
    app = make_app(short_dir / "agent.sock", backoff=Backoff(10, 10, jitter=0))

    async def offline(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, OfflineScreen), "offline")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=offline)
