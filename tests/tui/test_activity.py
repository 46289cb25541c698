"""The activity log: events in words (no Python reprs), wrapped rather than cut, failures red."""

from __future__ import annotations

from typing import Any

from rich.style import Style
from textual.pilot import Pilot

from dgagent_tui import format as fmt
from dgagent_tui.app import DgApp
from dgagent_tui.screens.activity import EventLog
from dgagent_tui.testing import FakeAgent
from tests.tui.conftest import make_app, wait_for

WATCH = "/home/me/builds"


def log_text(log: EventLog) -> str:
    return "\n".join(log.lines)


async def open_log(pilot: Pilot[Any], app: DgApp) -> EventLog:
    """Mode 3, once the replayed history (ending in the failed file) is in the log."""
    await wait_for(pilot, lambda: app.link_up, "the link")
    await pilot.press("3")
    log = app.screen.query_one(EventLog)
    await wait_for(pilot, lambda: "failed    app/app-1.11.zip" in log_text(log), "the history")
    return log


async def test_lists_read_as_words_and_long_lines_wrap(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        log = await open_log(pilot, app)
        fake_agent.publish("config.reloaded", watches=[])
        error = "the store refused the upload because " + "the request was slow " * 5 + "END"
        fake_agent.publish(
            "file.failed", watch=WATCH, path="app/app-2.0.zip", op="put", error=error
        )
        await wait_for(pilot, lambda: "END" in log_text(log), "the end of the long line")
        text = log_text(log)
        assert "watching /home/me/builds" in text  # the list, comma-joined
        assert "config reloaded, watching no folders" in text  # the empty list, in words
        assert "['" not in text and "[]" not in text
        assert log.virtual_size.width <= log.scrollable_content_region.width  # no side-scroll
        assert all(len(line) <= log.scrollable_content_region.width for line in log.lines)


async def test_failures_are_red_and_retries_amber(fake_agent: FakeAgent) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40)) as pilot:
        log = await open_log(pilot, app)
        colours = app.get_css_variables()

        def colour_of(words: str) -> object:
            for index in range(len(log.lines)):
                for segment in log.strip(index, log.size.width):
                    if words in segment.text and segment.style is not None:
                        return segment.style.color
            return None

        red, amber = (Style.parse(colours[tone]).color for tone in ("error", "warning"))
        assert colour_of("failed    app/app-1.11.zip") == red
        assert colour_of("retry     app/app-1.11.zip") == amber
        assert colour_of("stored    app/app-1.0.zip") not in (red, amber)


def test_event_values_are_formatted_for_people() -> None:
    started = {"type": "agent.started", "data": {"pid": 7, "watches": ["/a", "/b"]}}
    assert fmt.event_text(started) == "agent started (pid 7), watching /a, /b"
    unknown = {"type": "thing.new", "data": {"names": ["x", "y"], "empty": [], "none": None}}
    assert fmt.event_text(unknown) == "thing.new  names x, y"
    pruned = {
        "type": "prune.finished",
        "data": {"url": "s3://b/app/", "watch": "/out", "deleted": 25, "references": 3}
        | {"freed": 7e6},
    }
    assert fmt.event_text(pruned) == (
        "pruned    s3://b/app/ (retention of /out): 25 versions and 3 references deleted, "
        f"{fmt.size(7e6)} back"
    )
