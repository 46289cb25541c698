"""The change rule of ``sync`` (CLI and Python API): when a local file and a stored one differ.

Changed means: sizes differ, or mtimes differ by more than one second and the SHA-256 differs too
(a touched but identical file is not sent again). The remote size and mtime come from the object's
metadata (``dg-file-size`` and our ``dg-agent-mtime``), not from the stored size or upload time,
which is why running sync twice transfers nothing the second time, in either direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dgagent.engine.results import Entry
from dgagent.fileio import sha256_file

MTIME_TOLERANCE = 1.0


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    mtime: float


def remote_mtime(entry: Entry) -> float:
    if entry.meta is not None and entry.meta.mtime is not None:
        return entry.meta.mtime
    return entry.info.last_modified.timestamp()


def differs(local: LocalFile, entry: Entry, *, size_only: bool) -> bool:
    """The change rule, shared by both directions."""
    if entry.original_size is None or local.size != entry.original_size:
        return True
    if size_only or abs(local.mtime - remote_mtime(entry)) <= MTIME_TOLERANCE:
        return False
    expected = entry.meta.file_sha256 if entry.meta else None
    if expected is None:
        return True
    return sha256_file(local.path)[0] != expected
