"""The queue model and the pure formatting, without a terminal."""

from __future__ import annotations

import doctest
from typing import Any

import tui.agent.model
import tui.folders
import tui.format
import tui.screens.activity
import tui.screens.browse
from tui.agent.model import MAX_DONE_ROWS, QueueModel
from tui.screens.queue_table import cells

NOW = 1_000_000.0


def stored(path: str, original: int = 1000, stored: int = 10) -> dict[str, Any]:
    data = {"watch": "/w", "path": path, "kind": "delta", "original_size": original}
    return {"type": "file.stored", "data": {**data, "stored_size": stored, "seconds": 1.0}}


def test_events_change_rows_and_report_only_what_changed() -> None:
    model = QueueModel(lambda: NOW)
    model.load({"done": 5, "cache": {"hits": 3, "misses": 1}}, [], [])
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


def test_the_codec_of_a_stored_file_reaches_its_row_and_cells() -> None:
    model = QueueModel(lambda: NOW)
    model.load({}, [{"watch": "/w", "path": "a.whl", "state": "stored", "codec": "compat"}], [])
    event = stored("b.whl")
    event["data"]["codec"] = "archive-v1"
    model.apply(event)
    columns = ("flag", "name", "ratio")
    a, b = model.rows[("/w", "a.whl")], model.rows[("/w", "b.whl")]
    assert (a.codec, b.codec) == ("compat", "archive-v1")
    assert cells(a, NOW, columns, False)[1] == "a.whl"
    assert cells(b, NOW, columns, False) == ["Δ", "b.whl  [archive-v1]", "1.0%"]
    assert "[archive-v1]" in tui.format.event_text(event)


def test_progress_events_fill_the_progress_cell_until_the_file_is_stored() -> None:
    now = [NOW]
    model = QueueModel(lambda: now[0])
    model.load({}, [], [])
    where = {"watch": "/w", "path": "big.iso"}
    model.apply({"type": "file.uploading", "data": {**where, "size": 4000}})

    def shown() -> str:
        return cells(model.rows[("/w", "big.iso")], now[0], ("progress",), False)[0]

    assert shown() == "uploading 0s"
    now[0] += 5
    model.apply({"type": "file.progress", "data": {**where, "stage": "encoding", "done": 0}})
    now[0] += 75
    model.apply({"type": "file.progress", "data": {**where, "stage": "encoding", "done": 0}})
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
    model.apply({"type": "file.failed", "data": {"watch": "/w", "path": "bad", "error": "x"}})
    for n in range(MAX_DONE_ROWS + 5):
        model.apply(stored(f"f{n}"))
    _, changed, removed = model.take_changes()
    assert len(model.rows) == MAX_DONE_ROWS + 1
    assert ("/w", "bad") in model.rows and ("/w", "f0") not in model.rows
    assert ("/w", "f4") in removed and ("/w", "f4") not in changed
    assert model.ratio_series(3) == [0.01, 0.01, 0.01]


def test_doctests() -> None:
    for module in (
        tui.format,
        tui.screens.browse,
        tui.screens.activity,
        tui.agent.model,
        tui.folders,
    ):
        assert doctest.testmod(module).failed == 0
