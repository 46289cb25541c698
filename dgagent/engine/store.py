"""The delta store: put, get and verify logical files in a DeltaSpace tree (listing and deleting
are in catalog.py, the archive codec's expanded references in expanded.py).

This is where FORMAT.md becomes behaviour. A put hashes the file, then either creates the
DeltaSpace's reference with a conditional write (the loser of a race diffs against the winner's),
or encodes a delta against the cached reference; every delta is decoded once and compared by
SHA-256 before it is uploaded, and one above the max ratio is dropped for a direct upload. A get
rebuilds into a temp file beside the destination and renames it only once the SHA-256 matches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote

from dgagent.engine import archive, keys, rotation
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.catalog import Catalog, reference_sha256
from dgagent.engine.codec import Running, Xdelta3, looks_compressed
from dgagent.engine.expanded import ExpandedReferences
from dgagent.engine.metacache import METADATA_FILE, MetadataCache
from dgagent.engine.metadata import (
    ZLIB_KEY,
    Kind,
    StoredMeta,
    ascii_value,
    delta_metadata,
    direct_metadata,
    is_sha256,
    parse_metadata,
    reference_metadata,
)
from dgagent.engine.results import COMPAT, Entry, GetResult, PutResult
from dgagent.engine.rotation import COST_KEY, WHY_KEY, Cost, Decision
from dgagent.errors import (
    CacheError,
    CodecError,
    DgError,
    IntegrityError,
    NameTooLongError,
    NotFoundError,
    PreconditionFailedError,
    SourceChangedError,
    StorageError,
    UnreadableError,
    disk_full,
)
from dgagent.fileio import HashingWriter, atomic_output, scratch_dir, sha256_file
from dgagent.settings import EngineSettings
from dgagent.storage.base import ObjectInfo, Progress, Storage, check_key

log = logging.getLogger(__name__)

Stage = Callable[[str, int | None], None]
"""Told when a put enters a stage (``hashing``, ``reference``, ``encoding``, ``uploading``) and
how many bytes it moves (None when unknown); the agent turns these into progress events."""
SETTLE_ROUNDS = 4
"""Rounds of deleting a name's other form before both forms are left in place (see
``_settle_name``); a round only repeats when another writer deleted ours meanwhile."""
CHEAP_COMPAT_BYTES = 32 * 1024**2
"""Under the archive codec, files up to this size also get a compat delta to compare with..."""
ARCHIVE_CLEAR_WIN = 0.05
"""...unless the archive delta is at most this share of the file: compat could save no more."""


class DeltaStore(Catalog):
    """Logical files over one Storage, in DeltaGlider's layout: put and get, with listing and
    deleting from Catalog."""

    def __init__(
        self,
        storage: Storage,
        *,
        settings: EngineSettings,
        cache: ReferenceCache | None = None,
        codec: Xdelta3 | None = None,
    ) -> None:
        super().__init__(storage, metadata=MetadataCache(settings.cache_dir / METADATA_FILE))
        self.settings = settings
        self.cache = cache or ReferenceCache(settings.cache_dir, max_bytes=settings.cache_max_bytes)
        self.codec = codec or Xdelta3(
            level=settings.xdelta_level, window_budget=settings.window_budget
        )
        self.work_root = settings.cache_dir.parent / "work"
        self._spaces: dict[tuple[str, str], _Found] = {}
        """Per DeltaSpace and lineage stored into: the current reference (rotation.py)."""
        self._spaces_lock = threading.Lock()
        self.expanded = ExpandedReferences(
            ReferenceCache(
                settings.cache_dir.parent / "expanded", max_bytes=settings.cache_max_bytes
            ),
            self.codec,
        )

    def _workdir(self) -> contextlib.AbstractContextManager[Path]:
        return scratch_dir(self.work_root)

    # ---------------------------------------------------------------- put

    def put(
        self,
        source: Path,
        key: str,
        *,
        delta: bool = True,
        max_ratio: float | None = None,
        progress: Progress | None = None,
        codec: str | None = None,
        policy: str | None = None,
        stage: Stage | None = None,
        replacing: bool = True,
    ) -> PutResult:
        """Store a local file under logical ``key`` (delta when eligible and worth it).

        ``codec`` (default: the settings') is ``compat`` or ``archive`` (docs/archive-codec.md).
        ``policy`` (default: the settings') is the reference policy, ``rotate`` or ``single``.
        ``progress`` counts the bytes uploaded; ``stage`` hears which step is running.
        ``replacing=False`` says a listing just made found no object of this name, so the other
        form (``name`` against ``name.delta``) needs no DeleteObject.
        """
        check_key(key)
        keys.check_user_key(key)
        report = _Report(stage, progress)
        try:
            before = source.stat()
            report.enter("hashing", before.st_size)
            sha, size = sha256_file(source)
        except FileNotFoundError as exc:
            raise NotFoundError(f"{source} does not exist (it may have been moved away)") from exc
        except IsADirectoryError as exc:
            raise NotFoundError(f"{source} is a directory; use -r to copy folders") from exc
        except PermissionError as exc:
            raise UnreadableError(
                f"cannot read {source}: permission denied; make it readable by this user"
            ) from exc
        limit = self.settings.max_ratio if max_ratio is None else max_ratio
        name = posixpath.basename(key)
        result: PutResult | None = None
        why = self._why_whole(
            key, name=name, delta=delta, sha=sha, size=size, mtime=before.st_mtime
        )
        if not why:
            result, why = self._put_delta(
                source,
                key=key,
                sha=sha,
                size=size,
                mtime=before.st_mtime,
                limit=limit,
                archive_codec=(codec or self.settings.codec) == "archive",
                policy=policy or self.settings.reference_policy,
                report=report,
            )
        direct_meta = direct_metadata(
            name=name, sha256=sha, size=size, mtime=before.st_mtime, why=why
        )
        if result is None:
            log.info("%s: %s; storing direct", key, why)
            report.enter("uploading", size)
            self.storage.upload(key, source, direct_meta, progress=progress)
            result = PutResult(key, key, Kind.DIRECT, size, size, 0, sha, None, why=why)
        self._check_unchanged(source, before, result)
        if replacing:
            result = self._settle_name(result, source, before, direct_meta)
        log.debug(
            "put %s: %s as %s, %d of %d bytes (reference created: %d bytes, cache hit: %s)",
            key,
            result.kind.value,
            result.stored_key,
            result.stored_size,
            result.original_size,
            result.reference_size,
            result.cache_hit,
        )
        return result

    def needs_release_order(self, key: str) -> bool:
        """Whether storing ``key`` may depend on the file stored before it in its DeltaSpace
        (it may become, or be a delta against, a reference): then the files of a DeltaSpace
        go one at a time, in release order. Files that are never deltas need not wait."""
        return keys.is_delta_eligible(posixpath.basename(key), self.settings.delta_extensions)

    def _settle_name(
        self,
        result: PutResult,
        source: Path,
        before: os.stat_result,
        direct_meta: dict[str, str],
    ) -> PutResult:
        """Delete the other form of the name just stored (``name`` against ``name.delta``),
        without ever leaving the name with no complete version.

        Two writers storing one name at once, one whole and one as a delta, would each delete
        the other's form and lose the name. So the other form is deleted only when it exists,
        and then our own form is looked at again: if the other writer deleted it meanwhile, the
        file is stored again, whole, and we go round once more. Whoever deletes last sees its
        own form afterwards, so one complete version always stays. The last round deletes
        nothing: both forms may then stay, each complete (a reader takes the whole one).
        """
        for attempt in range(SETTLE_ROUNDS):
            other = keys.delta_key(result.key) if result.kind is Kind.DIRECT else result.key
            if self.storage.head(other) is None:
                return result
            if attempt == SETTLE_ROUNDS - 1:
                log.warning(
                    "%s: another writer keeps storing this name; both of its forms are kept",
                    self.url(result.key),
                )
                return result
            self.storage.delete(other)
            if self.storage.head(result.stored_key) is not None:
                return result
            log.warning(
                "%s: another writer deleted this version as it was stored; storing it again",
                self.url(result.key),
            )
            self.storage.upload(result.key, source, direct_meta)
            size, sha = result.original_size, result.sha256
            why = "whole: stored again after a racing writer deleted its delta"
            result = PutResult(
                result.key, result.key, Kind.DIRECT, size, size, 0, sha, None, why=why
            )
            self._check_unchanged(source, before, result)
        return result

    def _why_whole(
        self, key: str, *, name: str, delta: bool, sha: str, size: int, mtime: float
    ) -> str:
        """Why this file is stored whole without trying a delta; '' when a delta is worth a try.

        The metadata check uses the longest reference key and reason a delta could get, so
        that a name too long is found before anything is written."""
        if not delta:
            return "whole: deltas were turned off for it (--no-delta)"
        if size == 0:
            return "whole: it is empty"
        if not keys.is_delta_eligible(name, self.settings.delta_extensions):
            return "whole: not a delta type (see DG_DELTA_EXTENSIONS)"
        longest = keys.addressed_reference_key(keys.deltaspace_of(key), "0" * 64)
        try:
            delta_metadata(
                name=name,
                sha256=sha,
                size=size,
                ref_key=longest,
                ref_sha256=sha,
                delta_size=size,
                zero_diff=False,
                mtime=mtime,
                codec=archive.CODEC,
                extra={
                    ZLIB_KEY: zlib.ZLIB_RUNTIME_VERSION,
                    WHY_KEY: "new reference: " + "x" * 80,
                    COST_KEY: Cost(sha, size, size).encode(),
                },
            )
        except NameTooLongError:
            log.warning("%s: its folder path is too long for a delta's metadata", key)
            return "whole: its folder path is too long for a delta's metadata"
        return ""

    def _check_unchanged(self, source: Path, before: os.stat_result, result: PutResult) -> None:
        """A file rewritten while we read it must not stay stored under its old hash."""
        try:
            after = source.stat()
            same = (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
                before.st_size,
                before.st_mtime_ns,
                before.st_ctime_ns,
            )
        except FileNotFoundError:
            same = True  # removed after a complete read: what we stored is what it was
        if same:
            return
        self.storage.delete(result.stored_key)
        raise _source_changed(source)

    def _put_delta(self, source: Path, **how: Any) -> tuple[PutResult | None, str]:
        """Store ``source`` as a delta (see ``_put_delta_once``). A reference this put created
        and no delta ended up using (it failed, or the file goes whole after all) is deleted
        again: nothing half-written stays behind to hold a bucket's bytes out of every listing.
        """
        made: list[str] = []
        try:
            result, why = self._put_delta_once(source, made_references=made, **how)
        except BaseException:
            if made:
                self._drop_unused_references(keys.deltaspace_of(how["key"]))
            raise
        if result is None and made:
            self._drop_unused_references(keys.deltaspace_of(how["key"]))
        return result, why

    def _drop_unused_references(self, space: str) -> None:
        try:
            self.delete_physical([], spaces={space})
        except DgError as exc:  # the put's own failure is what the caller must hear about
            log.warning(
                "%s: could not delete the reference a failed put made (%s); the next put or "
                "an rm in that folder deletes it",
                self.url(space),
                exc,
            )

    def _put_delta_once(  # noqa: PLR0911 (each way out says why the file goes whole)
        self,
        source: Path,
        *,
        key: str,
        sha: str,
        size: int,
        mtime: float,
        limit: float,
        archive_codec: bool,
        policy: str,
        report: _Report,
        made_references: list[str],
    ) -> tuple[PutResult | None, str]:
        """Store ``source`` as a delta, against the DeltaSpace's current reference or as its
        next one (the reference ``policy`` decides, see rotation.py); else None and the reason
        it should be stored whole. The key of each reference it makes goes into
        ``made_references``."""
        name = posixpath.basename(key)
        space = keys.deltaspace_of(key)
        lineage = rotation.lineage(name) if policy == "rotate" else ""
        with contextlib.ExitStack() as stack:
            work = stack.enter_context(self._workdir())
            expanded = self._expand_target(source, work) if archive_codec else None
            base = stack.enter_context(
                self._delta_base(
                    source,
                    key,
                    sha,
                    size,
                    work,
                    lineage=lineage,
                    expanded=expanded,
                    report=report,
                )
            )
            if base is None:
                return None, "whole: there is no reference it can be a delta against"
            if base.created:
                made_references.append(base.key)
            report.enter("encoding")
            cap = None if base.created else limit * size
            chosen, over = self._choose_delta(base, source, expanded, work, sha=sha, limit=cap)
            why = "new reference: the first of its DeltaSpace"
            cost = Cost(sha)
            if not base.created:
                if chosen is None and not over:
                    return None, "whole: no delta against the reference rebuilt it bit-exact"
                if base.cost is not None and base.cost.ref_sha256 == base.sha256:
                    cost = base.cost
                else:
                    cost = Cost(base.sha256)
                delta_size = chosen[0].stat().st_size if chosen else None
                decision, why = rotation.decide(policy, cost, delta_size, size, limit)
                log.info("%s: %s", key, why)
                if decision is Decision.WHOLE:
                    return None, why
                if decision is Decision.DELTA:
                    why = f"delta: {(delta_size or 0) / size:.3f} of the file"
                    cost = cost.after(delta_size or 0)
                else:
                    made = stack.enter_context(
                        self._next_reference(
                            source,
                            key,
                            sha=sha,
                            size=size,
                            work=work,
                            expanded=expanded,
                            report=report,
                        )
                    )
                    if made is None:
                        return None, why.replace("new reference", "whole", 1)
                    made_references.append(made.key)
                    base, cost = made, Cost(sha)
                    chosen, _ = self._choose_delta(
                        base, source, expanded, work, sha=sha, limit=None
                    )
            if chosen is None:
                return None, "whole: no delta against the reference rebuilt it bit-exact"
            delta_path, codec = chosen
            delta_size = delta_path.stat().st_size
            meta = delta_metadata(
                name=name,
                sha256=sha,
                size=size,
                ref_key=base.key,
                ref_sha256=base.sha256,
                delta_size=delta_size,
                zero_diff=base.created,
                mtime=mtime,
                codec=None if codec == COMPAT else codec,
                extra=_delta_extra(why, cost, codec),
            )
            stored = keys.delta_key(key)
            report.enter("uploading", delta_size)
            self.storage.upload(stored, delta_path, meta, progress=report.progress)
            if not self._reference_still_there(base):
                self.storage.delete(stored)
                return None, "whole: its reference was replaced while the delta was stored"
            self._remember(space, lineage, base.key, cost)
        created = size if base.created else 0
        result = PutResult(
            key, stored, Kind.DELTA, size, delta_size, created, sha, base.hit, codec, why
        )
        return result, why

    @contextlib.contextmanager
    def _next_reference(
        self,
        source: Path,
        key: str,
        *,
        sha: str,
        size: int,
        work: Path,
        expanded: Path | None,
        report: _Report,
    ) -> Iterator[_Ref | None]:
        """``source`` made its DeltaSpace's next reference (content-addressed); None when it
        cannot be one (gzip-like data that only an expansion proven to rebuild it could take)."""
        if looks_compressed(source) and not self.expanded.rebuilds(expanded, sha, work):
            yield None
            return
        with self._new_reference(source, key, sha, size, work, report=report, first=False) as ref:
            yield ref

    def _expand_target(self, source: Path, work: Path) -> Path | None:
        """The expanded form of ``source``, or None when it has nothing zlib reproduces."""
        if archive.sniff(source) is None:
            return None
        path = work / "target.expanded"
        with path.open("wb") as f:
            found = archive.expand_target(source, f)
        log.debug("%s: %s", source.name, found)
        if not found.pays(source.stat().st_size):
            log.info("%s: too little is reproducible by zlib; using the compat codec", source.name)
            return None
        return path

    def _choose_delta(
        self,
        base: _Ref,
        source: Path,
        expanded: Path | None,
        work: Path,
        *,
        sha: str,
        limit: float | None,
    ) -> tuple[tuple[Path, str] | None, bool]:
        """The smallest checked delta among the codecs that apply, with its codec name; and
        whether an encode was stopped for passing ``limit`` bytes (then that delta is missing).

        Compat is not tried against gzip-like references (DeltaGlider could not read it), and,
        when an archive delta exists, only for files up to CHEAP_COMPAT_BYTES whose archive delta
        is above ARCHIVE_CLEAR_WIN of the file, or when the archive delta is above the limit: for
        large wheels it is the expansion that pays.
        """
        found: list[tuple[int, Path, str]] = []
        compressed_ref = looks_compressed(base.path)
        size = source.stat().st_size

        def compat_wanted(archived: int | None) -> bool:
            return not compressed_ref and (
                archived is None
                or limit is None
                or archived > limit
                or (size <= CHEAP_COMPAT_BYTES and archived > ARCHIVE_CLEAR_WIN * size)
            )

        stop = None if limit is None else int(limit)
        compat_path = work / "out.delta"

        def finish(started: Running | None) -> bool | None:
            return self._encode_checked(
                base.path, source, compat_path, work, sha=sha, limit=stop, started=started
            )

        with _CompatBeside(
            compat_path,
            start=lambda: self.codec.start_encode(base.path, source, compat_path),
            finish=finish,
            early_ok=compat_wanted(None) and limit is not None and size <= CHEAP_COMPAT_BYTES,
        ) as compat:
            # When the first delta against this reference was above the archive codec's clear
            # win, this one likely is too and compat will be wanted: start it now, beside the
            # whole archive encode (HDiffPatch diffs and all), not just its end.
            cost = base.cost
            first = cost.first if cost and cost.ref_sha256 == base.sha256 else None
            if first is not None and first > ARCHIVE_CLEAR_WIN * size:
                compat.start_early()

            def decide(archived: int | None) -> None:
                compat.decide(compat_wanted(archived))

            # A new reference gets a zero-diff delta: compat (readable by DeltaGlider) unless
            # the reference is gzip-like, which only the archive codec can decode against.
            if expanded is not None and (compressed_ref or not base.created):
                path = work / "archive.delta"
                with self.expanded.open(base.path, base.sha256, work) as ref:
                    pair = (base.path, ref), (source, expanded)
                    if self.expanded.encode_checked(
                        *pair, path, work, sha, on_plan=compat.start_early, on_encoded=decide
                    ):
                        found.append((path.stat().st_size, path, archive.CODEC))
            decide(found[0][0] if found else None)
            made, over = compat.result()
            if made is not None:
                found.append((made.stat().st_size, made, COMPAT))
        if not found:
            return None, over
        # A compat delta wins ties: DeltaGlider can read it.
        _, path, codec = min(found, key=lambda f: (f[0], f[2] != COMPAT))
        return (path, codec), over

    @contextlib.contextmanager
    def _delta_base(
        self,
        source: Path,
        key: str,
        sha: str,
        size: int,
        work: Path,
        *,
        lineage: str,
        expanded: Path | None = None,
        report: _Report,
    ) -> Iterator[_Ref | None]:
        """The reference to diff against: the current one of the file's lineage in its
        DeltaSpace, or, when the DeltaSpace has none, one created from ``source``. None when
        DeltaGlider could not decode deltas against it (gzip-like data), unless the archive codec
        has ``expanded`` the file: it expands such references itself (a gzip file becomes a
        reference only once its expanded form is proven to rebuild it)."""
        space = keys.deltaspace_of(key)
        with contextlib.ExitStack() as stack:
            entry: _Ref | None = None
            for found in self._reference_candidates(space, lineage):
                try:
                    entry = stack.enter_context(self._reference(found.key, found.sha256, work))
                except NotFoundError:
                    log.info("%s is gone; looking for another reference", self.url(found.key))
                    self._forget(space, lineage)
                    continue
                except IntegrityError as exc:
                    # No delta can be made against it, but the file can still be kept, whole.
                    log.warning("%s; storing %s direct", exc, key)
                    yield None
                    return
                entry = replace(entry, cost=found.cost)
                break
            if entry is None:
                if looks_compressed(source) and not self.expanded.rebuilds(expanded, sha, work):
                    log.info("%s is gzip/bzip2/xz data: not made a reference, stored direct", key)
                    yield None
                    return
                made = stack.enter_context(
                    self._new_reference(source, key, sha, size, work, report=report, first=True)
                )
                if made is None:  # another writer's reference.bin won the race: use it
                    winner = self._space_reference(space)
                    if winner is None:
                        raise StorageError(
                            f"{self.url(keys.reference_key(space))} was reported as existing "
                            "but cannot be read; try again"
                        )
                    made = stack.enter_context(self._reference(winner.key, winner.sha256, work))
                yield made
                return
            if looks_compressed(entry.path) and expanded is None:
                log.info(
                    "%s is gzip/bzip2/xz data that DeltaGlider would unpack before "
                    "decoding; storing %s direct",
                    entry.key,
                    key,
                )
                yield None
            else:
                yield entry

    def _reference_candidates(self, space: str, lineage: str) -> Iterator[_Found]:
        """References to encode against, best first: the current one of the lineage (known in
        memory since this process last stored it, else from the lineage's newest delta: one LIST
        of the DeltaSpace and one HEAD), then the DeltaSpace's newest."""
        with self._spaces_lock:
            known = self._spaces.get((space, lineage))
        if known is not None:
            yield known
        elif lineage:
            found = self._lineage_reference(space, lineage)
            if found is not None:
                yield found
        found = self._space_reference(space)
        if found is not None:
            yield found

    def _lineage_reference(self, space: str, lineage: str) -> _Found | None:
        """The reference the newest delta of this lineage was made against, with its cost."""
        prefix = f"{space}/" if space else ""
        deltas = [
            item
            for item in self.storage.list_objects(prefix, delimiter="/")
            if isinstance(item, ObjectInfo)
            and keys.is_delta(item.key)
            and rotation.lineage(posixpath.basename(keys.logical_key(item.key))) == lineage
        ]
        if not deltas:
            return None
        newest = max(deltas, key=lambda o: (o.last_modified, o.key))
        meta = self.read_metadata([newest]).get(newest.key)  # the metadata cache, else a HEAD
        if meta is None or meta.kind is not Kind.DELTA or not is_sha256(meta.ref_sha256):
            return None
        try:
            ref_key = self.reference_keys_of(newest, meta)[0]
        except IntegrityError:
            return None
        ref_sha = str(meta.ref_sha256)
        return _Found(ref_key, ref_sha, Cost.parse(ref_sha, meta.cost))

    def _space_reference(self, space: str) -> _Found | None:
        """The DeltaSpace's newest content-addressed reference, else ``reference.bin``; None
        when it has none. One LIST of the hidden references (empty in most DeltaSpaces), then
        a HEAD of ``reference.bin`` only when there is none: an addressed key carries its
        SHA-256."""
        addressed = [
            item
            for item in self.storage.list_objects(keys.references_prefix(space))
            if isinstance(item, ObjectInfo) and keys.is_reference(item.key)
        ]
        for item in sorted(addressed, key=lambda o: (o.last_modified, o.key), reverse=True):
            sha = keys.addressed_sha256(item.key)
            if sha is not None:
                return _Found(item.key, sha)
        ref_key = keys.reference_key(space)
        info = self.storage.head(ref_key)
        if info is None:
            return None
        recorded = parse_metadata(ref_key, info.metadata or {}).file_sha256
        return _Found(ref_key, recorded if is_sha256(recorded) else None)

    def _remember(self, space: str, lineage: str, ref_key: str, cost: Cost) -> None:
        """The lineage's current reference and its cost after a delta stored against it. A
        reference another writer deletes meanwhile is put back after the next upload
        (``_reference_still_there``); one it adds is only missed, never wrong."""
        with self._spaces_lock:
            self._spaces[(space, lineage)] = _Found(ref_key, cost.ref_sha256, cost)

    def _forget(self, space: str, lineage: str) -> None:
        with self._spaces_lock:
            self._spaces.pop((space, lineage), None)

    @contextlib.contextmanager
    def _new_reference(
        self,
        source: Path,
        key: str,
        sha: str,
        size: int,
        work: Path,
        *,
        report: _Report,
        first: bool,
    ) -> Iterator[_Ref | None]:
        """Make ``source`` a reference of its DeltaSpace; None when another writer's first
        reference won the race for ``reference.bin`` (the caller uses that one).

        The first reference of a DeltaSpace goes to ``reference.bin`` where the store enforces
        create-only writes (what deltaglider_proxy reads). Anywhere else, or on a server that
        ignores ``If-None-Match``, it goes to a content-addressed key, where a racing writer
        can only write the very same bytes: no writer can overwrite a reference that deltas
        were made against.
        """
        space = keys.deltaspace_of(key)
        ref_key = keys.reference_key(space)
        if not first or not self.storage.honours_create_only(size):
            ref_key = keys.addressed_reference_key(space, sha)
        with self._reference_copy(source, sha, work) as copy:
            meta = reference_metadata(posixpath.basename(key), sha, size)
            report.enter("reference", size)
            try:
                self.storage.upload(ref_key, copy, meta, create_only=True, progress=report.progress)
            except PreconditionFailedError:
                if ref_key == keys.reference_key(space):
                    log.info("%s was created by another writer; using it", self.url(ref_key))
                    yield None
                    return
                # The same bytes under the same key, from a racing writer: ours as much.
            yield _Ref(copy, sha, None, created=True, key=ref_key)

    @contextlib.contextmanager
    def _reference_copy(self, source: Path, sha: str, work: Path) -> Iterator[Path]:
        """A private copy of the file that is about to become a DeltaSpace's reference, checked
        against ``sha``: the reference is uploaded (and diffed against) from it, never from
        ``source``, which a build may rewrite at any moment, while the reference must hold
        exactly the bytes its metadata names. The cache's copy when the cache takes it (held
        until the block ends), else one in the work folder."""
        changed = _source_changed(source)
        with contextlib.ExitStack() as stack:
            try:
                path = stack.enter_context(self.cache.holding(sha, source))
            except IntegrityError as exc:
                raise changed from exc
            except CacheError as exc:
                log.warning("could not cache the new reference (%s); copying it aside", exc)
                path = work / "reference.copy"
                with source.open("rb") as src, path.open("wb") as f:
                    writer = HashingWriter(f)
                    shutil.copyfileobj(src, cast(BinaryIO, writer), 1024 * 1024)
                if writer.hexdigest() != sha:
                    raise changed from None
            yield path

    def _reference_still_there(self, base: _Ref) -> bool:
        """After a delta upload: its reference must still be the one it was made against.

        Another machine may have deleted the DeltaSpace's last delta, and with it the reference,
        while this delta was being made. Put the reference back from our verified copy; if a
        different reference took its place meanwhile, this delta is useless (caller goes direct).
        """
        ref_key = base.key
        now = self.storage.head(ref_key)
        if now is None:
            log.warning(
                "%s vanished while a delta was stored against it; restoring it", self.url(ref_key)
            )
            meta = reference_metadata(
                posixpath.basename(ref_key), base.sha256, base.path.stat().st_size
            )
            try:
                self.storage.upload(ref_key, base.path, meta, create_only=True)
                return True
            except PreconditionFailedError:
                now = self.storage.head(ref_key)
                if now is None:
                    return False
        recorded = parse_metadata(ref_key, now.metadata or {}).file_sha256
        return recorded is None or recorded == base.sha256

    def _add_to_cache(self, sha: str, source: Path) -> None:
        try:
            self.cache.add(sha, source)
        except DgError as exc:  # the cache only saves work later; the upload already succeeded
            log.warning("could not cache the new reference: %s", exc)

    def _encode_checked(
        self,
        reference: Path,
        target: Path,
        out: Path,
        work: Path,
        *,
        sha: str,
        limit: int | None,
        started: Running | None = None,
    ) -> bool | None:
        """Encode (or finish the encode ``started`` in the background), then decode once and
        compare: a delta is kept only if it rebuilds the file. None when the delta passed
        ``limit`` bytes (nothing worth checking).

        The check decodes exactly as DeltaGlider 6.x does, so what passes is readable by it too.
        """
        if started is not None:
            started.wait()
            if limit is not None and out.stat().st_size > limit:
                return None
        elif not self.codec.encode(reference, target, out, limit=limit):
            return None
        check = work / "check.out"
        try:
            self.codec.decode(reference, out, check)
            rebuilt, _ = sha256_file(check)
        except CodecError as exc:
            if disk_full(exc):
                raise  # not the delta's fault: storing direct would only hide the full disk
            log.warning("delta for %s did not decode (%s); storing direct", target.name, exc)
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                check.unlink()
        if rebuilt != sha:
            log.warning("delta for %s did not rebuild it bit-exact; storing direct", target.name)
            return False
        return True

    # ----------------------------------------------------------- reference

    @contextlib.contextmanager
    def _reference(
        self,
        ref_key: str,
        sha: str | None,
        work: Path,
        *,
        fresh: bool = False,
        elsewhere: tuple[str, ...] = (),
    ) -> Iterator[_Ref]:
        """A verified local copy of a reference: from the cache, or with ``fresh`` (or when no
        checksum is known, as for a plain object) downloaded now and hashed. ``elsewhere``: other
        keys the same reference may be found under, tried in turn when ``ref_key`` is missing."""
        mismatch = IntegrityError(
            f"{self.url(ref_key)} does not match the SHA-256 its deltas were made against (it is "
            "corrupt or was replaced); files in this DeltaSpace cannot be rebuilt from it"
        )

        def fetch(f: BinaryIO) -> None:
            *first, last = (ref_key, *elsewhere)
            for candidate in first:
                with contextlib.suppress(NotFoundError):
                    self.storage.download(candidate, f)
                    return
            self.storage.download(last, f)

        if sha is None or fresh:
            tmp = work / "reference.download"
            with tmp.open("wb") as f:
                writer = HashingWriter(f)
                fetch(cast(BinaryIO, writer))
            if sha is not None and writer.hexdigest() != sha:
                raise mismatch
            self._add_to_cache(writer.hexdigest(), tmp)
            yield _Ref(tmp, writer.hexdigest(), None if fresh else False, key=ref_key)
            return
        try:
            with self.cache.reference(sha, fetch) as entry:
                yield _Ref(entry.path, sha, entry.hit, key=ref_key)
        except IntegrityError as exc:
            raise mismatch from exc

    def _delete_references(self, refs: list[ObjectInfo], removed: set[str]) -> None:
        """Delete references no delta needs, holding a verified copy of each until their
        DeltaSpaces have been listed once more.

        Another machine may have stored a delta against one between our last listing and the
        delete; its own check (``_reference_still_there``) ran before the delete and passed. That
        delta shows in the listing after the delete, and then the reference goes back.
        """
        with contextlib.ExitStack() as stack:
            work = stack.enter_context(self._workdir())
            copies: dict[str, _Ref] = {}
            for ref in refs:
                known = reference_sha256(ref)
                try:
                    copies[ref.key] = stack.enter_context(self._reference(ref.key, known, work))
                except IntegrityError as exc:
                    log.warning("%s; deleting it without a copy", exc)  # it rebuilds nothing
            self._delete_objects([ref.key for ref in refs])
            for ref in self._needed_after_delete(refs, removed):
                copy = copies.get(ref.key)
                if copy is not None:
                    self._put_back(ref, copy)

    def _put_back(self, ref: ObjectInfo, copy: _Ref) -> None:
        log.warning(
            "%s: another writer stored a delta against it while it was being deleted; "
            "putting it back",
            self.url(ref.key),
        )
        meta = ref.metadata or reference_metadata(
            keys.REFERENCE_NAME, copy.sha256, copy.path.stat().st_size
        )
        try:
            self.storage.upload(ref.key, copy.path, meta, create_only=True)
        except PreconditionFailedError:
            pass  # someone put it back already
        except StorageError as exc:
            raise StorageError(
                f"{self.url(ref.key)} was deleted while another writer stored a delta "
                f"against it, and putting it back failed ({exc}); the deltas stored in that "
                "DeltaSpace since cannot be rebuilt: store those files again from their "
                "source (dg-agent cp FILE URL)"
            ) from exc

    # ------------------------------------------------- re-encode (prune.py)

    @contextlib.contextmanager
    def held_reference(self, ref_key: str, sha: str, work: Path) -> Iterator[Path]:
        """A local copy of a stored reference, checked against ``sha`` (from the cache when
        it has it), held until the block ends."""
        with self._reference(ref_key, sha, work) as ref:
            yield ref.path

    def encode_against(
        self,
        reference: Path,
        ref_sha: str,
        source: Path,
        work: Path,
        *,
        sha: str,
        archive_codec: bool,
    ) -> tuple[Path, str] | None:
        """The smallest delta of ``source`` (SHA-256 ``sha``) against a local reference that
        rebuilds it bit-exact, with its codec name; None when no codec makes one. The delta
        is a file in ``work``, which the next call may overwrite."""
        expanded = self._expand_target(source, work) if archive_codec else None
        base = _Ref(reference, ref_sha, None, created=ref_sha == sha)
        chosen, _ = self._choose_delta(base, source, expanded, work, sha=sha, limit=None)
        return chosen

    def add_reference(self, source: Path, key: str, sha: str, work: Path) -> str:
        """Store ``source`` (checked against ``sha``) as a content-addressed reference of the
        DeltaSpace of ``key``; returns the reference's key. A racing writer can only have
        written the same bytes there."""
        size = source.stat().st_size
        made = self._new_reference(source, key, sha, size, work, report=_Report(), first=False)
        with made as ref:
            if ref is None:  # only the first reference, reference.bin, can lose a race
                raise StorageError(f"{self.url(key)}: its new reference could not be stored")
            return ref.key

    def replace_delta(
        self,
        key: str,
        meta: StoredMeta,
        delta: Path,
        codec: str,
        *,
        ref_key: str,
        ref_sha256: str,
        cost: Cost,
        why: str,
    ) -> None:
        """Store ``delta`` as logical ``key``'s delta, against another reference than before:
        what the old metadata says of the file (SHA-256, size, modification time, when it was
        first stored) is kept."""
        if meta.file_sha256 is None or meta.file_size is None:
            raise IntegrityError(f"{self.url(key)}: its metadata lacks the file's size or SHA-256")
        new_meta = delta_metadata(
            name=posixpath.basename(key),
            sha256=meta.file_sha256,
            size=meta.file_size,
            ref_key=ref_key,
            ref_sha256=ref_sha256,
            delta_size=delta.stat().st_size,
            zero_diff=ref_sha256 == meta.file_sha256,
            mtime=meta.mtime,
            codec=None if codec == COMPAT else codec,
            extra=_delta_extra(why, cost, codec, created_at=meta.created_at),
        )
        self.storage.upload(keys.delta_key(key), delta, new_meta)

    # ---------------------------------------------------------------- get

    def get(
        self,
        key: str,
        dest: Path,
        *,
        progress: Progress | None = None,
        fresh: bool = False,
        listed: Entry | None = None,
    ) -> GetResult:
        """Rebuild logical ``key`` into ``dest``; ``dest`` appears only when the SHA-256 matches.

        ``fresh`` reads the reference from the store instead of the cache (to check the store).
        ``listed``: the file as a listing with details found it, which saves a HEAD; should
        it have changed since, the check fails and the file is read once more from a HEAD.
        """
        if listed is not None and listed.meta is not None:
            try:
                return self._get(listed.info, listed.meta, dest, progress=progress, fresh=fresh)
            except (IntegrityError, NotFoundError):
                log.debug("%s changed since it was listed; reading it again", key)
        obj, meta = self.resolve(key)
        return self._get(obj, meta, dest, progress=progress, fresh=fresh)

    def _get(
        self,
        obj: ObjectInfo,
        meta: StoredMeta,
        dest: Path,
        *,
        progress: Progress | None,
        fresh: bool,
    ) -> GetResult:
        key = keys.logical_key(obj.key)
        hit: bool | None = None
        with atomic_output(dest) as tmp:
            if meta.kind is Kind.DELTA:
                hit, (sha, size) = self._rebuild(obj, meta, tmp, fresh=fresh)
            else:
                with tmp.open("wb") as f:
                    writer = HashingWriter(f)
                    self.storage.download(obj.key, cast(BinaryIO, writer), progress=progress)
                sha, size = writer.hexdigest(), writer.size
            self._check_rebuilt(obj, meta, sha, size)
        log.debug(
            "get %s: %s from %s, %d bytes, SHA-256 checked, cache hit: %s",
            key,
            meta.kind.value,
            obj.key,
            size,
            hit,
        )
        return GetResult(keys.logical_key(obj.key), obj.key, meta.kind, size, sha, hit, meta)

    def _check_rebuilt(self, obj: ObjectInfo, meta: StoredMeta, sha: str, size: int) -> None:
        if meta.kind is Kind.PLAIN:
            return  # nothing recorded to check against
        if meta.file_sha256 != sha or (meta.file_size is not None and meta.file_size != size):
            raise IntegrityError(
                f"{self.url(obj.key)} rebuilt to {size} bytes with SHA-256 {sha[:12]}…, but its "
                f"metadata records {meta.file_size} bytes and {str(meta.file_sha256)[:12]}…: "
                "the stored object is corrupt; no file was written"
            )

    def reference_keys_of(self, obj: ObjectInfo, meta: StoredMeta) -> tuple[str, ...]:
        """Where a delta's reference may be, most likely first: dg-ref-path beside the delta
        (which still holds when a folder was copied elsewhere whole, or is seen from another
        root, as a local store can be), then the bucket-wide dg-ref-key (what DeltaGlider
        follows; the only one upstream writes). Whichever is found is checked against
        dg-ref-sha256."""
        found: list[str] = []
        if meta.ref_path:
            space = keys.deltaspace_of(obj.key)
            found.append(posixpath.normpath(posixpath.join(space, meta.ref_path)))
        if meta.ref_key:
            found.append(meta.ref_key)
            if "%" in meta.ref_key and (meta.tool or "").startswith("dg-agent/"):
                found.append(unquote(meta.ref_key))  # we percent-encode non-ASCII keys
        candidates: list[str] = []
        for key in found:
            with contextlib.suppress(DgError):
                if check_key(key) not in candidates:
                    candidates.append(key)
        if not candidates:
            raise IntegrityError(
                f"{self.url(obj.key)} is a delta without a usable dg-ref-key or dg-ref-path, so "
                "its reference is unknown; it cannot be rebuilt"
            )
        return tuple(candidates)

    def _rebuild(
        self, obj: ObjectInfo, meta: StoredMeta, out: Path, *, fresh: bool
    ) -> tuple[bool | None, tuple[str, int]]:
        """Rebuild a delta into ``out``; (whether the reference was a cache hit, and the
        SHA-256 and size of ``out``, for the caller to check)."""
        ref_key, *elsewhere = self.reference_keys_of(obj, meta)
        if not is_sha256(meta.ref_sha256) or not is_sha256(meta.file_sha256):
            raise IntegrityError(
                f"{self.url(obj.key)} lacks a valid dg-ref-sha256 or dg-file-sha256, so its "
                "rebuild cannot be checked; it was not read"
            )
        if meta.codec not in (None, *archive.CODECS):
            raise CodecError(
                f"{self.url(obj.key)} was made with codec {meta.codec!r}, which this dg-agent "
                f"does not know (it reads {', '.join(archive.CODECS)}): upgrade dg-agent to "
                "read it"
            )
        with self._workdir() as work:
            delta_path = work / "in.delta"
            with delta_path.open("wb") as f:
                self.storage.download(obj.key, f)
            with self._reference(
                ref_key, meta.ref_sha256, work, fresh=fresh, elsewhere=tuple(elsewhere)
            ) as ref:
                try:
                    if meta.codec in archive.CODECS:
                        made = self.expanded.rebuild(
                            ref.path,
                            ref.sha256,
                            delta_path,
                            out,
                            work,
                            codec=meta.codec,
                            sha=cast(str, meta.file_sha256),  # checked above
                        )
                    else:
                        self.codec.rebuild(ref.path, delta_path, out)
                        made = sha256_file(out)
                except CodecError as exc:
                    raise CodecError(f"{self.url(obj.key)}: {exc}") from exc
                except IntegrityError as exc:
                    raise IntegrityError(
                        f"{self.url(obj.key)}: {exc}; no file was written"
                    ) from exc
                return ref.hit, made

    def verify(self, key: str, *, listed: Entry | None = None) -> GetResult:
        """Rebuild from what is stored (the reference too, not the cache) and check the SHA-256;
        raises IntegrityError on a mismatch. ``listed`` as for ``get``."""
        with self._workdir() as work:
            return self.get(key, work / "verify.out", fresh=True, listed=listed)


def _delta_extra(
    why: str, cost: Cost, codec: str, *, created_at: str | None = None
) -> dict[str, str]:
    """Our keys on a delta beyond upstream's: why it is stored so, its reference's rotation
    state, the zlib an archive delta needs, and (for a delta rewritten) when the file was first
    stored."""
    extra = {WHY_KEY: ascii_value(why), COST_KEY: cost.encode()}
    if codec != COMPAT:
        extra[ZLIB_KEY] = zlib.ZLIB_RUNTIME_VERSION
    if created_at:
        extra["dg-created-at"] = created_at
    return extra


def _source_changed(source: Path) -> SourceChangedError:
    return SourceChangedError(
        f"{source} changed while it was being stored; nothing was kept, store it again "
        "once it is complete"
    )


@dataclass(frozen=True)
class _Report:
    """Where one put tells its progress (both optional)."""

    stage: Stage | None = None
    progress: Progress | None = None

    def enter(self, name: str, total: int | None = None) -> None:
        if self.stage is not None:
            self.stage(name, total)


@dataclass(frozen=True)
class _Found:
    """A reference found in the store: its key, its SHA-256 when recorded, and what the deltas
    against it have cost when known."""

    key: str
    sha256: str | None
    cost: Cost | None = None


class _CompatBeside:
    """The compat delta of one put, made beside its archive delta.

    Its xdelta3 (a child process) may start early, while the archive delta is still being made
    (``start_early``, allowed only where compat could be wanted); once the archive delta's size
    is known, ``decide`` either has it finished and checked on a side thread while the archive
    delta is checked, or kills it. Leaving the block stops anything still running.
    """

    def __init__(
        self,
        path: Path,
        *,
        start: Callable[[], Running],
        finish: Callable[[Running | None], bool | None],
        early_ok: bool,
    ) -> None:
        """``start`` begins the encode into ``path``; ``finish`` completes an early one (or
        makes the whole delta when given None) and checks it, as ``_encode_checked`` does."""
        self._path, self._start, self._finish, self._early_ok = path, start, finish, early_ok
        self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compat")
        self._early: Running | None = None
        self._job: Future[bool | None] | None = None

    def start_early(self) -> None:
        if self._early_ok and self._early is None and self._job is None:
            self._early = self._start()

    def decide(self, wanted: bool) -> None:
        """Have the compat delta made (finishing an early start) if ``wanted`` and not yet
        asked for; otherwise stop an early start."""
        if self._job is None and wanted:
            self._job = self._side.submit(self._finish, self._early)
            self._early = None
        elif self._early is not None:
            self._early.stop()
            self._early = None

    def result(self) -> tuple[Path | None, bool]:
        """The checked compat delta (None if none was made or it did not rebuild), and whether
        it was stopped for passing the limit."""
        if self._job is None:
            return None, False
        checked = self._job.result()
        return (self._path if checked else None), checked is None

    def __enter__(self) -> _CompatBeside:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._early is not None:
            self._early.stop()
        self._side.shutdown(wait=True)


@dataclass(frozen=True)
class _Ref:
    """A verified local copy of a DeltaSpace's reference."""

    path: Path
    sha256: str
    hit: bool | None
    """Whether it came from the cache; None when it was not looked up there."""
    created: bool = False
    """True when this put created the reference (the file itself)."""
    key: str = ""
    """Where the reference is stored."""
    cost: Cost | None = None
    """What the deltas against it have cost, when known (rotation.py)."""


__all__ = ["DeltaStore", "Entry", "GetResult", "PutResult"]
