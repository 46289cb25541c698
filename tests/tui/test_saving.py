"""Screenshots and downloads go to a folder that exists, named in full; failures say the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from dgagent_tui import folders
from dgagent_tui.app import DgApp
from dgagent_tui.screens.modals import DownloadModal
from dgagent_tui.testing import FakeAgent
from tests.tui.conftest import make_app, settle, wait_for
from tests.tui.test_browse import open_app_folder, select


@pytest.fixture
def bare_home(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home without ~/Downloads (a fresh server account), and a working folder elsewhere."""
    home, work = short_dir / "home", short_dir / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DOWNLOAD_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    return home


def messages(app: DgApp) -> list[str]:
    return [n.message for n in app._notifications]


async def download_modal(pilot: Pilot[Any], app: DgApp) -> Input:
    """The download dialog for app/app-1.2.zip; returns its destination field."""
    screen = await open_app_folder(pilot, app)
    select(screen, "app-1.2.zip")
    await pilot.press("d")
    await settle(pilot)
    assert isinstance(app.screen, DownloadModal)
    return app.screen.query_one(Input)


async def test_screenshot_goes_home_when_there_is_no_downloads_folder(
    fake_agent: FakeAgent, bare_home: Path
) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.link_up, "the link")
        await pilot.press("ctrl+p", *"Screenshot")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("screenshot" in m for m in messages(app)), "a word")
        said = next(m for m in messages(app) if "screenshot" in m)
        written = list(bare_home.glob("*.svg"))
        assert len(written) == 1 and said == f"screenshot saved to {written[0]}", said
        assert not list(Path.cwd().iterdir())  # never where dg-tui happened to start


async def test_a_screenshot_that_cannot_be_written_says_why_and_the_fix(
    fake_agent: FakeAgent, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = short_dir / "file"
    not_a_folder.write_text("")
    monkeypatch.setattr(folders, "save_folder", lambda: not_a_folder)
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.link_up, "the link")
        app.action_screenshot()
        await settle(pilot)
        said = [n for n in app._notifications if n.severity == "error"]
        assert len(said) == 1, messages(app)
        assert said[0].message.startswith(f"cannot write {not_a_folder}: ")
        assert said[0].message.count(";") == 1 and said[0].message.endswith(".")


async def test_download_defaults_to_an_existing_folder_and_names_the_file(
    fake_agent: FakeAgent, bare_home: Path
) -> None:
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        dest = await download_modal(pilot, app)
        assert dest.value == str(bare_home / "app-1.2.zip")
        await pilot.press("enter")
        await settle(pilot)
        saved = bare_home / "app-1.2.zip"
        assert saved.read_bytes() == fake_agent.state.files["app/app-1.2.zip"].content
        assert any(m.startswith(f"saved to {saved} (SHA-256 ") for m in messages(app))


async def test_a_download_to_an_impossible_place_is_refused_in_one_sentence(
    fake_agent: FakeAgent, short_dir: Path
) -> None:
    blocker = short_dir / "a-file"
    blocker.write_text("")
    app = make_app(fake_agent.socket_path)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        dest = await download_modal(pilot, app)
        dest.value = str(blocker / "sub" / "x.zip")
        await pilot.press("enter")
        await settle(pilot)
        assert fake_agent.called("download") == []
        said = [n.message for n in app._notifications if n.severity == "error"]
        assert said == [
            f"cannot write {blocker}/sub/x.zip: a part of that path is a file, not a folder; "
            "choose a folder."
        ]
