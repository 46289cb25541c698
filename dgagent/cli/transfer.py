"""Running many uploads or downloads at once, and printing what each one did.

xdelta3 runs as its own process, so a thread pool keeps both cores and the network busy, one
DeltaSpace per thread: the files of one DeltaSpace are stored one at a time, in release order
(see ``in_release_order``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dgagent.cli.common import Progress, human, percent
from dgagent.engine import advice, keys
from dgagent.engine.metadata import Kind
from dgagent.engine.store import DeltaStore, Entry, GetResult, PutResult
from dgagent.errors import DgError

T = TypeVar("T")
WORKERS = max(2, min(8, (os.cpu_count() or 2) * 2))


@dataclass(frozen=True)
class Upload:
    source: Path
    key: str
    new: bool = False
    """The destination's listing had no object of this name (no other form to delete)."""


@dataclass(frozen=True)
class Download:
    key: str
    dest: Path
    mtime: float | None = None
    """Set the file's mtime to this after writing (so a later sync sees it unchanged)."""
    listed: Entry | None = None
    """The file as a listing with details found it (saves a HEAD)."""


@dataclass
class Outcome:
    done: list[dict[str, Any]]
    errors: list[str]
    stored: list[PutResult] = field(default_factory=list)
    advice: list[dict[str, str]] = field(default_factory=list)
    """What the stored files suggest (engine/advice.py): ``problem`` and ``fix``."""


def advise(outcome: Outcome, where: str, rerun: str | None, *, quiet: bool) -> None:
    """Say what the files just stored suggest (one version per folder, zip-like files the
    default codec stored poorly), on stderr unless quiet, and into ``outcome.advice``."""
    for problem, fix in advice.from_results(outcome.stored, where, rerun):
        outcome.advice.append({"problem": problem, "fix": fix})
        if not quiet:
            print(f"note: {problem}\n  fix: {fix}", file=sys.stderr)


def put_record(store: DeltaStore, source: Path, result: PutResult) -> dict[str, Any]:
    return {
        "operation": "upload",
        "source": str(source),
        "url": store.url(result.key),
        "stored_key": result.stored_key,
        "kind": result.kind.value,
        "original_size": result.original_size,
        "stored_size": result.stored_size,
        "reference_size": result.reference_size,
        "ratio": round(result.ratio, 6),
        "sha256": result.sha256,
        "cache_hit": result.cache_hit,
    }


def describe_put(result: PutResult) -> str:
    if result.reference_size:
        how = "new reference"
    elif result.kind is Kind.DELTA:
        how = f"delta {percent(result.stored_size, result.original_size)}"
    else:
        how = "direct"
    cache = (
        "" if result.cache_hit is None else (", cache hit" if result.cache_hit else ", cache miss")
    )
    return f"({how} of {human(result.original_size)}{cache})"


def upload_all(
    store: DeltaStore,
    jobs: list[Upload],
    *,
    delta: bool,
    max_ratio: float | None,
    progress: Progress,
    quiet: bool,
    dryrun: bool = False,
) -> Outcome:
    outcome = Outcome([], [])

    def one(job: Upload) -> None:
        if dryrun:
            if not quiet:
                progress.say(f"(dryrun) upload: {job.source} to {store.url(job.key)}")
            outcome.done.append(
                {
                    "operation": "upload",
                    "dryrun": True,
                    "source": str(job.source),
                    "url": store.url(job.key),
                }
            )
            return
        progress.start(job.source.name)
        try:
            result = store.put(
                job.source,
                job.key,
                delta=delta,
                max_ratio=max_ratio,
                progress=progress.advance,
                replacing=not job.new,
            )
        except DgError as exc:
            outcome.errors.append(str(exc))
            return
        except OSError as exc:
            outcome.errors.append(f"cannot read {job.source}: {exc.strerror or exc}")
            return
        finally:
            progress.finish_one()
        outcome.done.append(put_record(store, job.source, result))
        outcome.stored.append(result)
        if not quiet:
            progress.say(f"upload: {job.source} to {store.url(result.key)} {describe_put(result)}")

    def in_order(group: list[Upload]) -> None:
        for job in group:
            one(job)

    serial = store.needs_release_order
    _run(in_order, in_release_order(jobs, key=lambda j: j.key, mtime=_mtime, serial=serial))
    return outcome


def _mtime(job: Upload) -> float:
    try:
        return job.source.stat().st_mtime
    except OSError:
        return 0.0


def in_release_order(
    items: list[T],
    *,
    key: Callable[[T], str],
    mtime: Callable[[T], float],
    serial: Callable[[str], bool],
) -> list[list[T]]:
    """Items grouped by DeltaSpace, each group in release order (mtime, then name); an item
    whose key does not need that order (``serial`` false: it is never a delta) on its own.

    A group is stored one file at a time: whether a version becomes a new reference depends on
    the one before it (engine/rotation.py), and the first one becomes the reference the others
    delta against instead of racing to create it. Groups go in parallel.
    """
    groups: dict[str, list[T]] = {}
    alone: list[list[T]] = []
    for item in sorted(items, key=lambda i: (mtime(i), key(i))):
        if serial(key(item)):
            groups.setdefault(keys.deltaspace_of(key(item)), []).append(item)
        else:
            alone.append([item])
    # The largest groups first, so that one long DeltaSpace does not start last.
    return sorted(groups.values(), key=len, reverse=True) + alone


def download_all(
    store: DeltaStore,
    jobs: list[Download],
    *,
    progress: Progress,
    quiet: bool,
    dryrun: bool = False,
) -> Outcome:
    outcome = Outcome([], [])

    def one(job: Download) -> None:
        if dryrun:
            if not quiet:
                progress.say(f"(dryrun) download: {store.url(job.key)} to {job.dest}")
            outcome.done.append(
                {
                    "operation": "download",
                    "dryrun": True,
                    "url": store.url(job.key),
                    "dest": str(job.dest),
                }
            )
            return
        progress.start(job.dest.name)
        try:
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            result = store.get(job.key, job.dest, progress=progress.advance, listed=job.listed)
            if job.mtime is not None:
                os.utime(job.dest, (job.mtime, job.mtime))
        except DgError as exc:
            outcome.errors.append(str(exc))
            return
        except OSError as exc:
            outcome.errors.append(f"cannot write {job.dest}: {exc.strerror or exc}")
            return
        finally:
            progress.finish_one()
        outcome.done.append(get_record(store, job.dest, result))
        if not quiet:
            progress.say(f"download: {store.url(result.key)} to {job.dest}")

    _run(one, jobs)
    return outcome


def get_record(store: DeltaStore, dest: Path, result: GetResult) -> dict[str, Any]:
    return {
        "operation": "download",
        "url": store.url(result.key),
        "stored_key": result.stored_key,
        "dest": str(dest),
        "kind": result.kind.value,
        "size": result.size,
        "sha256": result.sha256,
        "cache_hit": result.cache_hit,
    }


def _run(fn: Callable[[T], None], items: list[T]) -> None:
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(fn, items))
