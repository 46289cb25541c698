"""The queue screen against the fake agent: rows, live updates with ratios, filter, sort, width."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

from textual.widgets import Static

from dgagent_tui.agent.model import MAX_DONE_ROWS
from dgagent_tui.screens.queue import QueueScreen
from dgagent_tui.screens.queue_table import QueueTable
from dgagent_tui.testing import (
    FROZEN_EPOCH,
    FakeAgent,
    FakeState,
    demo_problems,
    demo_state,
    stored_file,
)
from dgagent_tui.widgets import Cell, ProblemsStrip
from tests.tui.conftest import make_app, serving, settle, wait_for

WATCH = "/home/me/builds"


def publish_stored(
    agent: FakeAgent, path: str, original: int, stored: int, *, cache_hit: bool = False
) -> None:
    data = stored_file(WATCH, path, original, stored, cache_hit=cache_hit, seconds=0.5)
    agent.publish("file.stored", **data.to_json())


def cell(table: QueueTable, path: str, column: str) -> str:
    return str(table.get_cell(f"{WATCH}\0{path}", column))


async def test_rows_appear_and_follow_events_with_ratios(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "the snapshot's rows")
        assert cell(table, "app/app-1.1.zip", "ratio") == "0.6%"
        assert cell(table, "app/app-1.1.zip", "flag") == "Δ"
        assert cell(table, "app/app-1.11.zip", "flag") == "!"

        fake_agent.publish("file.queued", watch=WATCH, path="new/app-2.0.zip", size=1_000_000)
        await wait_for(pilot, lambda: table.row_count == 13, "the queued row")
        assert cell(table, "new/app-2.0.zip", "progress") == "queued"
        fake_agent.publish("file.uploading", watch=WATCH, path="new/app-2.0.zip", size=1_000_000)
        publish_stored(fake_agent, "new/app-2.0.zip", 1_000_000, 25_000, cache_hit=True)
        await wait_for(
            pilot, lambda: cell(table, "new/app-2.0.zip", "ratio") == "2.5%", "the stored ratio"
        )
        assert cell(table, "new/app-2.0.zip", "stored") == "25.0 kB"
        assert cell(table, "new/app-2.0.zip", "progress") == "cache hit"
        assert app.model.counts()["done"] == 9

        fake_agent.publish("file.deleted", watch=WATCH, path="new/app-2.0.zip", key="x")
        await wait_for(pilot, lambda: table.row_count == 12, "the deleted row to go")


async def test_filter_sort_and_narrow_columns(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        await pilot.press("slash", "1", ".", "1", "1")
        await settle(pilot)
        assert table.row_count == 1
        await pilot.press("escape")
        await settle(pilot)
        assert table.row_count == 12

        await pilot.press("s")  # by name
        await settle(pilot)
        first = table.get_row_at(0)[1]
        assert first == "app/app-1.0.zip" and table.sort_by == "name"
        await pilot.press("S")
        await settle(pilot)
        assert table.get_row_at(0)[1] == "app/app-1.9.zip"

        assert "watch" in table.columns_shown and "age" in table.columns_shown
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert "watch" not in table.columns_shown and "age" not in table.columns_shown
        assert app.screen.has_class("-narrow")


async def test_vim_keys_and_detail_view(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        await pilot.press("G")
        assert table.cursor_row == 11
        await pilot.press("g", "j", "j")
        assert table.cursor_row == 2
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen).__name__ == "DetailScreen"
        await pilot.press("escape")
        assert isinstance(app.screen, QueueScreen)


async def test_ten_thousand_rows_flush_quickly(short_dir: Path) -> None:
    """Not a timing assertion: 10,000 rows stay correct; the times measured are printed (-s)."""
    state: FakeState = demo_state(rows=10_000)
    # pending rows are all kept (stored rows are capped)
    state.items[: 10_000 - 4] = [replace(i, state="queued") for i in state.items[: 10_000 - 4]]
    agent = FakeAgent(short_dir / "agent.sock", state)
    agent.start()
    try:
        app = make_app(agent.socket_path)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            assert isinstance(screen, QueueScreen)
            table = screen.query_one(QueueTable)
            await wait_for(pilot, lambda: table.row_count == 10_000, "10,000 rows", 30)
            flushes, frames = [], []
            for burst in range(10):
                for n in range(burst, 10_000, 200):  # 50 rows changed all over the table
                    event = {"watch": WATCH, "path": f"app/app-1.{n}.zip", "size": n}
                    app.model.apply({"type": "file.uploading", "data": event})
                flushes.append(screen.flush())
                started = time.perf_counter()
                screen._compositor.render_update(full=True)  # one full frame of the screen
                frames.append(time.perf_counter() - started)
                await pilot.pause(0.01)
            print(
                f"\n10,000 rows: flush of 50 changed rows {statistics.median(flushes) * 1000:.1f} "
                f"ms, full frame {statistics.median(frames) * 1000:.1f} ms (medians of 10)"
            )
            assert cell(table, "app/app-1.200.zip", "progress") == "uploading 0s"
            assert table.row_count == 10_000
            assert MAX_DONE_ROWS < 10_000
    finally:
        agent.stop()


async def test_retry_cancel_and_pause_go_to_the_agent(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        await pilot.press("G", "r")  # the failed row
        await settle(pilot)
        assert fake_agent.called("retry") == [{"watch": WATCH, "path": "app/app-1.11.zip"}]
        await pilot.press("k", "c")  # a queued row
        await settle(pilot)
        assert fake_agent.called("cancel") == [{"watch": WATCH, "path": "app/app-1.10.zip"}]
        await pilot.press("P")
        await settle(pilot)
        assert fake_agent.called("pause") == [{}]


async def test_failed_rows_are_drawn_in_the_theme_error_colour(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        red = app.get_css_variables()["error"]

        def styles(path: str) -> set[str]:
            found = [table.get_cell(f"{WATCH}\0{path}", c) for c in table.columns_shown]
            return {c.style for c in found if isinstance(c, Cell)}

        assert styles("app/app-1.11.zip") == {red}  # failed in the snapshot: every cell
        assert styles("app/app-1.1.zip") == {""}
        fake_agent.publish(
            "file.failed", watch=WATCH, path="app/app-1.9.zip", op="put", error="denied"
        )
        await wait_for(pilot, lambda: styles("app/app-1.9.zip") == {red}, "the row to turn red")


async def test_a_long_encode_shows_its_stage_and_time_not_a_zero_rate(
    fake_agent: FakeAgent,
) -> None:
    now = [FROZEN_EPOCH]
    app = make_app(fake_agent.socket_path, clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        summary = app.screen.query_one("#summary", Static)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        fake_agent.publish("file.uploading", watch=WATCH, path="big.iso", size=8_000_000_000)
        fake_agent.publish(
            "file.progress", watch=WATCH, path="big.iso", stage="encoding", done=0, total=None
        )
        await wait_for(pilot, lambda: table.row_count == 13, "the big file")
        now[0] += 125  # two minutes of xdelta3, no byte moved yet
        await wait_for(
            pilot, lambda: cell(table, "big.iso", "progress") == "encoding 2m", "the stage's time"
        )
        assert "B/s" not in str(summary.render())  # no rate while no bytes move

        publish_stored(fake_agent, "big.iso", 8_000_000_000, 1_000_000)
        await wait_for(pilot, lambda: "/s stored (last 10 s)" in str(summary.render()), "a rate")


async def test_problems_show_at_the_top_of_the_queue_with_their_fix(short_dir: Path) -> None:
    state = demo_state()
    state.problems = demo_problems()
    with serving(short_dir, state) as agent:
        app = make_app(agent.socket_path)
        async with app.run_test(size=(80, 24)) as pilot:
            strip = app.screen.query_one(ProblemsStrip)
            await wait_for(pilot, lambda: strip.has_class("-shown"), "the problems")
            text = strip.text
            assert "2 problems need you" in text
            assert "xdelta3 was not found on PATH" in text
            assert "install xdelta3, then: dg-agent stop && dg-agent start" in text
            assert "/home/me/builds: 1 file failed" in text
            assert "dg-agent retry /home/me/builds" in text
            assert strip.region.y == 1  # right under the link bar, seen first
            with state.lock:
                state.problems = []  # fixed: the strip goes at the next status poll
            await wait_for(pilot, lambda: not strip.display, "the strip to go", timeout=10)


async def test_an_agent_without_problems_field_shows_no_strip(fake_agent: FakeAgent) -> None:
    fake_agent.state.problems = None  # an agent from before the field leaves it out
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        await settle(pilot)
        assert not app.screen.query_one(ProblemsStrip).display


async def test_retry_and_cancel_on_the_wrong_row_say_so_instead_of_an_error_box(
    fake_agent: FakeAgent,
) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        await pilot.press("g", "r", "c")  # a stored row
        await settle(pilot)
        assert fake_agent.called("retry") == [] and fake_agent.called("cancel") == []
        said = [n.message for n in app._notifications]
        assert any(m.startswith("r retries a failed file") for m in said), said
        assert any(m.startswith("c cancels a queued or uploading file") for m in said), said
        assert isinstance(app.screen, QueueScreen)  # no error modal


async def test_a_theme_change_recolours_without_a_crash(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(QueueTable)
        await wait_for(pilot, lambda: table.row_count == 12, "rows")
        app.theme = "textual-light"
        await settle(pilot)
        await pilot.pause(0.3)
        red = app.get_css_variables()["error"]
        failed = table.get_cell(f"{WATCH}\0app/app-1.11.zip", "name")
        assert isinstance(failed, Cell) and failed.style == red
        await pilot.press("3")
        await settle(pilot)
