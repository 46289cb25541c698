"""The queue model and the pure formatting, without a terminal."""

from __future__ import annotations

import doctest
from dataclasses import replace
from typing import Any

import dgagent_tui.agent.model
import dgagent_tui.folders
import dgagent_tui.format
import dgagent_tui.screens.activity
import dgagent_tui.screens.browse
from dgagent.rpc.records import CacheStats, QueueItem, Status
from dgagent_tui.agent.model import MAX_DONE_ROWS, QueueModel
from dgagent_tui.screens.queue_table import cells
from dgagent_tui.testing import demo_state, stored_file

NOW = 1_000_000.0


def stored(path: str, original: int = 1000, stored: int = 10) -> dict[str, Any]:
    data = stored_file("/w", path, original, stored, seconds=1.0, codec=None)
    return {"type": "file.stored", "data": data.to_json()}


def status(**changes: Any) -> Status:
    return replace(demo_state().status, **changes)


def item(path: str, state: str, codec: str | None) -> QueueItem:
    return QueueItem(
        "/w", path, state, "put", path, "delta", codec, *(None,) * 4, 0, None, None, NOW, None
    )


def test_events_change_rows_and_report_only_what_changed() -> None:
    model = QueueModel(lambda: NOW)
    model.load(status(done=5, cache=CacheStats(3, 1)), [], [])
    assert model.take_changes() == (True, [], [])
    model.apply({"type": "file.queued", "data": {"watch": "/w", "path": "a.zip", "size": 1000}})
    model.apply({"type": "file.uploading", "data": {"watch": "/w", "path": "a.zip", "size": 1000}})
    assert model.take_changes() == (False, [("/w", "a.zip")], [])
    assert model.counts() == {"queued": 0, "uploading": 1, "failed": 0, "done": 5}
    model.apply(stored("a.zip"))
    row = model.rows[("/w", "a.zip")]
    assert (row.state, row.ratio) == ("stored", 0.01)
    assert model.counts()["done"] == 6
    assert model.throughput(window=10) == 100.0  # 1000 bytes in the last 10 s
    assert model.cache_hit_rate() == 0.75
    model.apply({"type": "file.deleted", "data": {"watch": "/w", "path": "a.zip", "key": "a"}})
    assert model.take_changes() == (False, [], [("/w", "a.zip")])
    model.apply({"type": "scan.started", "data": {"watch": "/w"}})  # not about a file
    assert model.take_changes() == (False, [], [])
    model.apply({"type": "file.queued", "data": {"watch": "/w", "path": "b.zip"}})  # malformed
    model.apply({"type": "no.such.event", "data": {}})  # from a newer agent
    assert model.take_changes() == (False, [], [])


def test_the_codec_of_a_stored_file_reaches_its_row_and_cells() -> None:
    model = QueueModel(lambda: NOW)
    model.load(status(), [item("a.whl", "stored", "compat")], [])
    event = stored("b.whl")
    event["data"]["codec"] = "archive-v1"
    model.apply(event)
    columns = ("flag", "name", "ratio")
    a, b = model.rows[("/w", "a.whl")], model.rows[("/w", "b.whl")]
    assert (a.codec, b.codec) == ("compat", "archive-v1")
    assert cells(a, NOW, columns, False)[1] == "a.whl"
    assert cells(b, NOW, columns, False) == ["Δ", "b.whl  [archive-v1]", "1.0%"]
    assert "[archive-v1]" in dgagent_tui.format.event_text(event)


def test_progress_events_fill_the_progress_cell_until_the_file_is_stored() -> None:
    now = [NOW]
    model = QueueModel(lambda: now[0])
    model.load(status(), [], [])
    where = {"watch": "/w", "path": "big.iso"}
    model.apply({"type": "file.uploading", "data": {**where, "size": 4000}})

    def shown() -> str:
        return cells(model.rows[("/w", "big.iso")], now[0], ("progress",), False)[0]

    assert shown() == "uploading 0s"
    now[0] += 5
    encoding = {**where, "stage": "encoding", "done": 0, "total": None}
    model.apply({"type": "file.progress", "data": encoding})
    now[0] += 75
    model.apply({"type": "file.progress", "data": encoding})
    assert shown() == "encoding 1m"  # how long the stage has run, counted from its start
    progress = {**where, "stage": "uploading", "done": 500, "total": 1000}
    model.apply({"type": "file.progress", "data": progress})
    assert shown() == "██    50%"
    model.apply(stored("big.iso", 4000, 1000))
    assert shown() == "stored"
    model.apply({"type": "file.progress", "data": progress})  # late: ignored
    assert shown() == "stored"


def test_stored_rows_are_capped_oldest_first_pending_rows_never() -> None:
    model = QueueModel(lambda: NOW)
    failed = {"watch": "/w", "path": "bad", "op": "put", "error": "x"}
    model.apply({"type": "file.failed", "data": failed})
    for n in range(MAX_DONE_ROWS + 5):
        model.apply(stored(f"f{n}"))
    _, changed, removed = model.take_changes()
    assert len(model.rows) == MAX_DONE_ROWS + 1
    assert ("/w", "bad") in model.rows and ("/w", "f0") not in model.rows
    assert ("/w", "f4") in removed and ("/w", "f4") not in changed
    assert model.ratio_series(3) == [0.01, 0.01, 0.01]


def test_doctests() -> None:
    for module in (
        dgagent_tui.format,
        dgagent_tui.screens.browse,
        dgagent_tui.screens.activity,
        dgagent_tui.agent.model,
        dgagent_tui.folders,
    ):
        assert doctest.testmod(module).failed == 0
