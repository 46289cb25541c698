"""Advice from how files were stored: a layout in which nothing can delta, and zip-like files the
default codec stores poorly. The agent's status (agent/problems.py, from its index) and ``cp`` and
``sync`` (from what they just stored) say it in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence

from dgagent.engine import keys
from dgagent.engine.results import COMPAT, PutResult

ZIP_LIKE = (".zip", ".jar", ".war", ".ear", ".whl", ".apk", ".aar", ".nupkg")
"""Files the archive codec expands member by member."""
POOR_RATIO = 0.8
"""Default-codec deltas of zip-like files above this share of the file: the archive codec
stored such jars 41-56 % smaller."""
POOR_FILES = 3
LONE_FILES = 5
"""Stored files, each alone in its folder, before the layout is called one that cannot delta."""
FIRST = "new reference: the first"
"""How the ``why`` of the first file of a DeltaSpace begins (it had nothing to delta against)."""


def lonely(total: int, where: str) -> tuple[str, str]:
    """(problem, fix) for files that are each alone in their folder."""
    return (
        f"each of the {total} files stored from {where} is alone in its folder (one version per "
        "folder, as in a Maven or PyPI layout), so none can be stored as a delta: a delta needs "
        "an earlier version in the same folder",
        "store successive versions of an artifact in one folder (for example a watch or a sync "
        "per artifact whose URL is one folder); nothing is lost as it is",
    )


def poor_zips(count: int, where: str, fix: str) -> tuple[str, str]:
    """(problem, fix) for zip-like files the default codec stored at over POOR_RATIO."""
    return (
        f"{count} zip-like files (jar, wheel, zip…) in {where} were stored at over "
        f"{POOR_RATIO:.0%} of their size with the default codec",
        f"try the archive codec (smaller deltas of zip members, read by dg-agent only): {fix}",
    )


def is_zip_like(key: str) -> bool:
    return key.lower().endswith(ZIP_LIKE)


def from_results(
    results: Sequence[PutResult], where: str, fix: str | None
) -> list[tuple[str, str]]:
    """Advice on the files one command just stored; ``fix`` is how to rerun it with the
    archive codec, None when it was used already."""
    found: list[tuple[str, str]] = []
    firsts = [r for r in results if r.why.startswith(FIRST)]
    spaces = {keys.deltaspace_of(r.key) for r in results}
    if len(results) >= LONE_FILES and len(firsts) == len(results) == len(spaces):
        found.append(lonely(len(results), where))
    poor = [
        r
        for r in results
        if is_zip_like(r.key)
        and (r.codec or COMPAT) == COMPAT
        and not r.why.startswith(FIRST)
        and r.original_size
        and r.stored_size + r.reference_size > POOR_RATIO * r.original_size
    ]
    if fix is not None and len(poor) >= POOR_FILES:
        found.append(poor_zips(len(poor), where, fix))
    return found
