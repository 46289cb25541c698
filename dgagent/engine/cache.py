"""The persistent reference cache: each DeltaSpace's reference.bin, kept on local disk.

Encoding or decoding a delta needs the DeltaSpace's reference locally, and references are large,
so they are kept across processes and runs instead of being downloaded for every file.

- Content-addressed: an entry lives at ``root/refs/<sha[:2]>/<sha>``, named by the SHA-256 of its
  bytes, so two processes that fetch the same reference write the same thing and a reference that
  changes in the store can never be confused with the old one.
- Checked on every read: a hit is re-hashed before use, because a delta decoded against a wrong
  reference yields wrong bytes with no error. A bad entry is dropped and fetched again.
- Safe across processes: entries are written to ``root/tmp`` and linked into place, so nobody sees
  a half-written entry. A user of an entry holds a shared ``flock`` on it; eviction holds
  ``root/lock`` exclusively and deletes only entries it can lock exclusively, so it never removes a
  file a decoder is about to open. Opening an entry and locking it happen under ``root/lock``
  shared, so eviction cannot slip in between.
- Least recently used goes first: a file's mtime is its last use, so no index file can go stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dgagent.errors import CacheError, DgError, IntegrityError

__all__ = ["CacheEntry", "CacheStats", "Fetch", "ReferenceCache"]

Fetch = Callable[[BinaryIO], None]
"""Writes the reference's bytes into the given open binary file."""

_log = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STALE_TMP_SECONDS = 3600  # a download that has written nothing for an hour is an orphan
_INSTALL_ATTEMPTS = 3


@dataclass(frozen=True)
class CacheEntry:
    """A verified local copy of a reference, valid while its ``with`` block lasts."""

    path: Path
    hit: bool


@dataclass(frozen=True)
class CacheStats:
    """This instance's hit and miss counts, and what the cache holds on disk now."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int


class ReferenceCache:
    """References on local disk, shared by every process that uses the same ``root``."""

    def __init__(self, root: Path, *, max_bytes: int = 2 * 1024**3) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._counter_lock = threading.Lock()

    @contextlib.contextmanager
    def reference(self, sha256: str, fetch: Fetch, *, checked: bool = True) -> Iterator[CacheEntry]:
        """Yield a verified local copy of the reference, calling ``fetch`` only on a miss.

        The entry cannot be evicted, by this process or another, until the block ends.
        ``checked=False`` skips the SHA-256 pass over an entry found: only for a caller that
        checks what it makes from it, and asks again checked when that fails.
        """
        path = self._entry_path(sha256)
        handle = self._open_verified(sha256, path, checked=checked)
        hit = handle is not None
        with self._counter_lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
        if handle is None:
            handle = self._insert(
                sha256,
                fetch,
                what=f"reference downloaded for {sha256[:12]}…",
                fix="the stored reference.bin is corrupt or was replaced: restore the original, "
                "or re-upload the DeltaSpace's files so their deltas are made against the new one",
            )
        with handle:
            if not hit:
                self.evict()  # our shared lock keeps the new entry safe from this
            yield CacheEntry(path=path, hit=hit)

    def add(self, sha256: str, source: Path) -> None:
        """Put a copy of a local file we already have (say, a reference just downloaded)."""
        with self.holding(sha256, source):
            pass

    @contextlib.contextmanager
    def holding(self, sha256: str, source: Path) -> Iterator[Path]:
        """Put a copy of a local file we already have, and yield the copy's path: checked
        against ``sha256`` (IntegrityError when the file changed after it was hashed) and safe
        from eviction until the block ends."""
        path = self._entry_path(sha256)
        handle = self._open_verified(sha256, path)  # when intact, this touches it
        if handle is None:
            with source.open("rb") as src:
                handle = self._insert(
                    sha256,
                    lambda tmp: shutil.copyfileobj(src, tmp, _CHUNK),
                    what=f"{source}, to be cached as {sha256[:12]}…,",
                    fix="it changed after it was hashed: hash it again before adding it",
                )
            with handle:
                self.evict()  # our shared lock keeps the new entry safe from this
                yield path
        else:
            with handle:
                yield path

    def stats(self) -> CacheStats:
        """Count this instance's hits and misses and walk the entries on disk."""
        with self._disk_errors("read"):
            sizes = [size for _, size, _ in self._scan()]
        with self._counter_lock:
            return CacheStats(
                hits=self.hits,
                misses=self.misses,
                entries=len(sizes),
                bytes=sum(sizes),
                max_bytes=self.max_bytes,
            )

    def evict(self) -> int:
        """Delete least recently used entries until the total fits ``max_bytes``; bytes freed.

        Entries in use (shared-locked by any process) are skipped, so the total may stay above
        the cap until they are released.
        """
        freed = 0
        with self._disk_errors("evict entries from"), self._global_lock(fcntl.LOCK_EX):
            entries = sorted(self._scan())
            total = sum(size for _, size, _ in entries)
            for _, size, path in entries:
                if total <= self.max_bytes:
                    break
                if _unlink_unless_in_use(path):
                    freed += size
                    total -= size
            self._sweep_orphans()
        return freed

    def _entry_path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise IntegrityError(
                f"{sha256[:80]!r} is not a SHA-256 digest: expected 64 lowercase hex characters"
            )
        return self.root / "refs" / sha256[:2] / sha256

    def _open_verified(self, sha256: str, path: Path, *, checked: bool = True) -> BinaryIO | None:
        """Return the entry open and shared-locked if it exists and is intact (or, unless
        ``checked``, just exists), else None."""
        with self._disk_errors("read"), contextlib.ExitStack() as stack:
            with self._global_lock(fcntl.LOCK_SH):
                try:
                    handle: BinaryIO = stack.enter_context(path.open("rb"))
                except FileNotFoundError:
                    return None
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            actual = _sha256_of(handle) if checked else sha256
            if actual == sha256:
                os.utime(handle.fileno())  # mtime is last use: what eviction orders by
                stack.pop_all()  # the caller's close releases the lock
                return handle
            _log.warning(
                "reference cache entry %s failed its SHA-256 check (found %s…); "
                "removing it and fetching it again",
                path,
                actual[:12],
            )
            with self._global_lock(fcntl.LOCK_EX):
                # Only our inode: another process may already have put a good entry there.
                if os.path.samestat(os.stat(path), os.fstat(handle.fileno())):
                    path.unlink()
        return None

    def _insert(self, sha256: str, fill: Fetch, *, what: str, fix: str) -> BinaryIO:
        """Fill a temp file, check its hash, link it into place; return it shared-locked."""
        path = self._entry_path(sha256)
        with self._disk_errors("create a file in"):
            _make_dir(path.parent)
            fd, tmp_name = tempfile.mkstemp(dir=_make_dir(self.root / "tmp"), prefix="ref.")
        tmp = os.fdopen(fd, "w+b")
        handle: BinaryIO | None = None
        try:
            fill(tmp)  # its exceptions are the caller's and pass through unchanged
            with self._disk_errors("write to"):
                tmp.flush()
                os.fsync(tmp.fileno())
                actual = _sha256_of(tmp)
            if actual != sha256:
                raise IntegrityError(f"{what} has SHA-256 {actual[:12]}…; {fix}")
            with self._disk_errors("store a reference in"):
                handle = self._install(sha256, tmp, Path(tmp_name), path)
        finally:
            if handle is not tmp:
                tmp.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        return handle

    def _install(self, sha256: str, tmp: BinaryIO, tmp_path: Path, path: Path) -> BinaryIO:
        # A link never replaces an entry, so one that another process holds stays the file at
        # its path; replacing it would leave that holder's lock on an orphan, not the entry.
        for _ in range(_INSTALL_ATTEMPTS):
            with self._global_lock(fcntl.LOCK_SH):
                try:
                    os.link(tmp_path, path)
                except FileExistsError:
                    pass
                else:
                    fcntl.flock(tmp.fileno(), fcntl.LOCK_SH)
                    return tmp
            existing = self._open_verified(sha256, path)  # put there by another process
            if existing is not None:
                return existing
        raise CacheError(
            f"reference cache entry {path} fails its SHA-256 check every time it is written: "
            f"check the disk under {self.root}, or set DG_CACHE_DIR to another directory"
        )

    @contextlib.contextmanager
    def _global_lock(self, operation: int) -> Iterator[None]:
        # A fresh open each time: flock locks belong to an open file description, so threads
        # contend with each other just as processes do.
        with self._disk_errors("lock"):
            fd = os.open(_make_dir(self.root) / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, operation)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _disk_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except DgError:
            raise  # CacheError is itself an OSError; ours already say what to do
        except OSError as exc:
            raise CacheError(
                f"cannot {action} the reference cache at {self.root} ({exc.strerror or exc}): "
                "set DG_CACHE_DIR to a writable directory or free space there"
            ) from exc

    def _scan(self) -> Iterator[tuple[float, int, Path]]:
        """Yield (last use, size, path) of every entry."""
        for path in (self.root / "refs").glob("*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # removed by someone else meanwhile
            yield st.st_mtime, st.st_size, path

    def _sweep_orphans(self) -> None:
        # Temp files left by a process that died mid-download would otherwise fill the disk.
        cutoff = time.time() - _STALE_TMP_SECONDS
        for path in (self.root / "tmp").glob("*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()


def _make_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _unlink_unless_in_use(path: Path) -> bool:
    with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # someone holds it shared: a decoder is using it
        path.unlink()
        return True
    return False


def _sha256_of(file: BinaryIO) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
