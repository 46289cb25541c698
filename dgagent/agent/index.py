"""The agent's durable memory: one SQLite row per tracked file, and the work queue with it.

A row says what the file looked like when it was last stored (size, mtime_ns, ctime_ns, SHA-256)
and where it went, so a reconcile is a stat per file and no S3 request. The same row carries the
pending operation (``put`` or ``delete``) and its state, so the queue survives kill -9: WAL commits
are durable against a process crash, and ``uploading`` rows left by a dead agent go back to
``queued`` at start.

States: queued → uploading → stored; failed (permanent error, or attempts used up; retried on
request); a retry is ``queued`` with ``next_attempt`` in the future.
"""

from __future__ import annotations

import posixpath
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgagent.errors import DgError
from dgagent.rpc.records import QueueItem, Transfer, ratio

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    watch TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT,
    key TEXT, kind TEXT, codec TEXT, original_size INTEGER, stored_size INTEGER,
    cache_hit INTEGER,
    state TEXT NOT NULL DEFAULT 'stored',
    op TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    error TEXT,
    updated REAL NOT NULL,
    why TEXT,
    release_ns INTEGER,
    PRIMARY KEY (watch, path)
);
DROP INDEX IF EXISTS files_due;
-- claim() takes the oldest due rows: without updated in the index SQLite sorts every queued
-- row per claim (29 ms at 50,000 queued, against 0.1 ms with it).
CREATE INDEX IF NOT EXISTS files_claim ON files (state, next_attempt, updated);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL, watch TEXT, path TEXT, op TEXT, key TEXT, kind TEXT, codec TEXT,
    original_size INTEGER, stored_size INTEGER, cache_hit INTEGER, seconds REAL, error TEXT,
    why TEXT
);
"""
KEEP_TRANSFERS = 10_000
PENDING = ("queued", "uploading")


class IndexClosedError(DgError):
    """The index was closed (the agent is stopping) and cannot be read or written any more."""


@dataclass(frozen=True)
class Row:
    watch: str
    path: str
    size: int | None
    mtime_ns: int | None
    ctime_ns: int | None
    """Any write (and a utime back to an old mtime) changes it: catches same-size edits that
    the one-second mtime tolerance would hide."""
    sha256: str | None
    key: str | None
    kind: str | None
    codec: str | None
    """For a delta: ``compat``, ``archive-v1``, ``-v2`` or ``-v3``."""
    original_size: int | None
    stored_size: int | None
    cache_hit: int | None
    state: str
    op: str | None
    attempts: int
    next_attempt: float
    error: str | None
    updated: float
    why: str | None = None
    """Why the engine stored it as it did (``PutResult.why``)."""
    release_ns: int | None = None
    """The file's mtime when it was queued: its place in its DeltaSpace's release order."""

    def record(self) -> QueueItem:
        return QueueItem(
            watch=self.watch,
            path=self.path,
            state=self.state,
            op=self.op,
            key=self.key,
            kind=self.kind,
            codec=self.codec,
            original_size=self.original_size,
            stored_size=self.stored_size,
            ratio=ratio(self.stored_size, self.original_size),
            cache_hit=None if self.cache_hit is None else bool(self.cache_hit),
            attempts=self.attempts,
            next_attempt=self.next_attempt or None,
            error=self.error,
            updated=self.updated,
            why=self.why,
        )


class Index:
    """Thread-safe access to the index database (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._closed = False
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
            self._upgrade()

    def _upgrade(self) -> None:
        """Bring an index written by an older version up to this schema (columns only grow)."""
        added = {
            # NULL ctime means unknown: each such file is hashed once by the next scan (plan()).
            "files": ("ctime_ns INTEGER", "codec TEXT", "why TEXT", "release_ns INTEGER"),
            "transfers": ("codec TEXT", "why TEXT"),
        }
        for table, wanted in added.items():
            rows = self._db.execute(f"PRAGMA table_info({table})").fetchall()
            have = {r["name"] for r in rows}
            for column in wanted:
                if column.split()[0] not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def close(self) -> None:
        """Checkpoint and close; later calls raise IndexClosedError (closing twice is a no-op)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock: every access goes through here.

        A handler or worker that outlives the agent's shutdown (a slow RPC call, an upload past
        the drain timeout) gets a DgError it can report, not sqlite3's ProgrammingError.
        """
        with self._lock:
            if self._closed:
                raise IndexClosedError(
                    "the agent's index is closed because the agent is stopping; "
                    "retry once it runs again"
                )
            yield self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._use() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        with self._use() as db:
            return [Row(**dict(r)) for r in db.execute(sql, args).fetchall()]

    def integrity_ok(self) -> bool:
        with self._use() as db:
            return bool(db.execute("PRAGMA quick_check").fetchone()[0] == "ok")

    # ------------------------------------------------------------ reads

    def get(self, watch: str, path: str) -> Row | None:
        rows = self._rows("SELECT * FROM files WHERE watch=? AND path=?", (watch, path))
        return rows[0] if rows else None

    def tracked(self, watch: str) -> dict[str, Row]:
        return {r.path: r for r in self._rows("SELECT * FROM files WHERE watch=?", (watch,))}

    def listing(self, state: str | None, offset: int, limit: int) -> list[Row]:
        if state is None:
            sql, args = (
                "SELECT * FROM files ORDER BY updated DESC LIMIT ? OFFSET ?",
                (limit, offset),
            )
            return self._rows(sql, args)
        sql = "SELECT * FROM files WHERE state=? ORDER BY updated DESC LIMIT ? OFFSET ?"
        return self._rows(sql, (state, limit, offset))

    def counts(self) -> dict[str, int]:
        with self._use() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def pending(self, watch: str) -> int:
        """Files of ``watch`` still to store (queued or uploading)."""
        with self._use() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM files WHERE watch=? AND state IN ('queued', 'uploading')",
                (watch,),
            ).fetchone()
        return int(row[0])

    def retrying(self) -> int:
        """Queued operations waiting out a backoff after a failed attempt."""
        with self._use() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM files WHERE state='queued' AND attempts>0"
            ).fetchone()
        return int(row[0])

    def totals(self) -> dict[str, dict[str, int]]:
        """Per watch: files stored, original and stored bytes."""
        sql = (
            "SELECT watch, COUNT(*), COALESCE(SUM(original_size),0), COALESCE(SUM(stored_size),0) "
            "FROM files WHERE state='stored' GROUP BY watch"
        )
        with self._use() as db:
            rows = db.execute(sql).fetchall()
        return {w: {"files": n, "original": o, "stored": s} for w, n, o, s in rows}

    def decisions(self) -> dict[str, dict[str, int]]:
        """Per watch: how many stored files went as a delta, a new reference or whole (the
        first words of each file's ``why``)."""
        sql = (
            "SELECT watch, CASE WHEN why LIKE 'new reference%' THEN 'new reference' "
            "WHEN why LIKE 'whole%' THEN 'whole' WHEN why LIKE 'delta%' THEN 'delta' "
            "ELSE 'unknown' END AS decision, COUNT(*) "
            "FROM files WHERE state='stored' GROUP BY watch, decision"
        )
        with self._use() as db:
            rows = db.execute(sql).fetchall()
        found: dict[str, dict[str, int]] = {}
        for watch, decision, n in rows:
            found.setdefault(watch, {})[decision] = n
        return found

    def next_due(self) -> float | None:
        with self._use() as db:
            row = db.execute("SELECT MIN(next_attempt) FROM files WHERE state='queued'").fetchone()
        return None if row[0] is None else float(row[0])

    def recent(self, limit: int) -> list[Transfer]:
        """The last ``limit`` operations, newest first."""
        with self._use() as db:
            rows = db.execute(
                "SELECT * FROM transfers ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        found = []
        for r in rows:
            fields = dict(r)
            hit = fields.pop("cache_hit")
            found.append(
                Transfer(
                    **fields,
                    ratio=ratio(r["stored_size"], r["original_size"]),
                    cache_hit=None if hit is None else bool(hit),
                )
            )
        return found

    # ----------------------------------------------------------- writes

    def enqueue(self, watch: str, path: str, op: str, release_ns: int | None = None) -> bool:
        """Queue an operation on a file; False when the same one is already pending.
        ``release_ns`` (its mtime now) orders it among the files of its DeltaSpace."""
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT state, op FROM files WHERE watch=? AND path=?", (watch, path)
            ).fetchone()
            if row is not None and row["state"] in PENDING and row["op"] == op:
                return False
            if row is None:
                db.execute(
                    "INSERT INTO files (watch, path, state, op, updated, release_ns) "
                    "VALUES (?,?,?,?,?,?)",
                    (watch, path, "queued", op, now, release_ns),
                )
            else:
                db.execute(
                    "UPDATE files SET state='queued', op=?, attempts=0, next_attempt=0, "
                    "error=NULL, updated=?, release_ns=? WHERE watch=? AND path=?",
                    (op, now, release_ns, watch, path),
                )
        return True

    def claim(
        self, limit: int, skip: set[str], serial: Callable[[str], bool] = lambda _: True
    ) -> list[Row]:
        """Take due queued rows for work (not of the paused watches in ``skip``): of the paths
        that ``serial`` says need it, at most one per DeltaSpace (folder), none of a DeltaSpace
        with such work in progress, and of each the oldest in release order (mtime, then name),
        since whether a version becomes a new reference depends on the one before it
        (engine/rotation.py). Other paths (never deltas) are taken as they come."""
        now = time.time()
        with self._tx() as db:
            busy = {
                (r["watch"], posixpath.dirname(r["path"]))
                for r in db.execute("SELECT watch, path FROM files WHERE state='uploading'")
                if serial(r["path"])
            }
            due = [
                Row(**dict(r))
                for r in db.execute(
                    "SELECT * FROM files WHERE state='queued' AND next_attempt<=? "
                    "ORDER BY next_attempt, updated LIMIT ?",
                    (now, 4 * (limit + len(skip) * 8 + len(busy)) + 32),
                ).fetchall()
                if r["watch"] not in skip
            ]
            first: dict[tuple[str, str], Row] = {}
            alone: list[Row] = []
            for row in due:
                if not serial(row.path):
                    alone.append(row)
                    continue
                space = (row.watch, posixpath.dirname(row.path))
                held = first.get(space)
                if space not in busy and (
                    held is None
                    or (row.release_ns or 0, row.path) < (held.release_ns or 0, held.path)
                ):
                    first[space] = row
            rows = sorted([*first.values(), *alone], key=due.index)[:limit]
            for r in rows:
                db.execute(
                    "UPDATE files SET state='uploading', updated=? WHERE watch=? AND path=?",
                    (now, r.watch, r.path),
                )
        return rows

    def stored(self, watch: str, path: str, **values: Any) -> None:
        """The put finished: remember what was stored (size, times, sha256, key, sizes…)."""
        cols = ", ".join(f"{k}=?" for k in values)
        with self._tx() as db:
            db.execute(
                f"UPDATE files SET {cols}, state='stored', op=NULL, attempts=0, next_attempt=0, "  # noqa: S608 (column names are ours)
                "error=NULL, updated=? WHERE watch=? AND path=?",
                (*values.values(), time.time(), watch, path),
            )

    def touch(self, watch: str, path: str, mtime_ns: int, ctime_ns: int) -> None:
        """Only the times moved and the content is the same: remember the new times."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET mtime_ns=?, ctime_ns=?, updated=? WHERE watch=? AND path=?",
                (mtime_ns, ctime_ns, time.time(), watch, path),
            )

    def retry_later(self, watch: str, path: str, delay: float, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state='queued', attempts=attempts+1, next_attempt=?, error=?, "
                "updated=? WHERE watch=? AND path=?",
                (time.time() + delay, error, time.time(), watch, path),
            )

    def requeue(self, watch: str, path: str, delay: float, error: str) -> None:
        """Back to the queue without counting an attempt (the failure was not the file's)."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state='queued', next_attempt=?, error=?, updated=? "
                "WHERE watch=? AND path=?",
                (time.time() + delay, error, time.time(), watch, path),
            )

    def fail(self, watch: str, path: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state='failed', attempts=attempts+1, error=?, updated=? "
                "WHERE watch=? AND path=?",
                (error, time.time(), watch, path),
            )

    def forget(self, watch: str, path: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE watch=? AND path=?", (watch, path))

    def forget_watch(self, watch: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE watch=?", (watch,))

    def retry(self, watch: str, path: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE files SET state='queued', next_attempt=0, attempts=0, updated=? "
                "WHERE watch=? AND path=? AND state IN ('failed','queued')",
                (time.time(), watch, path),
            )
            return cur.rowcount > 0

    def cancel(self, watch: str, path: str) -> bool:
        """Drop a pending operation: the row goes back to what was last stored, or away."""
        with self._tx() as db:
            row = db.execute(
                "SELECT sha256 FROM files "
                "WHERE watch=? AND path=? AND state IN ('queued','failed')",
                (watch, path),
            ).fetchone()
            if row is None:
                return False
            if row["sha256"] is None:
                db.execute("DELETE FROM files WHERE watch=? AND path=?", (watch, path))
            else:
                db.execute(
                    "UPDATE files SET state='stored', op=NULL, error=NULL, updated=? "
                    "WHERE watch=? AND path=?",
                    (time.time(), watch, path),
                )
            return True

    def retry_failed(self, watch: str | None = None) -> int:
        """Queue every failed file again (of one watch, or all): at start, since what failed
        may work now (a tool installed, a bucket made), and on ``dg-agent retry``."""
        sql = "UPDATE files SET state='queued', next_attempt=0, attempts=0, updated=? "
        sql += "WHERE state='failed'" + (" AND watch=?" if watch is not None else "")
        args: tuple[Any, ...] = (time.time(),) + ((watch,) if watch is not None else ())
        with self._tx() as db:
            return db.execute(sql, args).rowcount

    def failures(self) -> dict[str, tuple[int, str]]:
        """Per watch: how many files failed, and the newest error."""
        with self._use() as db:
            rows = db.execute(
                "SELECT watch, COUNT(*), (SELECT error FROM files f2 WHERE f2.watch=f.watch "
                "AND f2.state='failed' ORDER BY updated DESC LIMIT 1) "
                "FROM files f WHERE state='failed' GROUP BY watch"
            ).fetchall()
        return {watch: (n, error or "") for watch, n, error in rows}

    def layout(self) -> dict[str, tuple[int, int]]:
        """Per watch: stored files, and how many of them share their folder (their DeltaSpace)
        with another stored file; only those can ever be a delta of an earlier version."""
        with self._use() as db:
            rows = db.execute(
                "SELECT watch, SUM(n), SUM(CASE WHEN n > 1 THEN n ELSE 0 END) FROM ("
                " SELECT watch, rtrim(key, replace(key, '/', '')) AS space, COUNT(*) AS n"
                " FROM files WHERE state='stored' AND key IS NOT NULL GROUP BY watch, space"
                ") GROUP BY watch"
            ).fetchall()
        return {watch: (int(total), int(shared)) for watch, total, shared in rows}

    def poor_archive_deltas(
        self, suffixes: tuple[str, ...], ratio: float, first: str
    ) -> dict[str, int]:
        """Per watch: zip-like files stored with the default codec at more than ``ratio`` of
        their size (the archive codec stores such files 41-56 % smaller)."""
        like = " OR ".join("lower(path) LIKE ?" for _ in suffixes)
        with self._use() as db:
            rows = db.execute(
                "SELECT watch, COUNT(*) FROM files WHERE state='stored' "  # noqa: S608
                "AND (codec IS NULL OR codec='compat') AND original_size > 0 "
                # The first file of a folder has nothing to delta against: not a poor delta.
                "AND coalesce(why, '') NOT LIKE ? "
                f"AND stored_size > ? * original_size AND ({like}) GROUP BY watch",
                (f"{first}%", ratio, *(f"%{s}" for s in suffixes)),
            ).fetchall()
        return {watch: int(n) for watch, n in rows}

    def requeue_interrupted(self) -> int:
        """At start: work a killed agent left half-done is done again."""
        with self._tx() as db:
            return db.execute(
                "UPDATE files SET state='queued', next_attempt=0 WHERE state='uploading'"
            ).rowcount

    def log_transfer(self, **values: Any) -> None:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._tx() as db:
            db.execute(
                f"INSERT INTO transfers (time, {cols}) VALUES (?, {marks})",  # noqa: S608
                (time.time(), *values.values()),
            )
            db.execute(
                "DELETE FROM transfers WHERE id <= (SELECT MAX(id) FROM transfers) - ?",
                (KEEP_TRANSFERS,),
            )
