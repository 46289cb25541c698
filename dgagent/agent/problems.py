"""What the user must act on, with the command that fixes it: ``status`` (text and JSON), the
socket API and dg-tui all show this one list.

Three sources: checks of the agent's prerequisites and of each watch's store (at start, after a
config change, and when a watch is added), the last config reload that failed, and what the
index shows (files that failed, a folder layout that can never delta, zip-like files the
default codec stores poorly).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from dgagent.agent.index import Index
from dgagent.agent.workers import Target
from dgagent.engine import advice
from dgagent.engine.codec import Xdelta3
from dgagent.errors import DgError
from dgagent.rpc import records


@dataclass(frozen=True)
class Problem:
    """One state the user must act on."""

    problem: str
    fix: str
    watch: str | None = None
    """The watched folder it is about; None for the agent as a whole."""

    def record(self) -> records.Problem:
        return records.Problem(watch=self.watch, problem=self.problem, fix=self.fix)


def prerequisites() -> list[Problem]:
    """What the agent cannot work without, checked at start."""
    try:
        _ = Xdelta3().binary
    except DgError as exc:
        return [Problem(str(exc), "then start the agent again: dg-agent start")]
    return []


def check_store(target: Target) -> Problem | None:
    """Whether a watch's store answers (the bucket exists, the credentials may list it):
    the first page of one LIST."""
    try:
        next(iter(target.store.storage.list_objects(target.prefix, delimiter="/")), None)
    except DgError as exc:
        return Problem(
            f"{target.watch.url} cannot be read: {exc}",
            "fix the bucket or the credentials (the agent checks again at every reconcile, or "
            "at: dg-agent stop && dg-agent start), or stop watching: dg-agent watch remove "
            f"{shlex.quote(str(target.watch.dir))}",
            target.watch.name,
        )
    return None


def failures(index: Index, watches: Iterable[str]) -> list[Problem]:
    """Files that failed, per watch (a cheap query: asked at every status)."""
    known = set(watches)
    return [
        Problem(
            f"{n} file{'s' * (n != 1)} failed in {watch}; the last error: {error}",
            f"fix the cause, then: dg-agent retry {shlex.quote(watch)}",
            watch,
        )
        for watch, (n, error) in sorted(index.failures().items())
        if watch in known
    ]


def layout_advice(index: Index, watches: Iterable[str]) -> list[Problem]:
    """What the stored files say of the layout and the codec: a scan of every stored file
    (0.2 s at 50,000), so the agent asks at most once a minute (it changes as slowly)."""
    known = set(watches)
    found: list[Problem] = []
    for watch, (total, shared) in sorted(index.layout().items()):
        if watch in known and total >= advice.LONE_FILES and shared == 0:
            found.append(Problem(*advice.lonely(total, watch), watch))
    poor = index.poor_archive_deltas(advice.ZIP_LIKE, advice.POOR_RATIO, advice.FIRST)
    for watch, n in sorted(poor.items()):
        if watch in known and n >= advice.POOR_FILES:
            fix = f"dg-agent watch add {shlex.quote(watch)} URL --codec archive"
            found.append(Problem(*advice.poor_zips(n, watch, fix), watch))
    return found
