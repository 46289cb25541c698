"""What the user must act on, with the command that fixes it: ``status`` (text and JSON), the
socket API and dg-tui all show this one list.

Three sources: checks of the agent's prerequisites and of each watch's store (at start, after a
config change, and when a watch is added), the last config reload that failed, and what the
index shows (files that failed, a folder layout that can never delta, zip-like files the
default codec stores poorly).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from dgagent.agent.index import Index
from dgagent.agent.workers import Target
from dgagent.engine.codec import Xdelta3
from dgagent.errors import DgError
from dgagent.storage import ObjectInfo, Prefix

log = logging.getLogger(__name__)

ZIP_LIKE = (".zip", ".jar", ".war", ".ear", ".whl", ".apk", ".aar", ".nupkg")
"""Files the archive codec expands member by member."""
POOR_RATIO = 0.8
"""Default-codec deltas of zip-like files above this share of the file: the archive codec
stored such jars 41-56 % smaller."""
POOR_FILES = 3
LONE_FILES = 5
"""Stored files, each alone in its folder, before the layout is called one that cannot delta."""


@dataclass(frozen=True)
class Problem:
    """One state the user must act on."""

    problem: str
    fix: str
    watch: str | None = None
    """The watched folder it is about; None for the agent as a whole."""

    def record(self) -> dict[str, str | None]:
        return {"watch": self.watch, "problem": self.problem, "fix": self.fix}


def prerequisites() -> list[Problem]:
    """What the agent cannot work without, checked at start."""
    try:
        _ = Xdelta3().binary
    except DgError as exc:
        return [Problem(str(exc), "install xdelta3, then: dg-agent stop && dg-agent start")]
    return []


def check_store(target: Target) -> Problem | None:
    """Whether a watch's store answers (the bucket exists, the credentials may list it):
    the first page of one LIST."""
    try:
        for item in target.store.storage.list_objects(target.prefix, delimiter="/"):
            if isinstance(item, ObjectInfo | Prefix):
                break
    except DgError as exc:
        return Problem(
            f"{target.watch.url} cannot be read: {exc}",
            "fix the bucket or the credentials (the agent checks again at every reconcile, or "
            "at: dg-agent stop && dg-agent start), or stop watching: dg-agent watch remove "
            f"{shlex.quote(str(target.watch.dir))}",
            target.watch.name,
        )
    return None


def from_index(index: Index, watches: Iterable[str]) -> list[Problem]:
    """Problems the stored and failed files show."""
    known = set(watches)
    found: list[Problem] = []
    for watch, (n, error) in sorted(index.failures().items()):
        if watch in known:
            found.append(
                Problem(
                    f"{n} file{'s' * (n != 1)} failed in {watch}; the last error: {error}",
                    f"fix the cause, then: dg-agent retry {shlex.quote(watch)}",
                    watch,
                )
            )
    for watch, (total, shared) in sorted(index.layout().items()):
        if watch in known and total >= LONE_FILES and shared == 0:
            found.append(
                Problem(
                    f"each of the {total} files stored from {watch} is alone in its folder (one "
                    "version per folder, as in a Maven or PyPI layout), so none can be stored as "
                    "a delta: a delta needs an earlier version in the same folder",
                    "store successive versions of an artifact in one folder (for example a "
                    "watch per artifact whose URL is one folder); nothing is lost as it is",
                    watch,
                )
            )
    for watch, n in sorted(index.poor_archive_deltas(ZIP_LIKE, POOR_RATIO).items()):
        if watch in known and n >= POOR_FILES:
            found.append(
                Problem(
                    f"{n} zip-like files (jar, wheel, zip…) in {watch} were stored at over "
                    f"{POOR_RATIO:.0%} of their size with the default codec",
                    "try the archive codec (smaller deltas of zip members, read by dg-agent "
                    f"only): dg-agent watch add {shlex.quote(watch)} URL --codec archive",
                    watch,
                )
            )
    return found
