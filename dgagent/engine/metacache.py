"""What a HEAD told us about a stored object, kept on disk so that a listing costs LIST requests
only: a bucket of 100,000 artifacts would otherwise cost 100,000 HEADs per ``ls``, ``stats`` or
``sync``, each a round trip and a billed request.

An entry is keyed by the store, the object's key and what the LIST says of the object (ETag,
size, last-modified), so a changed object is a miss: every write of an S3 object gives it a new
last-modified, even when its bytes (and so its ETag) stay the same. The one blind spot: LIST
times have whole seconds, so identical bytes rewritten with other metadata within the second
they were written look unchanged; for dg-agent's own objects identical bytes mean the same file,
so at worst a recorded mtime is a second old. Entries are only ever added from a HEAD whose ETag
matched the LIST's, so metadata is never filed under another version's ETag.

SQLite in WAL mode, so the CLI, the agent and several of either can share it; a cache that cannot
be opened or written is skipped with one warning (it only saves requests, it is never needed).
Bounded: past ``max_entries`` the least recently used tenth goes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from dgagent.storage.base import ObjectInfo

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.sqlite"
"""Its name in the reference cache's folder (which keeps its own files in refs/ and tmp/)."""
MAX_ENTRIES = 250_000
"""About 150 MB at worst (keys and metadata of a few hundred bytes each)."""
USED_GRAIN = 3600.0
"""Seconds within which a hit does not update an entry's last use."""
BATCH = 500
"""Keys per SELECT (SQLite allows 32,766 parameters; smaller batches keep each query quick)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    metadata TEXT NOT NULL,
    used REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heads_used ON heads (used);
"""


def version_of(obj: ObjectInfo) -> str:
    """What identifies one version of an object in a listing. ETags are compared without
    quotes: rclone lists them bare and quotes them in a HEAD."""
    return f"{obj.etag.strip(chr(34))}|{obj.size}|{obj.last_modified.isoformat()}"


def same_etag(a: str, b: str) -> bool:
    return a.strip('"') == b.strip('"')


class MetadataCache:
    """User metadata of stored objects by (store, key, version); thread- and process-safe."""

    def __init__(
        self, path: Path, *, max_entries: int = MAX_ENTRIES, used_grain: float = USED_GRAIN
    ) -> None:
        self.path = path
        self.max_entries = max_entries
        self.used_grain = used_grain
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                self._give_up(exc)
        return self._db

    def _give_up(self, exc: Exception) -> None:
        log.warning(
            "metadata cache %s is unusable (%s); listings read each object's metadata from the "
            "store instead (delete the file to start a new cache)",
            self.path,
            exc,
        )
        self._broken = True
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection | None]:
        with self._lock:
            db = self._connect()
            if db is None:
                yield None
                return
            try:
                with db:
                    yield db
            except sqlite3.OperationalError as exc:
                # Busy past the timeout (another process holds a long write): skip this once.
                log.debug("metadata cache %s: %s", self.path, exc)
            except sqlite3.DatabaseError as exc:
                self._give_up(exc)

    def lookup(self, scope: str, objects: Iterable[ObjectInfo]) -> dict[str, Mapping[str, str]]:
        """The metadata known for these listed objects, by key; changed objects are missing."""
        wanted = {o.key: version_of(o) for o in objects}
        found: dict[str, Mapping[str, str]] = {}
        names = list(wanted)
        # "Recently used" needs no finer grain than an hour: a repeated listing then writes
        # nothing (an UPDATE per object cost a fifth of a warm 20,000-object listing).
        now = time.time()
        stale = now - self.used_grain
        touched: list[str] = []
        with self._using() as db:
            if db is None:
                return found
            for start in range(0, len(names), BATCH):
                chunk = names[start : start + BATCH]
                marks = ",".join("?" * len(chunk))  # placeholders only: the keys are bound
                query = (
                    "SELECT key, version, metadata, used FROM heads "  # noqa: S608
                    f"WHERE scope = ? AND key IN ({marks})"
                )
                rows = db.execute(query, (scope, *chunk)).fetchall()
                for key, version, metadata, used in rows:
                    if wanted.get(key) == version:
                        found[key] = json.loads(metadata)
                        if used <= stale:
                            touched.append(key)
            if touched:
                db.executemany(
                    "UPDATE heads SET used = ? WHERE scope = ? AND key = ?",
                    [(now, scope, key) for key in touched],
                )
        return found

    def remember(self, scope: str, heads: Iterable[tuple[ObjectInfo, Mapping[str, str]]]) -> None:
        """File each listed object's metadata (from a HEAD that matched its listed ETag)."""
        now = time.time()
        rows = [
            (scope, obj.key, version_of(obj), json.dumps(dict(meta), sort_keys=True), now)
            for obj, meta in heads
        ]
        if not rows:
            return
        with self._using() as db:
            if db is None:
                return
            db.executemany("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?, ?)", rows)
            (count,) = db.execute("SELECT count(*) FROM heads").fetchone()
            if count > self.max_entries:
                drop = count - self.max_entries + self.max_entries // 10
                db.execute(
                    "DELETE FROM heads WHERE (scope, key) IN "
                    "(SELECT scope, key FROM heads ORDER BY used LIMIT ?)",
                    (drop,),
                )

    def forget(self, scope: str, keys: Iterable[str]) -> None:
        """Drop entries of deleted objects (a miss would be safe too: this only keeps it small)."""
        rows = [(scope, key) for key in keys]
        with self._using() as db:
            if db is not None and rows:
                db.executemany("DELETE FROM heads WHERE scope = ? AND key = ?", rows)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None
