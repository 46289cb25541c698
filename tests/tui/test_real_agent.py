"""dg-tui beside a real `dg-agent run` process: files go through with their ratios, and the
browser downloads and verifies a stored file (local-directory store, no S3 needed)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from textual.widgets import Input

from dgagent_tui.format import MISSING
from dgagent_tui.screens.browse import BrowseScreen
from dgagent_tui.screens.modals import DownloadModal
from dgagent_tui.screens.queue_table import QueueTable
from dgagent_tui.widgets import VimTable
from tests import artifacts
from tests.agent.conftest import AgentProc, agent, agent_config  # noqa: F401 (agent: a fixture)
from tests.tui.conftest import make_app, settle, wait_for


async def test_queue_rows_get_ratios_and_browse_downloads(
    agent: AgentProc,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    short_dir: Path,
) -> None:
    folder, root = tmp_path / "out", tmp_path / "store"
    folder.mkdir()
    root.mkdir()
    agent.write_config(agent_config([{"dir": str(folder), "url": f"file://{root}/rel/"}]))
    agent.start()
    app = make_app(agent.socket)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.link_up, "the link to the agent")
        table = app.screen.query_one(QueueTable)
        for v in range(3):
            artifacts.write_zip(folder / f"app-1.{v}.zip", artifacts.source_tree(v))
            time.sleep(0.2)

        def ratios() -> list[str]:
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            return [str(r[5]) for r in rows if r[6] in ("stored", "cache hit")]

        await wait_for(pilot, lambda: len(ratios()) == 3, "three stored rows", timeout=60)
        assert MISSING not in ratios()
        percents = sorted(float(r.rstrip("%")) for r in ratios())
        # Whichever came first holds the DeltaSpace's reference; the others are small deltas.
        assert percents[0] < 50 and percents[1] < 50, ratios()

        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BrowseScreen), getattr(screen, "message", screen)
        objects = screen.query_one(VimTable)
        # One watched folder: browsing starts in its DeltaSpace.
        await wait_for(
            pilot, lambda: screen.prefix.endswith("rel/") and objects.row_count == 4, "rel/"
        )
        assert "reference " in str(screen.query_one("#space").render())
        await pilot.press("G", "d")
        await settle(pilot)
        assert isinstance(app.screen, DownloadModal)
        dest = short_dir / "got.zip"
        app.screen.query_one(Input).value = str(dest)
        await pilot.press("enter")
        await wait_for(pilot, dest.exists, "the download", timeout=30)
        source = folder / "app-1.2.zip"
        assert dest.read_bytes() == source.read_bytes()

        await pilot.press("v")
        url = f"{screen.root}/{screen.prefix}app-1.2.zip"
        await wait_for(pilot, lambda: url in app.verified, "the verify", timeout=30)
        assert app.verified[url] == hashlib.sha256(source.read_bytes()).hexdigest()
