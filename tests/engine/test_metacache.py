"""The metadata cache: hits only for the listed version of an object, bounded, shared by
processes, and skipped (never fatal) when its file is unusable."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dgagent.engine.metacache import MetadataCache
from dgagent.storage.base import ObjectInfo

WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SCOPE = "http://127.0.0.1:1 bucket"


def obj(key: str, etag: str = '"e1"', size: int = 10, when: datetime = WHEN) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=etag, last_modified=when)


def test_a_hit_only_for_the_same_version(tmp_path: Path) -> None:
    cache = MetadataCache(tmp_path / "m.sqlite")
    cache.remember(SCOPE, [(obj("a"), {"dg-file-size": "5"}), (obj("b"), {"x": "1"})])
    assert cache.lookup(SCOPE, [obj("a"), obj("b")]) == {
        "a": {"dg-file-size": "5"},
        "b": {"x": "1"},
    }
    assert cache.lookup(SCOPE, [obj("a", etag="e1")]) == {"a": {"dg-file-size": "5"}}  # rclone
    assert cache.lookup(SCOPE, [obj("a", etag='"e2"')]) == {}
    assert cache.lookup(SCOPE, [obj("a", size=11)]) == {}
    assert cache.lookup(SCOPE, [obj("a", when=WHEN + timedelta(seconds=1))]) == {}
    assert cache.lookup("other store", [obj("a")]) == {}
    cache.forget(SCOPE, ["a"])
    assert cache.lookup(SCOPE, [obj("a"), obj("b")]) == {"b": {"x": "1"}}


def test_bounded_keeping_the_recently_used(tmp_path: Path) -> None:
    cache = MetadataCache(tmp_path / "m.sqlite", max_entries=100, used_grain=0)
    cache.remember(SCOPE, [(obj(f"k{n}"), {"n": str(n)}) for n in range(90)])
    time.sleep(0.01)
    assert len(cache.lookup(SCOPE, [obj("k0")])) == 1  # k0 is now the most recently used
    time.sleep(0.01)
    cache.remember(SCOPE, [(obj(f"k{n}"), {"n": str(n)}) for n in range(90, 150)])
    with sqlite3.connect(tmp_path / "m.sqlite") as db:
        (count,) = db.execute("SELECT count(*) FROM heads").fetchone()
    assert count <= 100
    assert cache.lookup(SCOPE, [obj("k0")]) == {"k0": {"n": "0"}}
    assert cache.lookup(SCOPE, [obj("k1")]) == {}  # least recently used: gone


def test_a_repeated_lookup_writes_nothing(tmp_path: Path) -> None:
    """Last use is kept to the hour: a warm listing only reads the cache."""
    path = tmp_path / "m.sqlite"
    cache = MetadataCache(path)
    cache.remember(SCOPE, [(obj(f"k{n}"), {"n": str(n)}) for n in range(50)])
    with sqlite3.connect(path) as db:
        before = db.execute("SELECT sum(used) FROM heads").fetchone()
    assert len(cache.lookup(SCOPE, [obj(f"k{n}") for n in range(50)])) == 50
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT sum(used) FROM heads").fetchone() == before


def _fill(path: str, start: int) -> None:
    cache = MetadataCache(Path(path))
    for n in range(start, start + 300, 10):
        cache.remember(SCOPE, [(obj(f"k{m}"), {"n": str(m)}) for m in range(n, n + 10)])
        cache.lookup(SCOPE, [obj(f"k{m}") for m in range(0, n, 7)])
    cache.close()


def test_several_processes_share_it(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fill, args=(str(path), s)) for s in (0, 300, 600)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    found = MetadataCache(path).lookup(SCOPE, [obj(f"k{n}") for n in range(900)])
    assert len(found) == 900
    assert found["k777"] == {"n": "777"}


def test_an_unusable_file_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.sqlite"
    path.write_bytes(b"not a database at all, " * 100)
    cache = MetadataCache(path)
    with caplog.at_level(logging.WARNING):
        cache.remember(SCOPE, [(obj("a"), {"x": "1"})])
        assert cache.lookup(SCOPE, [obj("a")]) == {}
        cache.remember(SCOPE, [(obj("b"), {"x": "1"})])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "delete the file" in warnings[0].getMessage()
