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
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from dgagent.engine import archive, keys
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.catalog import Catalog
from dgagent.engine.codec import Xdelta3, looks_compressed
from dgagent.engine.expanded import ExpandedReferences
from dgagent.engine.metadata import (
    ZLIB_KEY,
    Kind,
    StoredMeta,
    delta_metadata,
    direct_metadata,
    is_sha256,
    parse_metadata,
    reference_metadata,
)
from dgagent.engine.results import COMPAT, Entry, GetResult, PutResult
from dgagent.errors import (
    CacheError,
    CodecError,
    DgError,
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
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
CHEAP_COMPAT_BYTES = 32 * 1024**2
"""Under the archive codec, files up to this size also get a compat delta to compare with."""


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
        super().__init__(storage)
        self.settings = settings
        self.cache = cache or ReferenceCache(settings.cache_dir, max_bytes=settings.cache_max_bytes)
        self.codec = codec or Xdelta3(
            level=settings.xdelta_level, window_budget=settings.window_budget
        )
        self.work_root = settings.cache_dir.parent / "work"
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
        stage: Stage | None = None,
        replacing: bool = True,
    ) -> PutResult:
        """Store a local file under logical ``key`` (delta when eligible and worth it).

        ``codec`` (default: the settings') is ``compat`` or ``archive`` (docs/archive-codec.md).
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
        if delta and size > 0 and keys.is_delta_eligible(name, self.settings.delta_extensions):
            result = self._put_delta(
                source,
                key=key,
                sha=sha,
                size=size,
                mtime=before.st_mtime,
                limit=limit,
                archive_codec=(codec or self.settings.codec) == "archive",
                report=report,
            )
        if result is None:
            meta = direct_metadata(name=name, sha256=sha, size=size, mtime=before.st_mtime)
            report.enter("uploading", size)
            self.storage.upload(key, source, meta, progress=progress)
            result = PutResult(key, key, Kind.DIRECT, size, size, 0, sha, None)
        self._check_unchanged(source, before, result)
        if replacing:
            sibling = keys.delta_key(key) if result.kind is Kind.DIRECT else key
            self.storage.delete(sibling)  # the other form of this name is now stale
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
        raise IntegrityError(
            f"{source} changed while it was being stored; nothing was kept, store it again "
            "once it is complete"
        )

    def _put_delta(
        self,
        source: Path,
        *,
        key: str,
        sha: str,
        size: int,
        mtime: float,
        limit: float,
        archive_codec: bool,
        report: _Report,
    ) -> PutResult | None:
        """Store ``source`` as a delta, or return None when it should be stored direct."""
        ref_key = keys.reference_key(keys.deltaspace_of(key))
        name = posixpath.basename(key)
        with contextlib.ExitStack() as stack:
            work = stack.enter_context(self._workdir())
            expanded = self._expand_target(source, work) if archive_codec else None
            base = stack.enter_context(
                self._delta_base(source, key, sha, size, work, expanded=expanded, report=report)
            )
            if base is None:
                return None
            created = size if base.created else 0
            report.enter("encoding")
            chosen = self._choose_delta(base, source, expanded, work, sha=sha, limit=limit * size)
            if chosen is None:
                return None
            delta_path, codec = chosen
            delta_size = delta_path.stat().st_size
            if not created and delta_size > limit * size:
                log.info(
                    "%s: delta is %.3f of the file, above %.3f: storing direct",
                    key,
                    delta_size / size,
                    limit,
                )
                return None
            meta = delta_metadata(
                name=name,
                sha256=sha,
                size=size,
                ref_key=ref_key,
                ref_sha256=base.sha256,
                delta_size=delta_size,
                zero_diff=base.created,
                mtime=mtime,
                codec=None if codec == COMPAT else codec,
                extra={ZLIB_KEY: zlib.ZLIB_RUNTIME_VERSION} if codec != COMPAT else None,
            )
            stored = keys.delta_key(key)
            report.enter("uploading", delta_size)
            self.storage.upload(stored, delta_path, meta, progress=report.progress)
            if not self._reference_still_there(ref_key, base):
                self.storage.delete(stored)
                return None
        return PutResult(key, stored, Kind.DELTA, size, delta_size, created, sha, base.hit, codec)

    def _expand_target(self, source: Path, work: Path) -> Path | None:
        """The expanded form of ``source``, or None when it has nothing zlib reproduces."""
        if archive.sniff(source) is None:
            return None
        path = work / "target.expanded"
        with path.open("wb") as f:
            found = archive.expand_for_delta(source, f)
        log.debug("%s: %s", source.name, found)
        if found.members == 0:
            log.info("%s: no member is reproducible by zlib; using the compat codec", source.name)
            return None
        return path

    def _choose_delta(
        self, base: _Ref, source: Path, expanded: Path | None, work: Path, *, sha: str, limit: float
    ) -> tuple[Path, str] | None:
        """The smallest checked delta among the codecs that apply, with its codec name.

        Compat is not tried against gzip-like references (DeltaGlider could not read it), and,
        when an archive delta exists, only for files up to CHEAP_COMPAT_BYTES or when the archive
        delta is above the limit: for large wheels it is the expansion that pays.
        """
        found: list[tuple[int, Path, str]] = []
        compressed_ref = looks_compressed(base.path)
        # A new reference gets a zero-diff delta: compat (readable by DeltaGlider) unless the
        # reference is gzip-like, which only the archive codec can decode against.
        if expanded is not None and (compressed_ref or not base.created):
            path = work / "archive.delta"
            known = expanded if base.created else None  # the new reference, expanded already
            with self.expanded.open(base.path, base.sha256, work, known) as ref:
                if self.expanded.encode_checked(ref, expanded, path, work, sha):
                    found.append((path.stat().st_size, path, archive.CODEC))
        elif expanded is not None:
            self.expanded.remember(base.sha256, expanded)
        size = source.stat().st_size
        wanted = not found or size <= CHEAP_COMPAT_BYTES or found[0][0] > limit
        if not compressed_ref and wanted:
            path = work / "out.delta"
            if self._encode_checked(base.path, source, path, work, sha):
                found.append((path.stat().st_size, path, COMPAT))
        if not found:
            return None
        # A compat delta wins ties: DeltaGlider can read it.
        _, path, codec = min(found, key=lambda f: (f[0], f[2] != COMPAT))
        return path, codec

    @contextlib.contextmanager
    def _delta_base(
        self,
        source: Path,
        key: str,
        sha: str,
        size: int,
        work: Path,
        *,
        expanded: Path | None = None,
        report: _Report,
    ) -> Iterator[_Ref | None]:
        """The reference to diff against: created from ``source`` when the DeltaSpace has none
        (conditionally, so a racing writer's reference wins), else the existing one. None when
        DeltaGlider could not decode deltas against it (gzip-like data), unless the archive codec
        has ``expanded`` the file: it expands such references itself (a gzip file becomes the
        reference only once its expanded form is proven to rebuild it)."""
        ref_key = keys.reference_key(keys.deltaspace_of(key))
        ref = self.storage.head(ref_key)
        if ref is None:
            if looks_compressed(source) and not self.expanded.rebuilds(expanded, sha, work):
                log.info("%s is gzip/bzip2/xz data: not made a reference, stored direct", key)
                yield None
                return
            with self._reference_copy(source, sha, work) as copy:
                try:
                    meta = reference_metadata(posixpath.basename(key), sha, size)
                    report.enter("reference", size)
                    self.storage.upload(
                        ref_key, copy, meta, create_only=True, progress=report.progress
                    )
                except PreconditionFailedError:
                    log.info("%s was created by another writer; using it", self.url(ref_key))
                else:
                    yield _Ref(copy, sha, None, created=True)
                    return
            ref = self.storage.head(ref_key)
            if ref is None:
                raise StorageError(
                    f"{self.url(ref_key)} was reported as existing but cannot be read; try again"
                )
        known = parse_metadata(ref_key, ref.metadata or {}).file_sha256
        with contextlib.ExitStack() as stack:
            try:
                entry = stack.enter_context(
                    self._reference(ref_key, known if is_sha256(known) else None, work)
                )
            except IntegrityError as exc:
                # No delta can be made against it, but the file can still be kept, whole.
                log.warning("%s; storing %s direct", exc, key)
                yield None
                return
            if looks_compressed(entry.path) and expanded is None:
                log.info(
                    "%s is gzip/bzip2/xz data that DeltaGlider would unpack before "
                    "decoding; storing %s direct",
                    ref_key,
                    key,
                )
                yield None
            else:
                yield entry

    @contextlib.contextmanager
    def _reference_copy(self, source: Path, sha: str, work: Path) -> Iterator[Path]:
        """A private copy of the file that is about to become a DeltaSpace's reference, checked
        against ``sha``: the reference is uploaded (and diffed against) from it, never from
        ``source``, which a build may rewrite at any moment, while the reference must hold
        exactly the bytes its metadata names. The cache's copy when the cache takes it (held
        until the block ends), else one in the work folder."""
        changed = IntegrityError(
            f"{source} changed while it was being stored; nothing was kept, store it again "
            "once it is complete"
        )
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

    def _reference_still_there(self, ref_key: str, base: _Ref) -> bool:
        """After a delta upload: its reference must still be the one it was made against.

        Another machine may have deleted the DeltaSpace's last delta, and with it the reference,
        while this delta was being made. Put the reference back from our verified copy; if a
        different reference took its place meanwhile, this delta is useless (caller goes direct).
        """
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
        self, reference: Path, target: Path, out: Path, work: Path, sha: str
    ) -> bool:
        """Encode, then decode once and compare: a delta is kept only if it rebuilds the file.

        The check decodes exactly as DeltaGlider 6.x does, so what passes is readable by it too.
        """
        self.codec.encode(reference, target, out)
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
        self, ref_key: str, sha: str | None, work: Path, *, fresh: bool = False
    ) -> Iterator[_Ref]:
        """A verified local copy of a reference: from the cache, or with ``fresh`` (or when no
        checksum is known, as for a plain object) downloaded now and hashed."""
        mismatch = IntegrityError(
            f"{self.url(ref_key)} does not match the SHA-256 its deltas were made against (it is "
            "corrupt or was replaced); files in this DeltaSpace cannot be rebuilt from it"
        )
        if sha is None or fresh:
            tmp = work / "reference.download"
            with tmp.open("wb") as f:
                writer = HashingWriter(f)
                self.storage.download(ref_key, cast(BinaryIO, writer))
            if sha is not None and writer.hexdigest() != sha:
                raise mismatch
            self._add_to_cache(writer.hexdigest(), tmp)
            yield _Ref(tmp, writer.hexdigest(), None if fresh else False)
            return

        def fetch(f: BinaryIO) -> None:
            self.storage.download(ref_key, f)

        try:
            with self.cache.reference(sha, fetch) as entry:
                yield _Ref(entry.path, sha, entry.hit)
        except IntegrityError as exc:
            raise mismatch from exc

    def _delete_reference(self, ref: ObjectInfo, space: str, removed: set[str]) -> None:
        """Delete a reference no delta needs, holding a verified copy until the DeltaSpace has
        been listed once more.

        Another machine may have stored a delta against it between our last listing and the
        delete; its own check (``_reference_still_there``) ran before the delete and passed. That
        delta shows in the listing after the delete, and then the reference goes back.
        """
        ref_key = ref.key
        known = parse_metadata(ref_key, ref.metadata or {}).file_sha256
        with contextlib.ExitStack() as stack:
            work = stack.enter_context(self._workdir())
            try:
                copy = stack.enter_context(
                    self._reference(ref_key, known if is_sha256(known) else None, work)
                )
            except IntegrityError as exc:
                log.warning("%s; deleting it without a copy", exc)  # it rebuilds nothing anyway
                self.storage.delete(ref_key)
                return
            self.storage.delete(ref_key)
            if not self._reference_needed(space, removed):
                return
            log.warning(
                "%s: another writer stored a delta against it while it was being deleted; "
                "putting it back",
                self.url(ref_key),
            )
            try:
                self.storage.upload(ref_key, copy.path, ref.metadata or {}, create_only=True)
            except PreconditionFailedError:
                pass  # someone put it back already
            except StorageError as exc:
                raise StorageError(
                    f"{self.url(ref_key)} was deleted while another writer stored a delta "
                    f"against it, and putting it back failed ({exc}); the deltas stored in that "
                    "DeltaSpace since cannot be rebuilt: store those files again from their "
                    "source (dg-agent cp FILE URL)"
                ) from exc

    # ---------------------------------------------------------------- get

    def get(
        self, key: str, dest: Path, *, progress: Progress | None = None, fresh: bool = False
    ) -> GetResult:
        """Rebuild logical ``key`` into ``dest``; ``dest`` appears only when the SHA-256 matches.

        ``fresh`` reads the reference from the store instead of the cache (to check the store).
        """
        obj, meta = self.resolve(key)
        hit: bool | None = None
        with atomic_output(dest) as tmp:
            if meta.kind is Kind.DELTA:
                hit = self._rebuild(obj, meta, tmp, fresh=fresh)
                sha, size = sha256_file(tmp)
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

    def reference_key_of(self, obj: ObjectInfo, meta: StoredMeta) -> str:
        """Where a delta's reference is: dg-ref-path beside it, else the bucket-wide dg-ref-key."""
        if meta.ref_path:
            ref_key = posixpath.normpath(posixpath.join(keys.deltaspace_of(obj.key), meta.ref_path))
        elif meta.ref_key:
            ref_key = meta.ref_key
        else:
            raise IntegrityError(
                f"{self.url(obj.key)} is a delta without dg-ref-key or dg-ref-path metadata, so "
                "its reference is unknown; it cannot be rebuilt"
            )
        return check_key(ref_key)

    def _rebuild(self, obj: ObjectInfo, meta: StoredMeta, out: Path, *, fresh: bool) -> bool | None:
        ref_key = self.reference_key_of(obj, meta)
        if not is_sha256(meta.ref_sha256) or not is_sha256(meta.file_sha256):
            raise IntegrityError(
                f"{self.url(obj.key)} lacks a valid dg-ref-sha256 or dg-file-sha256, so its "
                "rebuild cannot be checked; it was not read"
            )
        if meta.codec not in (None, archive.CODEC):
            raise CodecError(
                f"{self.url(obj.key)} was made with codec {meta.codec!r}, which this dg-agent "
                f"does not know (it reads {archive.CODEC}): upgrade dg-agent to read it"
            )
        with self._workdir() as work:
            delta_path = work / "in.delta"
            with delta_path.open("wb") as f:
                self.storage.download(obj.key, f)
            with self._reference(ref_key, meta.ref_sha256, work, fresh=fresh) as ref:
                try:
                    if meta.codec == archive.CODEC:
                        self.expanded.rebuild(ref.path, ref.sha256, delta_path, out, work)
                    else:
                        self.codec.rebuild(ref.path, delta_path, out)
                except CodecError as exc:
                    raise CodecError(f"{self.url(obj.key)}: {exc}") from exc
                except IntegrityError as exc:
                    raise IntegrityError(
                        f"{self.url(obj.key)}: {exc}; no file was written"
                    ) from exc
                return ref.hit

    def verify(self, key: str) -> GetResult:
        """Rebuild from what is stored (the reference too, not the cache) and check the SHA-256;
        raises IntegrityError on a mismatch."""
        with self._workdir() as work:
            return self.get(key, work / "verify.out", fresh=True)


@dataclass(frozen=True)
class _Report:
    """Where one put tells its progress (both optional)."""

    stage: Stage | None = None
    progress: Progress | None = None

    def enter(self, name: str, total: int | None = None) -> None:
        if self.stage is not None:
            self.stage(name, total)


@dataclass(frozen=True)
class _Ref:
    """A verified local copy of a DeltaSpace's reference."""

    path: Path
    sha256: str
    hit: bool | None
    """Whether it came from the cache; None when it was not looked up there."""
    created: bool = False
    """True when this put created the reference (the file itself)."""


__all__ = ["DeltaStore", "Entry", "GetResult", "PutResult"]
