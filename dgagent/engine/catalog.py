"""The logical files of a store: what a listing shows and what a delete removes.

A DeltaSpace's internal objects stay out of sight (its references, anything under a ``.dg``
folder, and the ``.delta`` suffix, which is stripped), and a delete takes references away only
once no delta of their DeltaSpace needs them any more.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from dgagent.engine import keys
from dgagent.engine.metadata import StoredMeta, parse_metadata
from dgagent.engine.results import Entry
from dgagent.errors import NotFoundError, ReservedNameError
from dgagent.storage.base import ObjectInfo, Prefix, Storage, check_key


class Catalog:
    """Listing and deleting logical files over one Storage; DeltaStore adds put and get."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

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

    def list_files(
        self, prefix: str, *, recursive: bool, details: bool = True
    ) -> Iterator[Entry | Prefix]:
        """Logical files under ``prefix`` (internal objects hidden, ``.delta`` stripped)."""
        raw = list(self.storage.list_objects(prefix, delimiter=None if recursive else "/"))
        direct = {o.key for o in raw if isinstance(o, ObjectInfo) and not keys.is_delta(o.key)}
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
        objects = [item for item in visible if isinstance(item, ObjectInfo)]
        metas = self._heads(objects) if details else {}
        for item in visible:
            if isinstance(item, Prefix):
                yield item
                continue
            meta = metas.get(item.key)
            yield Entry(keys.logical_key(item.key), item.key, item.size, item, meta)

    def with_details(self, entries: list[Entry]) -> list[Entry]:
        """The same entries with their metadata read (one HEAD each, in parallel)."""
        metas = self._heads([e.info for e in entries])
        return [
            Entry(e.key, e.stored_key, e.stored_size, e.info, metas.get(e.stored_key))
            for e in entries
        ]

    def _heads(self, objects: list[ObjectInfo]) -> dict[str, StoredMeta]:
        def head(obj: ObjectInfo) -> tuple[str, StoredMeta | None]:
            info = self.storage.head(obj.key)
            return obj.key, parse_metadata(obj.key, info.metadata or {}) if info else None

        with ThreadPoolExecutor(max_workers=16) as pool:
            return {k: m for k, m in pool.map(head, objects) if m is not None}

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
                if self._remaining_deltas(space, set()):
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
        """Delete stored objects, then the references of ``spaces`` and of the DeltaSpaces the
        objects were in, where no remaining delta needs them."""
        gone = [k for k in physical if not keys.is_reference(k)]
        for key in gone:
            if not dryrun:
                self.storage.delete(key)
        affected = set(spaces or ()) | {keys.deltaspace_of(k) for k in gone}
        removed = set(gone)
        for space in sorted(affected):
            for ref in self._unneeded_references(space, removed):
                if not dryrun:
                    self._delete_reference(ref, space, removed)
                gone.append(ref.key)
        return gone

    def references(self, space: str) -> list[ObjectInfo]:
        """Every reference of a DeltaSpace: ``reference.bin`` and the content-addressed ones."""
        found = [
            item
            for item in self.storage.list_objects(keys.references_prefix(space))
            if isinstance(item, ObjectInfo) and keys.is_reference(item.key)
        ]
        main = self.storage.head(keys.reference_key(space))
        return ([main] if main is not None else []) + found

    def _delete_reference(self, ref: ObjectInfo, space: str, removed: set[str]) -> None:
        """Delete a reference that no delta needs. DeltaStore, the only user, does it with a
        verified copy kept in hand, since another machine may store a delta against it at that
        very moment; a plain catalog (no reference cache) can only delete it."""
        self.storage.delete(ref.key)

    def _remaining_deltas(self, space: str, removed: set[str]) -> list[ObjectInfo]:
        prefix = f"{space}/" if space else ""
        return [
            item
            for item in self.storage.list_objects(prefix, delimiter="/")
            if isinstance(item, ObjectInfo) and keys.is_delta(item.key) and item.key not in removed
        ]

    def _unneeded_references(self, space: str, removed: set[str]) -> list[ObjectInfo]:
        """The references of a DeltaSpace that no remaining delta was made against.

        With no delta left, all of them; with one reference, none (every delta may need it).
        With several (rotation), each remaining delta's metadata says which one it needs (a
        HEAD each); a reference whose SHA-256 is unknown, or a delta that does not say, keeps
        everything: when unsure, nothing is deleted.
        """
        deltas = self._remaining_deltas(space, removed)
        refs = self.references(space)
        if not deltas:
            return refs
        if len(refs) <= 1:
            return []
        needed = self._needed_shas(deltas)
        if needed is None:
            return []
        return [r for r in refs if (sha := reference_sha256(r)) is not None and sha not in needed]

    def _needed_shas(self, deltas: list[ObjectInfo]) -> set[str] | None:
        """The SHA-256 of every reference these deltas were made against; None if one of
        them does not say."""
        metas = self._heads(deltas)
        if len(metas) < len(deltas):
            return None  # a delta vanished or could not be read between LIST and HEAD
        needed: set[str] = set()
        for meta in metas.values():
            if meta.ref_sha256 is None:
                return None
            needed.add(meta.ref_sha256)
        return needed

    def _reference_needed(self, ref: ObjectInfo, space: str, removed: set[str]) -> bool:
        """After ``ref`` was deleted: whether a remaining delta (maybe one another writer just
        stored) needs it, so that it must go back."""
        deltas = self._remaining_deltas(space, removed)
        if not deltas:
            return False
        sha = reference_sha256(ref)
        needed = self._needed_shas(deltas)
        return needed is None or sha is None or sha in needed


def reference_sha256(ref: ObjectInfo) -> str | None:
    """A reference's SHA-256: in its key when content-addressed, else in its metadata."""
    sha = keys.addressed_sha256(ref.key)
    if sha is None and ref.metadata is not None:
        recorded = parse_metadata(ref.key, ref.metadata).file_sha256
        sha = recorded if recorded is not None and len(recorded) == 64 else None
    return sha
