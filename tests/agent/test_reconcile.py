"""The change rule and the index schema upgrade, on real files and a real SQLite database."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from dgagent.agent.index import Index
from dgagent.agent.reconcile import differs

OLD_SCHEMA = """
CREATE TABLE files (
    watch TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER, mtime_ns INTEGER, sha256 TEXT,
    key TEXT, kind TEXT, original_size INTEGER, stored_size INTEGER, cache_hit INTEGER,
    state TEXT NOT NULL DEFAULT 'stored', op TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
    error TEXT, updated REAL NOT NULL,
    PRIMARY KEY (watch, path)
);
"""


def test_a_same_size_rewrite_within_a_second_differs(tmp_path: Path) -> None:
    index = Index(tmp_path / "index.db")
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\n")
    st = path.stat()
    index.enqueue("w", "a.txt", "put")
    index.stored(
        "w", "a.txt", size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, sha256="x"
    )
    assert not differs(path.stat(), index.get("w", "a.txt"))
    path.write_bytes(b"two\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime set back exactly
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert differs(after, index.get("w", "a.txt"))
    index.touch("w", "a.txt", after.st_mtime_ns, after.st_ctime_ns)
    assert not differs(path.stat(), index.get("w", "a.txt"))
    index.close()


def test_an_index_from_before_ctime_is_upgraded_and_rehashed(tmp_path: Path) -> None:
    db_path = tmp_path / "index.db"
    with sqlite3.connect(db_path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO files (watch, path, size, mtime_ns, sha256, updated) "
            "VALUES ('w', 'a.txt', 4, 1, 'x', 0)"
        )
    index = Index(db_path)
    row = index.get("w", "a.txt")
    assert row is not None and row.ctime_ns is None and row.sha256 == "x"
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, 1))
    assert differs(path.stat(), row)  # unknown ctime: look closer once
    index.close()
    Index(db_path).close()  # a second open finds the column and changes nothing


def test_claim_takes_one_file_per_deltaspace_in_release_order(tmp_path: Path) -> None:
    """Whether a version becomes a new reference depends on the one before it: the files of a
    folder go one at a time, oldest mtime first (not name order: 1.10 sorts before 1.9)."""
    index = Index(tmp_path / "index.db")
    for n, name in enumerate(["app-1.10.zip", "app-1.9.zip", "app-1.8.zip"]):
        index.enqueue("w", f"rel/{name}", "put", release_ns=3_000 - n * 1_000)
    index.enqueue("w", "other/lib-1.0.zip", "put", release_ns=5_000)
    index.enqueue("w", "rel/notes.txt", "put", release_ns=9_000)
    zips = lambda path: path.endswith(".zip")  # noqa: E731 (the engine's rule, in small)

    first = index.claim(5, set(), serial=zips)
    assert sorted(r.path for r in first) == [
        "other/lib-1.0.zip",
        "rel/app-1.8.zip",
        "rel/notes.txt",
    ]
    assert index.claim(5, set(), serial=zips) == []  # rel/ and other/ are busy
    index.stored("w", "rel/app-1.8.zip", size=1)
    assert [r.path for r in index.claim(5, set(), serial=zips)] == ["rel/app-1.9.zip"]
    index.stored("w", "rel/app-1.9.zip", size=1)
    assert [r.path for r in index.claim(5, set(), serial=zips)] == ["rel/app-1.10.zip"]
    index.close()
