"""Small file helpers shared by the engine and the commands: streaming hashes, atomic outputs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dgagent.errors import NotFoundError, UnreadableError

CHUNK = 1024 * 1024


def _read_umask() -> int:
    # Read once at import: os.umask can only be read by setting it, which is not thread-safe.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (lowercase hex) and size of a file, read in chunks (never whole in memory)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@contextlib.contextmanager
def atomic_output(dest: Path) -> Iterator[Path]:
    """Yield a temp path beside ``dest``; on success it replaces ``dest``, on failure it vanishes.

    Readers of ``dest`` therefore see the old file or the complete new one, never a partial one.
    The caller (or a program it runs) writes the temp path by name.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name[:60]}.dg-part-", dir=dest.parent)
    except FileNotFoundError as exc:
        raise NotFoundError(
            f"cannot write {dest}: the folder {dest.parent} does not exist; create it "
            f"(mkdir -p {shlex.quote(str(dest.parent))}) or choose another destination"
        ) from exc
    except (PermissionError, NotADirectoryError) as exc:
        raise UnreadableError(
            f"cannot write {dest}: {exc.strerror or exc} in {dest.parent}; choose a "
            "destination you can write to"
        ) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; honour the umask
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def copy_stream(src: BinaryIO, dest: BinaryIO) -> tuple[str, int]:
    """Copy in chunks, returning the SHA-256 and size of what went through."""
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dest.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self.size += len(data)
        return self._f.write(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@contextlib.contextmanager
def scratch_dir(root: Path, *, prefix: str = "dg-") -> Iterator[Path]:
    """A temp folder under ``root`` (the cache's disk, not /tmp, which may be a small RAM disk:
    staged files can be as large as any artifact), removed afterwards; /tmp if ``root`` fails."""
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = tempfile.TemporaryDirectory(prefix=prefix, dir=root)
    except OSError:
        work = tempfile.TemporaryDirectory(prefix=prefix)
    with work as name:
        yield Path(name)
