"""The public Python API: ``dgagent.Client`` stores, reads, lists and checks files in a store.

A Client is made from a store URL (``s3://bucket/prefix/`` or ``file:///path/``), and every
method then takes keys relative to it; any method also takes a full store URL instead of a key.
It is the engine the CLI and the agent use (``open_store`` is the one place a DeltaStore is
assembled), so files written here are read by ``dg-agent`` and DeltaGlider 6.2.0, and back.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "app-1.0.zip").write_bytes(b"PK version one")
14
>>> client = Client(f"file://{root}/store/", cache_dir=root / "cache")
>>> client.put(root / "app-1.0.zip", "releases/").key.endswith("releases/app-1.0.zip")
True
>>> client.get("releases/app-1.0.zip", root / "back.zip").size
14

Errors are those of ``dgagent.errors`` (each also a builtin: NotFoundError is a
FileNotFoundError, IntegrityError a ValueError, ...).
"""

from __future__ import annotations

import builtins
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import BinaryIO

from dgagent.engine import keys
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.change import LocalFile, differs
from dgagent.engine.prune import Pruner, PruneReport, Retention, parse_duration
from dgagent.engine.results import Entry, GetResult, PutResult, Summary
from dgagent.engine.store import DeltaStore
from dgagent.errors import ConfigError, NotFoundError
from dgagent.paths import folder_prefix, upload_key, walk
from dgagent.settings import EngineSettings, check_codec, check_policy, check_ratio, from_env
from dgagent.storage import Location, S3Options, Storage, is_store_url, parse_location

StrPath = str | PathLike[str]


def open_store(
    storage: Storage,
    *,
    settings: EngineSettings,
    cache: ReferenceCache | None = None,
    on_head: Callable[[int], None] | None = None,
) -> DeltaStore:
    """The one place a DeltaStore is assembled (CLI, agent, benchmarks and Client).

    ``cache`` is shared by every store of one process (several caches over one folder would each
    enforce the size cap alone); None makes one from ``settings``. ``on_head`` hears how many
    objects' metadata a listing reads from the store (the CLI draws progress with it).
    """
    store = DeltaStore(storage, settings=settings, cache=cache)
    store.on_head = on_head
    return store


@dataclass(frozen=True)
class SyncResult:
    """What ``Client.sync`` did: the files it stored, and how many were already up to date."""

    stored: list[PutResult] = field(default_factory=list)
    unchanged: int = 0


class Client:
    """Put, get, list, stat, delete, verify and sync logical files of a store.

    ``url``: the store (and prefix) that keys are relative to; without it every call names a
    full URL. S3 options are the CLI's (``endpoint_url``, ``profile``, ``region``,
    ``checksum_when_required``; ``s3`` for the rest of ``S3Options``); engine settings come
    from ``settings`` (default: the DG_* environment, as for the CLI), with ``max_ratio``,
    ``codec``, ``reference_policy`` and ``cache_dir`` (the reference cache's folder) overriding
    them.

    >>> Client("ftp://example.com/")
    Traceback (most recent call last):
    ...
    dgagent.errors.ConfigError: 'ftp://example.com/' is not a store URL; use s3://bucket/prefix/ \
or file:///path/
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        checksum_when_required: bool = False,
        settings: EngineSettings | None = None,
        max_ratio: float | None = None,
        codec: str | None = None,
        reference_policy: str | None = None,
        cache_dir: StrPath | None = None,
        s3: S3Options | None = None,
    ) -> None:
        base = s3 or S3Options()
        self.s3 = replace(
            base,
            endpoint_url=endpoint_url or base.endpoint_url,
            profile=profile or base.profile,
            region=region or base.region,
            checksum_when_required=checksum_when_required or base.checksum_when_required,
        )
        settings = settings or from_env()
        if max_ratio is not None:
            settings = replace(settings, max_ratio=check_ratio(max_ratio, "max_ratio"))
        if codec is not None:
            settings = replace(settings, codec=check_codec(codec, "codec"))
        if reference_policy is not None:
            policy = check_policy(reference_policy, "reference_policy")
            settings = replace(settings, reference_policy=policy)
        if cache_dir is not None:
            settings = replace(settings, cache_dir=Path(cache_dir))
        self.settings = settings
        self.cache = ReferenceCache(settings.cache_dir, max_bytes=settings.cache_max_bytes)
        self._stores: dict[str, DeltaStore] = {}
        self._base: Location | None = None
        if url is not None:
            location = self._parse(url)
            self._base = Location(location.storage, folder_prefix(location.key))

    # ---------------------------------------------------------------- naming

    def _parse(self, url: str) -> Location:
        # One boto3 client per endpoint however many URLs are named (each costs ~12 MB).
        return parse_location(url, self.s3, shared_client=True)

    def locate(self, where: str) -> tuple[DeltaStore, str]:
        """The store and key a key (relative to the Client's URL) or a full URL names."""
        if is_store_url(where):
            location = self._parse(where)
        elif self._base is not None:
            location = Location(self._base.storage, self._base.key + where.lstrip("/"))
        else:
            raise ConfigError(
                f"{where!r} is a key but this Client has no store URL; pass a full URL "
                "(s3://bucket/key or file:///path) or make it with Client(url)"
            )
        root = location.storage.url
        if root not in self._stores:
            self._stores[root] = open_store(
                location.storage, settings=self.settings, cache=self.cache
            )
        return self._stores[root], location.key

    # ---------------------------------------------------------------- files

    def put(
        self,
        source: StrPath,
        dest: str = "",
        *,
        delta: bool = True,
        max_ratio: float | None = None,
    ) -> PutResult:
        """Store a local file. ``dest`` ending in '/' (or empty: the Client's prefix) is a
        folder and the file keeps its name; otherwise ``dest`` is the file's key.
        ``delta=False`` stores it whole."""
        path = Path(source)
        store, key = self.locate(dest)
        key = upload_key(path, Location(store.storage, key))
        return store.put(path, key, delta=delta, max_ratio=max_ratio)

    def get(self, key: str, dest: StrPath | BinaryIO) -> GetResult:
        """Rebuild a file into ``dest``: a path (a folder receives the file under its name), or
        a binary stream. Nothing is written anywhere before its SHA-256 checks out."""
        store, physical = self.locate(key)
        if isinstance(dest, str | PathLike):
            path = Path(dest)
            if path.is_dir():
                path = path / keys.logical_key(physical).rpartition("/")[2]
            return store.get(physical, path)
        # A stream cannot take back what was written: rebuild into a temp file first.
        with tempfile.TemporaryDirectory(prefix="dg-get-") as work:
            rebuilt = Path(work) / "file"
            result = store.get(physical, rebuilt)
            with rebuilt.open("rb") as f:
                shutil.copyfileobj(f, dest)
        return result

    def list(self, prefix: str = "", *, recursive: bool = True) -> builtins.list[Entry]:
        """The logical files under a folder (``.delta`` and references hidden), with their
        metadata: ``original_size``, ``stored_size``, ``stored_as``, ``why``, ..."""
        store, key = self.locate(prefix)
        return store.listing(folder_prefix(key), recursive=recursive).files

    def stat(self, key: str) -> Entry:
        """One stored file, as ``list`` shows it; NotFoundError if it is not there."""
        store, physical = self.locate(key)
        obj, meta = store.resolve(physical)
        return Entry(keys.logical_key(obj.key), obj.key, obj.size, obj, meta)

    def delete(self, *names: str) -> builtins.list[str]:
        """Delete files; a DeltaSpace's reference goes with the last delta that needs it.
        Returns the stored keys deleted."""
        deleted: builtins.list[str] = []
        by_store: dict[int, tuple[DeltaStore, builtins.list[str]]] = {}
        for name in names:
            store, key = self.locate(name)
            by_store.setdefault(id(store), (store, []))[1].append(key)
        for store, batch in by_store.values():
            deleted += store.delete(batch)
        return deleted

    def verify(self, key: str) -> GetResult:
        """Rebuild a file from what is stored (the reference too, not the cache) and check its
        SHA-256; raises IntegrityError when it does not match."""
        store, physical = self.locate(key)
        return store.verify(physical)

    def stats(self, prefix: str = "") -> Summary:
        """Files, original and stored bytes under a folder: stored bytes are every object the
        store holds there, references included, each once (as ``dg-agent stats`` counts)."""
        store, key = self.locate(prefix)
        return store.listing(folder_prefix(key), recursive=True).summary()

    def prune(
        self,
        prefix: str = "",
        *,
        keep_last: int | None = None,
        older_than: str | float | None = None,
        recursive: bool = True,
        dryrun: bool = False,
    ) -> PruneReport:
        """Delete old versions under a folder as ``dg-agent prune`` does: each release line
        keeps its newest ``keep_last`` and those not older than ``older_than`` (seconds, or a
        duration such as ``"90d"``); references no kept file needs are deleted or retired.
        Neither rule: no file is deleted, only space references hold for nothing comes back."""
        store, key = self.locate(prefix)
        seconds = parse_duration(older_than) if isinstance(older_than, str) else older_than
        retention = Retention(keep_last=keep_last, older_than=seconds)
        return Pruner(store, retention).run(folder_prefix(key), recursive=recursive, dryrun=dryrun)

    def sync(self, folder: StrPath, dest: str = "", *, delta: bool = True) -> SyncResult:
        """Store the files of a local folder that are new or changed (as ``dg-agent sync``:
        size, then mtime within 1 s, then SHA-256), in release order; nothing is deleted."""
        root = Path(folder)
        if not root.is_dir():
            raise NotFoundError(f"{root} is not a folder; sync copies folders (put stores one)")
        store, key = self.locate(dest)
        prefix = folder_prefix(key)
        remote = {e.key[len(prefix) :]: e for e in store.listing(prefix, recursive=True).files}
        local = [(rel, path, path.stat()) for rel, path in walk(root)]
        todo = [
            (st.st_mtime, rel, path)
            for rel, path, st in local
            if rel not in remote
            or differs(LocalFile(path, st.st_size, st.st_mtime), remote[rel], size_only=False)
        ]
        # One at a time in mtime order: each version may become the reference of the next.
        stored = [
            store.put(path, prefix + rel, delta=delta, replacing=rel in remote)
            for _, rel, path in sorted(todo)
        ]
        return SyncResult(stored, len(local) - len(todo))
