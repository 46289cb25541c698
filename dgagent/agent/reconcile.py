"""Scans are truth: compare a watched folder with the index and decide what to do.

A reconcile is a stat per file and no S3 request: a file whose size, whose mtime (by more than
one second) or whose ctime differs from what the index recorded is hinted to the settler; once it
settles, ``plan`` decides (hashing it when the size is unchanged). Deletions are decided here
only, after a complete scan, and refused when the root is missing or empty, when the scan hit an
error, or when too large a share would go.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from dgagent.agent.config import Watch
from dgagent.agent.index import Index, Row
from dgagent.agent.settle import is_temporary
from dgagent.fileio import sha256_file

MTIME_TOLERANCE_NS = 1_000_000_000


def excluded(watch: Watch, relative: str) -> bool:
    name = relative.rpartition("/")[2]
    return is_temporary(name) or any(
        fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in watch.exclude
    )


def differs(st: os.stat_result, row: Row | None) -> bool:
    """The cheap test: does this file need a closer look?

    The mtime tolerance alone would miss a same-size rewrite within a second of the stored
    version (two builds in quick succession, or one made while the agent was down). Every write
    moves the ctime, to the nanosecond, and nothing can set it back, so a changed ctime sends the
    file to ``plan``, which hashes it before deciding anything.
    """
    if row is None or row.sha256 is None or row.size is None or row.mtime_ns is None:
        return True
    return (
        st.st_size != row.size
        or abs(st.st_mtime_ns - row.mtime_ns) > MTIME_TOLERANCE_NS
        or st.st_ctime_ns != row.ctime_ns
    )


@dataclass
class ScanResult:
    files: dict[str, os.stat_result] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    root_missing: bool = False


def scan(watch: Watch) -> ScanResult:
    """Every regular file under the watch root, relative paths → stat (symlinked dirs skipped)."""
    result = ScanResult()
    if not watch.dir.is_dir():
        result.root_missing = True
        return result
    stack = [(watch.dir, "")]
    while stack:
        folder, lead = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    rel = lead + entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if not is_temporary(entry.name):
                            stack.append((Path(entry.path), rel + "/"))
                    elif entry.is_file() and not excluded(watch, rel):
                        result.files[rel] = entry.stat()
        except FileNotFoundError:
            continue  # removed while we walked: the next scan sees the truth
        except OSError as exc:
            result.errors.append(f"{folder}: {exc.strerror or exc}")
    return result


@dataclass(frozen=True)
class DeleteDecision:
    paths: list[str]
    refused: str | None = None
    """Why nothing is deleted (a sentence for the user), when the guards say no."""


def deletions(
    watch: Watch, scanned: ScanResult, tracked: dict[str, Row], max_fraction: float
) -> DeleteDecision:
    """Which stored files to delete because they are gone locally, under the safety guards."""
    stored = {p for p, r in tracked.items() if r.state == "stored" and r.key}
    gone = sorted(p for p in stored if p not in scanned.files)
    if not gone:
        return DeleteDecision([])
    if scanned.root_missing:
        return DeleteDecision([], f"{watch.dir} is missing; nothing is deleted until it is back")
    if scanned.errors:
        why = f"the scan of {watch.dir} hit errors ({scanned.errors[0]})"
        return DeleteDecision([], why + "; nothing is deleted after an incomplete scan")
    if not scanned.files:
        why = f"{watch.dir} is empty; refusing to delete all {len(gone)} stored files"
        return DeleteDecision([], why + " (remove them with dg-agent rm if that is intended)")
    # A rename keeps size and mtime: content that only moved is not a loss, so it does not
    # count against the share of files allowed to go (a renamed folder is not a mass delete).
    appeared = {(st.st_size, st.st_mtime_ns) for p, st in scanned.files.items() if p not in stored}
    lost = [p for p in gone if (tracked[p].size, tracked[p].mtime_ns) not in appeared]
    if len(lost) > max_fraction * len(stored):
        return DeleteDecision(
            [],
            f"{len(lost)} of {len(stored)} stored files of {watch.dir} are gone, more than the "
            f"max_delete_fraction {max_fraction}; nothing is deleted (raise the limit in the "
            "config or remove them with dg-agent rm)",
        )
    return DeleteDecision(gone)


def plan(index: Index, watch: Watch, relative: str, st: os.stat_result) -> str | None:
    """For a settled file: 'put' when it must be stored, None when the index already has it.

    Only the times moved: hash it, and when the content is unchanged just remember the times.
    """
    row = index.get(watch.name, relative)
    if not differs(st, row):
        return None
    if row is not None and row.sha256 is not None and st.st_size == row.size:
        try:
            same = sha256_file(watch.dir / relative)[0] == row.sha256
        except OSError:
            return None  # vanished or unreadable: a later event or scan brings it back
        if same:
            index.touch(watch.name, relative, st.st_mtime_ns, st.st_ctime_ns)
            return None
    return "put"
