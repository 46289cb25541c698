"""What the agent does with files already in the store: browse, verify, download, restore,
delete. The rule that ties a stored file back to a watched folder (which watch owns a URL) lives
here, once.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dgagent.agent.index import Index
from dgagent.agent.retention import still_in_folder
from dgagent.agent.workers import Target
from dgagent.client import open_store
from dgagent.engine import keys
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.catalog import Listing
from dgagent.engine.prune import Pruner, PruneReport, Retention
from dgagent.engine.store import DeltaStore, Entry
from dgagent.paths import folder_prefix, local_path_for
from dgagent.rpc import records
from dgagent.rpc.protocol import NotFound
from dgagent.settings import EngineSettings
from dgagent.storage import Prefix, S3Options, parse_location


def entry_record(entry: Entry) -> records.BrowseEntry:
    original = entry.original_size
    meta = entry.meta
    return records.BrowseEntry(
        key=entry.key,
        name=posixpath.basename(entry.key),
        stored_key=entry.stored_key,
        kind=entry.kind.value if entry.kind else None,
        stored_as=entry.stored_as,
        codec=entry.codec,
        original_size=original,
        stored_size=entry.stored_size,
        ratio=records.ratio(entry.stored_size, original),
        sha256=meta.file_sha256 if meta else None,
        tool=meta.tool if meta else None,
        last_modified=entry.info.last_modified.isoformat(),
        why=entry.why,
        reference=entry.reference,
    )


@dataclass(frozen=True)
class Owner:
    """The watch a stored file belongs to, and the file's path in its folder."""

    target: Target
    relative: str

    @property
    def local_path(self) -> Path:
        return local_path_for(self.target.watch.dir, self.relative)


class StoredFiles:
    """The store's files as the agent sees them; one DeltaStore per store root, kept."""

    def __init__(
        self,
        *,
        s3: Callable[[], S3Options],
        settings: EngineSettings,
        cache: ReferenceCache,
        targets: Callable[[], dict[str, Target]],
        index: Callable[[], Index],
    ) -> None:
        self._s3, self._settings, self._cache = s3, settings, cache
        self._targets, self._index = targets, index
        self._stores: dict[str, DeltaStore] = {}

    def store_for(self, url: str) -> tuple[DeltaStore, str]:
        location = parse_location(url, self._s3())
        root = location.storage.url
        if root not in self._stores:
            self._stores[root] = open_store(
                location.storage, settings=self._settings, cache=self._cache
            )
        return self._stores[root], location.key

    def owner(self, store: DeltaStore, key: str) -> Owner | None:
        """The watch whose URL holds ``key`` of ``store``; None when no watch's does."""
        for target in self._targets().values():
            if target.store.storage.url == store.storage.url and key.startswith(target.prefix):
                return Owner(target, keys.logical_key(key)[len(target.prefix) :])
        return None

    def listing(self, url: str, *, recursive: bool, offset: int, limit: int) -> records.Listing:
        store, key = self.store_for(url)
        prefix = folder_prefix(key)
        found = store.listing(prefix, recursive=recursive, details=False)
        rows = found.rows
        page = rows[offset : offset + limit]
        # This page's metadata is read (HEADs where the cache has none); the other pages' only
        # from the cache, so that a first look at a huge folder costs one page of HEADs. The
        # summary then covers the whole folder as far as it is known, and says so.
        shown = {e.key for e in page if isinstance(e, Entry)}
        detailed = {
            e.key: e for e in store.with_details([e for e in found.files if e.key in shown])
        }
        rest = store.with_details([e for e in found.files if e.key not in shown], cached_only=True)
        summary = Listing([*detailed.values(), *rest], found.objects).summary()
        refs = [o for o in found.objects if keys.is_reference(o.key)]
        return records.Listing(
            url=f"{store.storage.url}/{prefix}",
            prefixes=[r.key for r in page if isinstance(r, Prefix)],
            files=[entry_record(detailed[e.key]) for e in page if isinstance(e, Entry)],
            reference_size=sum(r.size for r in refs) if refs else None,
            summary=records.Summary(**summary.record()),  # type: ignore[arg-type]
            total=len(rows),
            offset=offset,
        )

    def verify(self, url: str) -> records.Verified:
        store, key = self.store_for(url)
        got = store.verify(key)
        return records.Verified(store.url(got.key), True, got.sha256, got.size, got.kind.value)

    def download(self, url: str, dest: Path) -> records.Written:
        store, key = self.store_for(url)
        if dest.is_dir():
            dest = dest / posixpath.basename(keys.logical_key(key))
        return _write_out(store, key, dest.resolve())

    def restore(self, url: str) -> records.Written:
        store, key = self.store_for(url)
        owner = self.owner(store, key)
        if owner is None:
            raise NotFound(f"{url} is not under a watched folder's URL; use download")
        return _write_out(store, key, owner.local_path)

    def delete(self, url: str, *, rescan: Callable[[str], None]) -> records.Deleted:
        """Delete a stored file; its watch forgets it, and a local copy is stored again."""
        store, key = self.store_for(url)
        deleted = store.delete([key])
        warning = None
        owner = self.owner(store, key)
        if owner is not None:
            name = owner.target.watch.name
            self._index().forget(name, owner.relative)
            if (owner.target.watch.dir / owner.relative).exists():
                warning = "the file still exists in the watched folder and will be stored again"
                rescan(name)
        return records.Deleted([store.url(k) for k in deleted], warning)

    def prune(self, url: str, retention: Retention, *, dryrun: bool) -> records.Pruned:
        """Prune the folder ``url`` and every one under it. Under a watched URL, versions whose
        file is still in the watched folder stay unless the watch says ``prune_present``."""
        store, key = self.store_for(url)
        prefix = folder_prefix(key)
        owner = self.owner(store, prefix)
        protect = None
        if owner is not None and not owner.target.watch.prune_present:
            protect = still_in_folder(owner.target.watch, owner.target.prefix)
        pruner = Pruner(store, retention, protect=protect)
        report = pruner.run(prefix, recursive=True, dryrun=dryrun)
        return pruned_record(f"{store.storage.url}/{prefix}", report, store.url)


def pruned_record(url: str, report: PruneReport, name: Callable[[str], str]) -> records.Pruned:
    return records.Pruned(
        url=url,
        dryrun=report.dryrun,
        rule=report.retention.describe(),
        deleted=[name(e.key) for e in report.deleted],
        kept=len(report.kept),
        references_deleted=[name(r.key) for r in report.references],
        retired=len(report.retired),
        reencoded=sum(len(r.files) for r in report.retired),
        stored_before=report.stored_before,
        stored_after=report.stored_after,
        freed=report.freed,
        notes=list(report.notes),
    )


def _write_out(store: DeltaStore, key: str, dest: Path) -> records.Written:
    dest.parent.mkdir(parents=True, exist_ok=True)
    got = store.get(key, dest)
    mtime = got.meta.mtime
    if mtime is not None:
        os.utime(dest, (mtime, mtime))
    return records.Written(store.url(got.key), str(dest), got.sha256, got.size, got.kind.value)
