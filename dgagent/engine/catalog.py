"""The logical files of a store: what a listing shows and what a delete removes.

A DeltaSpace's internal objects stay out of sight (its references, anything under a ``.dg``
folder, and the ``.delta`` suffix, which is stripped), and a delete takes references away only
once no delta of their DeltaSpace needs them any more.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from dgagent.engine import keys
from dgagent.engine.metacache import MetadataCache, same_etag
from dgagent.engine.metadata import StoredMeta, parse_metadata
from dgagent.engine.results import Entry, Summary
from dgagent.errors import NotFoundError, ReservedNameError
from dgagent.storage.base import ObjectInfo, Prefix, Storage, check_key

HEAD_WORKERS = 16
"""HEADs in flight while a listing reads metadata it has not seen before."""


class Catalog:
    """Listing and deleting logical files over one Storage; DeltaStore adds put and get.

    ``metadata``: where what a HEAD told us is kept between runs (metacache.py), for stores whose
    HEADs are requests; None reads every object's metadata from the store.
    """

    def __init__(self, storage: Storage, *, metadata: MetadataCache | None = None) -> None:
        self.storage = storage
        self.metadata = metadata if storage.cache_scope is not None else None
        self.on_head: Callable[[int], None] | None = None
        """Told how many objects' metadata a listing reads from the store (not from the
        cache), then once per object read: the CLI draws progress on a terminal."""

    def url(self, key: str) -> str:
        return f"{self.storage.url}/{key}"

    def resolve(self, key: str) -> tuple[ObjectInfo, StoredMeta]:
        """The stored object behind a logical name: ``key`` itself, else ``key.delta``."""
        check_key(key)
        obj = self.storage.head(key)
        if obj is None and not keys.is_delta(key):
            obj = self.storage.head(keys.delta_key(key))
        if obj is None:
            raise NotFoundError(f"{self.url(key)} does not exist")
        return obj, parse_metadata(obj.key, obj.metadata or {})

    def listing(self, prefix: str, *, recursive: bool, details: bool = True) -> Listing:
        """The logical files under ``prefix`` (internal objects hidden, ``.delta`` stripped),
        with every object behind them, for one definition of stored bytes (results.Summary)."""
        raw = list(self.storage.list_objects(prefix, delimiter=None if recursive else "/"))
        objects = [o for o in raw if isinstance(o, ObjectInfo)]
        if not recursive and any(
            isinstance(p, Prefix) and p.key == f"{prefix}{keys.HIDDEN}/" for p in raw
        ):
            # The folder's own DeltaSpace keeps its other references under .dg/refs/.
            space = prefix.rstrip("/")
            objects += [
                o
                for o in self.storage.list_objects(keys.references_prefix(space))
                if isinstance(o, ObjectInfo)
            ]
        direct = {o.key for o in objects if not keys.is_delta(o.key)}
        visible: list[ObjectInfo | Prefix] = []
        for item in raw:
            if keys.is_internal(item.key):
                continue
            if isinstance(item, Prefix):
                visible.append(item)
            elif keys.is_reference(item.key) or item.key.endswith("/"):
                continue
            elif keys.is_delta(item.key) and keys.logical_key(item.key) in direct:
                continue  # shadowed: a direct object of the same name wins, as upstream reads it
            else:
                visible.append(item)
        files = [item for item in visible if isinstance(item, ObjectInfo)]
        metas = self.read_metadata(files) if details else {}
        rows: list[Entry | Prefix] = [
            item
            if isinstance(item, Prefix)
            else Entry(keys.logical_key(item.key), item.key, item.size, item, metas.get(item.key))
            for item in visible
        ]
        return Listing(rows, objects)

    def list_files(
        self, prefix: str, *, recursive: bool, details: bool = True
    ) -> Iterator[Entry | Prefix]:
        """Logical files under ``prefix`` (internal objects hidden, ``.delta`` stripped)."""
        yield from self.listing(prefix, recursive=recursive, details=details).rows

    def with_details(self, entries: list[Entry], *, cached_only: bool = False) -> list[Entry]:
        """The same entries with their metadata read (cached, else one HEAD each; with
        ``cached_only`` what the cache knows, and no request)."""
        metas = self.read_metadata([e.info for e in entries], cached_only=cached_only)
        return [
            Entry(e.key, e.stored_key, e.stored_size, e.info, metas.get(e.stored_key))
            for e in entries
        ]

    def read_metadata(
        self, objects: list[ObjectInfo], *, cached_only: bool = False
    ) -> dict[str, StoredMeta]:
        """The parsed metadata of listed objects (see ``raw_metadata``), by key."""
        raw = self.raw_metadata(objects, cached_only=cached_only)
        return {key: parse_metadata(key, meta) for key, meta in raw.items()}

    def raw_metadata(
        self, objects: list[ObjectInfo], *, cached_only: bool = False
    ) -> dict[str, Mapping[str, str]]:
        """The user metadata of listed objects, by key: from the cache where the object is
        unchanged, else a HEAD each (16 at a time), which the cache then keeps. Objects gone
        since the listing are missing, and with ``cached_only`` those the cache does not
        know (where reading metadata costs no request, it is read anyway)."""
        scope = self.storage.cache_scope
        known: dict[str, Mapping[str, str]] = {}
        if self.metadata is not None and scope is not None:
            known = self.metadata.lookup(scope, objects)
        if cached_only and scope is not None:
            return known
        missing = [o for o in objects if o.key not in known]
        heads = self._heads(missing)
        if self.metadata is not None and scope is not None:
            # Only what belongs to the listed version: an object rewritten after the LIST
            # would file its new metadata under the old ETag.
            self.metadata.remember(
                scope,
                [
                    (o, info.metadata or {})
                    for o in missing
                    if (info := heads.get(o.key)) is not None and same_etag(info.etag, o.etag)
                ],
            )
        return known | {key: info.metadata or {} for key, info in heads.items()}

    def _heads(self, objects: list[ObjectInfo]) -> dict[str, ObjectInfo]:
        told = self.on_head
        if told is not None and objects:
            told(-len(objects))

        def head(obj: ObjectInfo) -> tuple[str, ObjectInfo | None]:
            info = self.storage.head(obj.key)
            if told is not None:
                told(1)
            return obj.key, info

        if len(objects) <= 1:
            pairs = [head(o) for o in objects]
        else:
            with ThreadPoolExecutor(max_workers=HEAD_WORKERS) as pool:
                pairs = list(pool.map(head, objects))
        return {k: info for k, info in pairs if info is not None}

    # ---------------------------------------------------------------- delete

    def delete(self, logical: list[str], *, dryrun: bool = False) -> list[str]:
        """Delete logical files; a DeltaSpace's reference goes only once no delta needs it.

        Returns the physical keys deleted (or that would be, with ``dryrun``).
        """
        physical: list[str] = []
        spaces: set[str] = set()
        for key in logical:
            obj, _ = self.resolve(key)
            if keys.is_reference(obj.key):
                space = keys.deltaspace_of(obj.key)
                if self._deltas(self._space_objects({space}, set())[space]):
                    raise ReservedNameError(
                        f"{self.url(obj.key)} is still needed by the deltas of its DeltaSpace; "
                        "it is deleted with the last of them (or use rm -r on the folder)"
                    )
                spaces.add(space)
                continue
            physical.append(obj.key)
            if not keys.is_delta(obj.key) and self.storage.head(keys.delta_key(key)):
                physical.append(keys.delta_key(key))
        return self.delete_physical(physical, dryrun=dryrun, spaces=spaces)

    def delete_physical(
        self, physical: list[str], *, dryrun: bool = False, spaces: set[str] | None = None
    ) -> list[str]:
        """Delete stored objects (in batches), then the references of ``spaces`` and of the
        DeltaSpaces the objects were in, where no remaining delta needs them. What remains of
        those DeltaSpaces is seen in one listing, not one per DeltaSpace.

        Returns the physical keys deleted (or that would be, with ``dryrun``).
        """
        gone = list(dict.fromkeys(k for k in physical if not keys.is_reference(k)))
        if not dryrun:
            self._delete_objects(gone)
        affected = set(spaces or ()) | {keys.deltaspace_of(k) for k in gone}
        if not affected:
            return gone
        removed = set(gone)
        remaining = self._space_objects(affected, removed)
        doomed = [
            ref for space in sorted(affected) for ref in self._unneeded_references(remaining[space])
        ]
        if doomed and not dryrun:
            self._delete_references(doomed, removed)
        return gone + [ref.key for ref in doomed]

    def _delete_objects(self, physical: list[str]) -> None:
        self.storage.delete_many(physical)
        scope = self.storage.cache_scope
        if self.metadata is not None and scope is not None:
            self.metadata.forget(scope, physical)

    def references(self, space: str) -> list[ObjectInfo]:
        """Every reference of a DeltaSpace: ``reference.bin`` and the content-addressed ones."""
        return [o for o in self._space_objects({space}, set())[space] if keys.is_reference(o.key)]

    def _space_objects(self, spaces: set[str], removed: set[str]) -> dict[str, list[ObjectInfo]]:
        """Every object of each DeltaSpace (its files, deltas and references), leaving out
        ``removed``. One DeltaSpace: a delimited LIST of its folder (and of its hidden references
        when it has some); several: one recursive LIST of the prefix they share."""
        found: dict[str, list[ObjectInfo]] = {space: [] for space in spaces}
        if len(spaces) == 1:
            (space,) = spaces
            prefix = f"{space}/" if space else ""
            raw = list(self.storage.list_objects(prefix, delimiter="/"))
            listed = [o for o in raw if isinstance(o, ObjectInfo)]
            if any(isinstance(p, Prefix) and p.key == f"{prefix}{keys.HIDDEN}/" for p in raw):
                listed += [
                    o
                    for o in self.storage.list_objects(keys.references_prefix(space))
                    if isinstance(o, ObjectInfo)
                ]
        else:
            common = "" if "" in spaces else posixpath.commonpath(sorted(spaces))
            shared = f"{common}/" if common else ""
            listed = [o for o in self.storage.list_objects(shared) if isinstance(o, ObjectInfo)]
        for obj in listed:
            space = keys.deltaspace_of(obj.key)
            if space in found and obj.key not in removed:
                found[space].append(obj)
        return found

    @staticmethod
    def _deltas(objects: list[ObjectInfo]) -> list[ObjectInfo]:
        return [o for o in objects if keys.is_delta(o.key) and not keys.is_internal(o.key)]

    def _delete_references(self, refs: list[ObjectInfo], removed: set[str]) -> None:
        """Delete references that no delta needs. DeltaStore, the only user, does it with
        verified copies kept in hand, since another machine may store a delta against one at
        that very moment; a plain catalog (no reference cache) can only delete them."""
        self._delete_objects([ref.key for ref in refs])

    def _unneeded_references(self, objects: list[ObjectInfo]) -> list[ObjectInfo]:
        """The references among one DeltaSpace's objects that no remaining delta was made
        against.

        With no delta left, all of them; with one reference, none (every delta may need it).
        With several (rotation), each remaining delta's metadata says which one it needs; a
        reference whose SHA-256 is unknown, or a delta that does not say, keeps everything:
        when unsure, nothing is deleted.
        """
        deltas = self._deltas(objects)
        refs = self._with_metadata([o for o in objects if keys.is_reference(o.key)])
        if not deltas:
            return refs
        if len(refs) <= 1:
            return []
        needed = self._needed_shas(deltas)
        if needed is None:
            return []
        return [r for r in refs if (sha := reference_sha256(r)) is not None and sha not in needed]

    def _with_metadata(self, refs: list[ObjectInfo]) -> list[ObjectInfo]:
        """References with their metadata (which records the SHA-256 of ``reference.bin``)."""
        metas = self.raw_metadata([r for r in refs if r.metadata is None])
        return [
            r if r.metadata is not None else replace(r, metadata=metas.get(r.key)) for r in refs
        ]

    def _needed_shas(self, deltas: list[ObjectInfo]) -> set[str] | None:
        """The SHA-256 of every reference these deltas were made against; None if one of
        them does not say."""
        metas = self.read_metadata(deltas)
        if len(metas) < len(deltas):
            return None  # a delta vanished or could not be read between LIST and HEAD
        needed: set[str] = set()
        for meta in metas.values():
            if meta.ref_sha256 is None:
                return None
            needed.add(meta.ref_sha256)
        return needed

    def _needed_after_delete(self, refs: list[ObjectInfo], removed: set[str]) -> list[ObjectInfo]:
        """After ``refs`` were deleted: those a remaining delta (maybe one another writer just
        stored) needs, so that they must go back. One listing for all their DeltaSpaces."""
        spaces = {keys.deltaspace_of(ref.key) for ref in refs}
        remaining = self._space_objects(spaces, removed)
        back: list[ObjectInfo] = []
        for space in sorted(spaces):
            deltas = self._deltas(remaining[space])
            if not deltas:
                continue
            needed = self._needed_shas(deltas)
            back += [
                ref
                for ref in refs
                if keys.deltaspace_of(ref.key) == space
                and (needed is None or (sha := reference_sha256(ref)) is None or sha in needed)
            ]
        return back


@dataclass(frozen=True)
class Listing:
    """What one listing found: its rows, and every object it saw (internal ones included)."""

    rows: list[Entry | Prefix]
    objects: list[ObjectInfo]
    """Every object the listing's LISTs returned: the files' deltas and direct objects, the
    references, and anything else stored there. Their sizes are what the store holds."""

    @property
    def files(self) -> list[Entry]:
        return [row for row in self.rows if isinstance(row, Entry)]

    def summary(self) -> Summary:
        """Files, their original bytes, and the bytes the store holds for them: every object
        the listing saw, references included, each counted once. A delta whose metadata was
        not read counts its stored size as original, and the summary says it is incomplete."""
        files = self.files
        return Summary(
            files=len(files),
            original_bytes=sum(f.original_size or f.stored_size for f in files),
            stored_bytes=sum(o.size for o in {o.key: o for o in self.objects}.values()),
            complete=all(f.original_size is not None for f in files),
        )


def reference_sha256(ref: ObjectInfo) -> str | None:
    """A reference's SHA-256: in its key when content-addressed, else in its metadata."""
    sha = keys.addressed_sha256(ref.key)
    if sha is None and ref.metadata is not None:
        recorded = parse_metadata(ref.key, ref.metadata).file_sha256
        sha = recorded if recorded is not None and len(recorded) == 64 else None
    return sha
