"""At 80x24 and larger: the footer fits its line, and nothing draws stray glyphs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dgagent_tui.footer import DgFooter
from dgagent_tui.testing import FakeAgent, demo_state
from tests.tui.conftest import make_app, screen_text, serving, settle, wait_for

PARTIAL_BLOCKS = re.compile("[▁▂▃▄▅▆▇]")


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (60, 20)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_footer_fits_on_every_screen(
    fake_agent: FakeAgent, size: tuple[int, int]
) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.link_up and len(app.model.rows) == 12, "the queue")
        for keys in [(), ("2",), ("3",), ("1", "j", "enter")]:
            await pilot.press(*keys)
            await settle(pilot)
            footer = app.screen.query_one(DgFooter)
            last = screen_text(app)[-1]
            assert footer.virtual_size.width <= footer.size.width, last
            assert "? Help" in last and "q Quit" in last, last
            assert not re.search(r"palette\S", last), last  # no word cut behind the hint


async def test_no_partial_block_glyphs_at_80x24_with_a_long_queue(short_dir: Path) -> None:
    with serving(short_dir, demo_state(rows=40)) as agent:
        app = make_app(agent.socket_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: len(app.model.rows) == 40, "the queue")
            for keys in [(), ("j",) * 9, ("3",)]:  # the table's scrollbar, then the log's
                await pilot.press(*keys)
                await settle(pilot)
                text = "\n".join(screen_text(app))
                assert not PARTIAL_BLOCKS.search(text), text


async def test_empty_charts_draw_nothing(short_dir: Path) -> None:
    state = demo_state()
    state.transfers = []  # an agent that has stored nothing yet
    with serving(short_dir, state) as agent:
        app = make_app(agent.socket_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: len(app.model.rows) == 12, "the queue")
            await settle(pilot)
            lines = screen_text(app)
            assert not any(PARTIAL_BLOCKS.search(line) for line in lines[3:5]), lines[3:5]
            assert "nothing stored in the last minute" in lines[2]
