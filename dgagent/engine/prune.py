"""Retention: delete the old versions of a DeltaSpace's files and get their space back.

A prune works per DeltaSpace. Its files are grouped into release lines (``rotation.lineage``:
names that differ only in their version numbers), each line ordered by the files' times, and a
``Retention`` says which versions of a line stay. The others are deleted. Then the DeltaSpace's
references: one that no remaining delta needs is deleted (as ``rm`` does); one that remaining
deltas need although its own version is gone (deleted now, or long ago: DeltaGlider never deletes
a reference) is *retired*: those deltas are re-encoded against a reference that is a kept
version (an existing one of the same line, else a new one made from the newest of them), and the
old reference goes once no delta needs it.

No order of crashes loses a kept file. Everything new is written before anything is deleted: the
new reference first (content-addressed, so a racing writer can only write the same bytes), then
each re-encoded delta, which replaces the old one in one PUT and is checked by SHA-256 against
the file it must rebuild before the prune goes on (the verified local copy is stored again should
the check fail). Only then are versions and references deleted, by the catalog's delete, which
deletes a reference only when no delta listed after the delete needs it and puts it back if a
writer stored one against it meanwhile. A kill -9 at any point leaves every kept file readable; a
run after it finishes the job (the space a crash left held is what the next prune gives back).
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dgagent.engine import keys, rotation
from dgagent.engine.catalog import reference_sha256
from dgagent.engine.metacache import same_etag
from dgagent.engine.metadata import Kind, StoredMeta, is_sha256
from dgagent.engine.results import Entry
from dgagent.engine.rotation import Cost
from dgagent.errors import CodecError, ConfigError, DgError, IntegrityError
from dgagent.fileio import scratch_dir
from dgagent.storage.base import ObjectInfo

if TYPE_CHECKING:
    from dgagent.engine.store import DeltaStore

log = logging.getLogger(__name__)

RETIRE_GAIN = 0.05
"""A reference is retired only when that gives back at least this share of its size: moving a
few deltas for a handful of bytes is not worth the writes."""

_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_NUMBER = re.compile(r"\d+")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90d``, ``12w``, ``36h``, ``30min`` or ``1y``.

    >>> parse_duration("90d"), parse_duration("1.5h")
    (7776000.0, 5400.0)
    """
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None or found.group(2) not in _UNITS or float(found.group(1)) <= 0:
        raise ConfigError(
            f"{text!r} is not a duration: write a positive number and a unit, e.g. 90d, 12w, 36h "
            "or 1y (units: s, min, h, d, w, y)"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]


@dataclass(frozen=True)
class Retention:
    """Which versions of a release line stay: the last ``keep_last``, and those not older
    than ``older_than`` seconds. With both, a version goes only when neither keeps it; with
    neither, every version stays (a prune then only gives back what references hold for
    nothing)."""

    keep_last: int | None = None
    older_than: float | None = None

    def __post_init__(self) -> None:
        if self.keep_last is not None and self.keep_last < 1:
            raise ConfigError(
                "--keep-last must be at least 1; to delete every version in a folder, use "
                "dg-agent rm -r"
            )
        if self.older_than is not None and self.older_than <= 0:
            raise ConfigError("--older-than must be a positive duration, e.g. 90d")

    @property
    def deletes(self) -> bool:
        """Whether this retention deletes versions at all."""
        return self.keep_last is not None or self.older_than is not None

    def describe(self) -> str:
        rules = []
        if self.keep_last is not None:
            rules.append(f"the last {self.keep_last}")
        if self.older_than is not None:
            rules.append(f"those of the last {_say_duration(self.older_than)}")
        return "keep " + " and ".join(rules) if rules else "keep every version"

    def kept(self, line: list[Version], now: float) -> list[bool]:
        """For each version of one release line (oldest first), whether it stays."""
        if not self.deletes:
            return [True] * len(line)
        last = len(line) - (self.keep_last or 0)
        return [
            (self.keep_last is not None and i >= last)
            or (self.older_than is not None and now - v.time <= self.older_than)
            for i, v in enumerate(line)
        ]


def _say_duration(seconds: float) -> str:
    for unit in ("y", "w", "d", "h", "min"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Version:
    """One stored file and its time: when the file it was stored from was last modified
    (recorded by dg-agent), else when it was first stored (``dg-created-at``), else its
    object's Last-Modified."""

    entry: Entry
    time: float

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def meta(self) -> StoredMeta | None:
        return self.entry.meta

    @classmethod
    def of(cls, entry: Entry) -> Version:
        meta = entry.meta
        when = meta.mtime if meta is not None else None
        if when is None and meta is not None and meta.created_at:
            with contextlib.suppress(ValueError):
                stamp = datetime.fromisoformat(meta.created_at.removesuffix("Z"))
                when = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
        if when is None:
            when = entry.info.last_modified.timestamp()
        return cls(entry, when)

    def order(self) -> tuple[float, tuple[int, ...], str]:
        """Oldest first: by time, then by the version numbers in the name."""
        name = posixpath.basename(self.key)
        return (self.time, tuple(int(n) for n in _NUMBER.findall(name)), name)


@dataclass(frozen=True)
class Retirement:
    """One reference retired: the files that needed it re-encoded against ``target``."""

    reference: str
    reference_bytes: int
    target: str
    new_target: bool
    """Whether ``target`` is a reference the prune made (from the newest of ``files``)."""
    files: tuple[str, ...]
    bytes_before: int
    """The old reference plus the files' old deltas."""
    bytes_after: int
    """The files' new deltas, plus the new reference when one was made."""


@dataclass
class PruneReport:
    """What a prune deleted, retired and gave back (or would, with ``dryrun``)."""

    dryrun: bool
    retention: Retention
    deleted: list[Entry] = field(default_factory=list)
    """The versions deleted."""
    kept: list[Entry] = field(default_factory=list)
    references: list[ObjectInfo] = field(default_factory=list)
    """The references deleted (retired ones included)."""
    retired: list[Retirement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was left alone, and why (a file changed meanwhile, a retirement not worth it)."""
    stored_before: int = 0
    stored_after: int = 0

    @property
    def freed(self) -> int:
        return self.stored_before - self.stored_after


@dataclass(frozen=True)
class Reclaimable:
    """What references hold for nothing in a set of DeltaSpaces, from one listing."""

    unneeded: int = 0
    """Bytes of references no stored delta needs: a prune deletes them."""
    retirable: int = 0
    """Bytes of references deltas need although no stored file is their version: a prune
    retires them, getting back about this much (less the growth of the re-encoded deltas)."""

    @property
    def total(self) -> int:
        return self.unneeded + self.retirable

    def __add__(self, other: Reclaimable) -> Reclaimable:
        return Reclaimable(self.unneeded + other.unneeded, self.retirable + other.retirable)


def reclaimable(files: list[Entry], objects: list[ObjectInfo]) -> Reclaimable:
    """The space references hold for nothing among the files and objects of one DeltaSpace
    (each delta's metadata read). No request is made: a delta names its reference's key and
    SHA-256. With a delta whose metadata is unknown, nothing is counted (when unsure, nothing
    would be deleted either)."""
    needed: dict[str, str | None] = {}
    for entry in files:
        if entry.kind is not Kind.DELTA:
            continue
        ref_key = entry.reference
        if ref_key is None or entry.meta is None:
            return Reclaimable()
        needed[ref_key] = entry.meta.ref_sha256
    stored = {e.meta.file_sha256 for e in files if e.meta is not None}
    unneeded = retirable = 0
    refs = [o for o in objects if keys.is_reference(o.key)]
    for ref in refs:
        if ref.key not in needed:
            # As the catalog's delete: a DeltaSpace's only reference stays while it has deltas.
            unneeded += 0 if needed and len(refs) == 1 else ref.size
        elif (keys.addressed_sha256(ref.key) or needed[ref.key]) not in stored:
            retirable += ref.size
    return Reclaimable(unneeded, retirable)


class Pruner:
    """Applies a Retention to the DeltaSpaces under a prefix of one store.

    ``protect``: told a logical key, says whether it must stay whatever the retention says
    (the agent keeps files still present in a watched folder). ``say``: told each step as a
    line of text, as it happens. ``declined``: retirements found not worth it, kept by a caller
    that prunes the same place again and again (the agent, at every reconcile): one whose
    reference and files have not changed since is not re-encoded again to find the same.
    """

    def __init__(
        self,
        store: DeltaStore,
        retention: Retention,
        *,
        protect: Callable[[str], bool] | None = None,
        now: float | None = None,
        say: Callable[[str], None] | None = None,
        declined: set[tuple[str, ...]] | None = None,
    ) -> None:
        self.store = store
        self.retention = retention
        self.protect = protect
        self.declined = declined if declined is not None else set()
        self.now = time.time() if now is None else now
        self.say = say or (lambda _line: None)

    def run(self, prefix: str, *, recursive: bool, dryrun: bool = False) -> PruneReport:
        """Prune the DeltaSpace ``prefix`` names (a folder, '' or ending in '/'), or with
        ``recursive`` every DeltaSpace under it."""
        listing = self.store.listing(prefix, recursive=recursive)
        files: dict[str, list[Entry]] = {}
        for entry in listing.files:
            files.setdefault(keys.deltaspace_of(entry.stored_key), []).append(entry)
        objects: dict[str, list[ObjectInfo]] = {}
        for obj in {o.key: o for o in listing.objects}.values():
            objects.setdefault(keys.deltaspace_of(obj.key), []).append(obj)
        report = PruneReport(dryrun, self.retention)
        by_key = {o.key: o for found in objects.values() for o in found}
        report.stored_before = sum(o.size for o in by_key.values())
        doomed: list[str] = []
        for space in sorted(objects):
            kept, gone = self._choose(files.get(space, []))
            report.kept += [v.entry for v in kept]
            report.deleted += [v.entry for v in gone]
            doomed += [v.entry.stored_key for v in gone]
            # A delta that a whole object of the same name shadows goes with the name.
            doomed += [k for v in gone if (k := keys.delta_key(v.key)) in by_key]
            for v in gone:
                self.say(f"{_dry(dryrun)}delete: {self.store.url(v.key)}")
            report.retired += self._retire(space, kept, objects[space], report, dryrun=dryrun)
        deleted = self.store.delete_physical(doomed, dryrun=dryrun, spaces=set(objects))
        ref_keys = [k for k in deleted if keys.is_reference(k)]
        if dryrun:  # the retirements were not carried out, so the catalog still sees them needed
            ref_keys += [r.reference for r in report.retired if r.reference not in ref_keys]
        report.references = [by_key[k] for k in ref_keys if k in by_key]
        for ref in report.references:
            self.say(f"{_dry(dryrun)}delete reference: {self.store.url(ref.key)} ({ref.size} B)")
        changed = sum(r.bytes_after - r.bytes_before + r.reference_bytes for r in report.retired)
        files_gone = [by_key[k] for k in deleted if k in by_key and not keys.is_reference(k)]
        gone_bytes = sum(o.size for o in files_gone) + sum(r.size for r in report.references)
        report.stored_after = report.stored_before - gone_bytes + changed
        return report

    def _choose(self, entries: list[Entry]) -> tuple[list[Version], list[Version]]:
        """The versions of one DeltaSpace that stay and those that go, each oldest first."""
        lines: dict[str, list[Version]] = {}
        for entry in entries:
            name = posixpath.basename(entry.key)
            lines.setdefault(rotation.lineage(name), []).append(Version.of(entry))
        kept: list[Version] = []
        gone: list[Version] = []
        for line in lines.values():
            line.sort(key=Version.order)
            for version, stays in zip(line, self.retention.kept(line, self.now), strict=True):
                if stays or (self.protect is not None and self.protect(version.key)):
                    kept.append(version)
                else:
                    gone.append(version)
        return sorted(kept, key=Version.order), sorted(gone, key=Version.order)

    # ------------------------------------------------------------ retire

    def _retire(
        self,
        space: str,
        kept: list[Version],
        objects: list[ObjectInfo],
        report: PruneReport,
        *,
        dryrun: bool,
    ) -> list[Retirement]:
        """Retire the references the kept deltas need although no kept version is one."""
        deltas = [v for v in kept if keys.is_delta(v.entry.stored_key)]
        if not deltas:
            return []
        if any(
            v.meta is None or v.meta.kind is not Kind.DELTA or not is_sha256(v.meta.ref_sha256)
            for v in deltas
        ):
            report.notes.append(
                f"{self.store.url(space)}: a delta does not say which reference it needs; "
                "no reference there was retired"
            )
            return []
        if self.store.settings.reference_policy == "single":
            return []  # deltaglider_proxy reads reference.bin only: nothing may move off it
        refs = self._references(objects)
        content = {v.meta.file_sha256: v for v in kept if v.meta is not None}
        needs: dict[str, list[Version]] = {}
        for v in deltas:
            assert v.meta is not None and v.meta.ref_sha256 is not None  # checked above
            needs.setdefault(v.meta.ref_sha256, []).append(v)
        homes = sorted((content[s] for s in needs if s in content and s in refs), key=Version.order)
        retired: list[Retirement] = []
        retirable = [s for s in needs if s in refs and s not in content]
        for sha in sorted(retirable, key=lambda s: (refs[s].last_modified, refs[s].key)):
            done = self._retire_one(refs[sha], needs[sha], homes, refs, report, dryrun=dryrun)
            if done is not None:
                retired.append(done)
        return retired

    def _references(self, objects: list[ObjectInfo]) -> dict[str, ObjectInfo]:
        """The DeltaSpace's references by SHA-256 (read from their metadata when their key
        does not carry it)."""
        refs = [o for o in objects if keys.is_reference(o.key)]
        unknown = [r for r in refs if keys.addressed_sha256(r.key) is None and r.metadata is None]
        metas = self.store.raw_metadata(unknown)
        found: dict[str, ObjectInfo] = {}
        for ref in refs:
            read = replace(ref, metadata=metas[ref.key]) if ref.key in metas else ref
            sha = reference_sha256(read)
            if sha is not None:
                found.setdefault(sha, read)
        return found

    def _retire_one(
        self,
        ref: ObjectInfo,
        dependants: list[Version],
        homes: list[Version],
        refs: dict[str, ObjectInfo],
        report: PruneReport,
        *,
        dryrun: bool,
    ) -> Retirement | None:
        """Re-encode ``dependants`` against a reference that is a kept version: the first
        existing one of their release line not older than any of them, else a new one made
        from the newest of them; then (unless ``dryrun``) store them, each checked. Done only
        when it gives back at least RETIRE_GAIN of the old reference's size."""
        seen = (ref.key, ref.etag, *sorted(f"{v.key} {v.entry.info.etag}" for v in dependants))
        if seen in self.declined:
            return None
        newest = dependants[-1]
        line = rotation.lineage(posixpath.basename(newest.key))
        same_line = [h for h in homes if rotation.lineage(posixpath.basename(h.key)) == line]
        # A kept reference newer than all of them is close to them (they were made against an
        # older one); failing that, the newest of them becomes the reference.
        home = next((h for h in same_line if h.order() >= newest.order()), None)
        target_version = home or newest
        target_sha = str(target_version.meta.file_sha256 if target_version.meta else "")
        with contextlib.ExitStack() as stack:
            work = stack.enter_context(scratch_dir(self.store.work_root))
            try:
                encoded, target_path = self._encode(
                    stack,
                    work,
                    dependants,
                    target=target_version,
                    target_sha=target_sha,
                    target_ref=refs.get(target_sha) if home is not None else None,
                )
            except DgError as exc:
                report.notes.append(f"{self.store.url(ref.key)} was not retired: {exc}")
                return None
            if encoded is None:
                report.notes.append(
                    f"{self.store.url(ref.key)} was not retired: a file needing it had no delta "
                    "against a newer reference that rebuilds it"
                )
                return None
            new_target = home is None
            before = ref.size + sum(v.entry.stored_size for v, _, _ in encoded)
            after = sum(path.stat().st_size for _, path, _ in encoded)
            after += target_path.stat().st_size if new_target else 0
            if before - after < RETIRE_GAIN * ref.size:
                self.declined.add(seen)
                gain = f"only {before - after} bytes" if after < before else "no space"
                report.notes.append(
                    f"{self.store.url(ref.key)} was kept: re-encoding the {len(encoded)} files "
                    f"that need it would give back {gain}"
                )
                return None
            target_key = (
                refs[target_sha].key
                if not new_target
                else keys.addressed_reference_key(keys.deltaspace_of(ref.key), target_sha)
            )
            self.say(
                f"{_dry(dryrun)}retire: {self.store.url(ref.key)}, {len(encoded)} files "
                f"re-encoded against {self.store.url(target_key)}"
            )
            if not dryrun:
                if new_target:
                    target_key = self.store.add_reference(target_path, newest.key, target_sha, work)
                moved = self._store_encoded(encoded, ref, target_key, target_sha, report)
                if not moved:
                    return None
            return Retirement(
                ref.key,
                ref.size,
                target_key,
                new_target,
                tuple(v.key for v, _, _ in encoded),
                before,
                after,
            )

    def _encode(
        self,
        stack: contextlib.ExitStack,
        work: Path,
        dependants: list[Version],
        *,
        target: Version,
        target_sha: str,
        target_ref: ObjectInfo | None,
    ) -> tuple[list[tuple[Version, Path, str]] | None, Path]:
        """Each dependant rebuilt from the store (SHA-256 checked) and encoded against the
        target, as (version, new delta, codec); with the target's local copy. None for the list
        when one has no delta."""
        if target_ref is not None:
            target_path = stack.enter_context(
                self.store.held_reference(target_ref.key, target_sha, work)
            )
        else:
            target_path = work / "target"
            self.store.get(target.key, target_path, listed=target.entry)
        archive_default = self.store.settings.codec == "archive"
        encoded: list[tuple[Version, Path, str]] = []
        for i, version in enumerate(dependants):
            meta = version.meta
            assert meta is not None and meta.file_sha256 is not None  # checked by _retire
            folder = work / f"file-{i}"
            folder.mkdir()
            source = folder / "file"
            if version is target and target_ref is None:
                source = target_path
            else:
                self.store.get(version.key, source, listed=version.entry)
            chosen = self.store.encode_against(
                target_path,
                target_sha,
                source,
                folder,
                sha=meta.file_sha256,
                archive_codec=archive_default or meta.codec is not None,
            )
            if chosen is None:
                return None, target_path
            delta = folder / "new.delta"
            chosen[0].rename(delta)
            # Only the deltas are kept (the rebuilt file, its expanded form and the losing
            # codec's delta go): a retirement may move many big files.
            for leftover in folder.iterdir():
                if leftover != delta:
                    leftover.unlink()
            encoded.append((version, delta, chosen[1]))
        return encoded, target_path

    def _store_encoded(
        self,
        encoded: list[tuple[Version, Path, str]],
        ref: ObjectInfo,
        target_key: str,
        target_sha: str,
        report: PruneReport,
    ) -> bool:
        """Replace each file's delta by its new one, then rebuild it from the store and check
        its SHA-256; one that fails gets its old delta back (held until then; the old reference
        is still there). False when none was moved (every file changed since the listing)."""
        cost = Cost(target_sha)
        for version, path, _ in encoded:
            if version.meta is not None and version.meta.file_sha256 != target_sha:
                cost = cost.after(path.stat().st_size)  # the target's own zero-diff is no cost
        why = f"delta: re-encoded when the reference {keys.relative_to_space(ref.key)} was retired"
        moved = False
        for version, path, codec in encoded:
            stored_key = version.entry.stored_key
            now = self.store.storage.head(stored_key)
            if now is None or not same_etag(now.etag, version.entry.info.etag):
                report.notes.append(
                    f"{self.store.url(version.key)} changed since it was listed; left as it is"
                )
                continue
            old = path.with_name("old.delta")
            with old.open("wb") as f:
                self.store.storage.download(stored_key, f)
            assert version.meta is not None  # checked by _retire
            self.store.replace_delta(
                version.key,
                version.meta,
                path,
                codec,
                ref_key=target_key,
                ref_sha256=target_sha,
                cost=cost,
                why=why,
            )
            moved = True
            try:
                self.store.verify(version.key)
            except (IntegrityError, CodecError) as exc:
                log.warning("%s; its previous delta is put back", exc)
                self.store.storage.upload(stored_key, old, dict(now.metadata or {}))
                report.notes.append(
                    f"{self.store.url(version.key)} did not rebuild from its new delta; it keeps "
                    "its old one"
                )
        return moved


def _dry(dryrun: bool) -> str:
    return "(dryrun) " if dryrun else ""


__all__ = [
    "PruneReport",
    "Pruner",
    "Reclaimable",
    "Retention",
    "Retirement",
    "Version",
    "parse_duration",
    "reclaimable",
]
