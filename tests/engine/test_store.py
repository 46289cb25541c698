"""The delta store on both backends: round trips, format decisions, races and corruption."""

from __future__ import annotations

import hashlib
import multiprocessing
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from dgagent.engine import keys
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.metadata import Kind, parse_metadata
from dgagent.engine.store import DeltaStore, Entry
from dgagent.errors import DgError, IntegrityError, NotFoundError, ReservedNameError
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage, ObjectInfo, S3Options, S3Storage, Storage
from tests import artifacts

Maker = Callable[[Path, dict[str, bytes]], Path]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def series(tmp_path: Path, suffix: str, maker: Maker, count: int = 3) -> list[Path]:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    return [maker(folder / f"app-1.{v}{suffix}", artifacts.source_tree(v)) for v in range(count)]


MAKERS: dict[str, tuple[str, Maker]] = {
    "zip": (".zip", artifacts.write_zip),
    "jar": (".jar", artifacts.write_jar),
    "tar": (".tar", artifacts.write_tar),
}
COMPRESSED: dict[str, tuple[str, Maker]] = {
    "gzip9": (".tar.gz", artifacts.write_gzip9_tarball),
    "npm-tgz": (".tgz", artifacts.write_npm_tgz),
}


@pytest.mark.parametrize("family", sorted(MAKERS))
def test_series_round_trips_bit_exact(store: DeltaStore, tmp_path: Path, family: str) -> None:
    suffix, maker = MAKERS[family]
    files = series(tmp_path, suffix, maker)
    results = [store.put(f, f"rel/{f.name}") for f in files]
    assert results[0].reference_size == files[0].stat().st_size
    assert store.storage.head("rel/reference.bin") is not None
    for f, result in zip(files, results, strict=True):
        assert result.kind is Kind.DELTA
        out = tmp_path / "out" / f.name
        out.parent.mkdir(exist_ok=True)
        got = store.get(f"rel/{f.name}", out)
        assert sha(out) == sha(f) == got.sha256
    # later versions are small deltas, read through the cache
    assert all(r.stored_size < 0.2 * r.original_size for r in results[1:])
    assert results[2].cache_hit is True


@pytest.mark.parametrize("family", sorted(COMPRESSED))
def test_compressed_series_round_trip_and_never_become_references(
    store: DeltaStore, tmp_path: Path, family: str
) -> None:
    """gzip data as a reference would make every delta unreadable by DeltaGlider's decoder."""
    suffix, maker = COMPRESSED[family]
    files = series(tmp_path, suffix, maker)
    for f in files:
        assert store.put(f, f"rel/{f.name}").kind is Kind.DIRECT
        out = tmp_path / f"out-{f.name}"
        store.get(f"rel/{f.name}", out)
        assert sha(out) == sha(f)
    assert store.storage.head("rel/reference.bin") is None


def test_first_file_is_reference_plus_zero_diff(store: DeltaStore, tmp_path: Path) -> None:
    first = series(tmp_path, ".zip", artifacts.write_zip, 1)[0]
    result = store.put(first, "rel/app.zip")
    head = store.storage.head("rel/app.zip.delta")
    assert head is not None and head.metadata is not None
    meta = parse_metadata(head.key, head.metadata)
    assert meta.zero_diff and meta.ref_sha256 == meta.file_sha256 == result.sha256
    assert result.stored_size == head.size < 200


def test_unrelated_file_falls_back_to_direct(store: DeltaStore, tmp_path: Path) -> None:
    first = series(tmp_path, ".zip", artifacts.write_zip, 1)[0]
    store.put(first, "rel/a.zip")
    noise = tmp_path / "noise.zip"
    noise.write_bytes(random.Random(3).randbytes(200_000))
    result = store.put(noise, "rel/noise.zip", policy="single")
    assert result.kind is Kind.DIRECT and result.stored_size == 200_000
    assert store.storage.head("rel/noise.zip.delta") is None
    out = tmp_path / "noise.out"
    assert store.get("rel/noise.zip", out).kind is Kind.DIRECT
    assert sha(out) == sha(noise)


def test_max_ratio_zero_stores_later_versions_direct(store: DeltaStore, tmp_path: Path) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    store.put(files[0], "rel/a.zip")
    assert store.put(files[1], "rel/b.zip", max_ratio=0.0).kind is Kind.DIRECT


def test_non_eligible_and_empty_files_are_direct(store: DeltaStore, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("release notes\n")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    assert store.put(text, "rel/notes.txt").kind is Kind.DIRECT
    assert store.put(empty, "rel/empty.zip").kind is Kind.DIRECT
    out = tmp_path / "empty.out"
    store.get("rel/empty.zip", out)
    assert out.read_bytes() == b""
    assert store.storage.head("rel/reference.bin") is None


def test_non_ascii_names(store: DeltaStore, tmp_path: Path) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    names = ["rel/café-1.0.zip", "rel/日本語-1.1.zip"]
    for f, name in zip(files, names, strict=True):
        store.put(f, name)
    head = store.storage.head("rel/日本語-1.1.zip.delta")
    assert head is not None and head.metadata is not None
    assert all(v.isascii() for v in head.metadata.values())
    assert parse_metadata(head.key, head.metadata).original_name == "日本語-1.1.zip"
    out = tmp_path / "x.zip"
    store.get(names[1], out)
    assert sha(out) == sha(files[1])


@pytest.mark.parametrize("name", ["reference.bin", "app.zip.delta"])
def test_reserved_names_are_refused(store: DeltaStore, tmp_path: Path, name: str) -> None:
    first = series(tmp_path, ".zip", artifacts.write_zip, 1)[0]
    store.put(first, "rel/app.zip")
    before = store.storage.head("rel/reference.bin")
    bad = tmp_path / name
    bad.write_bytes(b"not a reference")
    with pytest.raises(ReservedNameError, match="reserved"):
        store.put(bad, f"rel/{name}")
    after = store.storage.head("rel/reference.bin")
    assert before is not None and after is not None and before.etag == after.etag


def test_direct_upload_replaces_delta_of_same_name(store: DeltaStore, tmp_path: Path) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    store.put(files[0], "rel/a.zip")
    store.put(files[1], "rel/b.zip")
    store.put(files[1], "rel/b.zip", delta=False)
    assert store.storage.head("rel/b.zip.delta") is None
    listed = [e.key for e in store.list_files("rel/", recursive=True)]
    assert listed == ["rel/a.zip", "rel/b.zip"]


def test_corrupted_reference_fails_clearly_and_writes_nothing(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    for f in files:
        store.put(f, f"rel/{f.name}")
    ref = store.storage.head("rel/reference.bin")
    assert ref is not None and ref.metadata is not None
    damaged = tmp_path / "damaged.bin"
    data = bytearray(files[0].read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    store.storage.upload("rel/reference.bin", damaged, ref.metadata)
    fresh = DeltaStore(store.storage, settings=EngineSettings(cache_dir=tmp_path / "cache2"))
    out = tmp_path / "out.zip"
    with pytest.raises(IntegrityError, match=r"reference\.bin"):
        fresh.get(f"rel/{files[1].name}", out)
    assert not out.exists()
    assert list(tmp_path.glob("*.dg-part-*")) == []
    # A new version can still be kept: whole, since nothing can be diffed against that reference.
    (tmp_path / "newer").mkdir()
    newer = series(tmp_path / "newer", ".zip", artifacts.write_zip, 3)[2]
    result = fresh.put(newer, f"rel/{newer.name}")
    assert result.kind is Kind.DIRECT
    assert fresh.get(f"rel/{newer.name}", tmp_path / "newer.zip").sha256 == sha(newer)


def test_corrupted_delta_fails_clearly_and_writes_nothing(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    for f in files:
        store.put(f, f"rel/{f.name}")
    key = f"rel/{files[1].name}.delta"
    head = store.storage.head(key)
    assert head is not None and head.metadata is not None
    broken = tmp_path / "broken.delta"
    with broken.open("wb") as sink:
        store.storage.download(key, sink)
    data = bytearray(broken.read_bytes())
    data[len(data) // 2] ^= 0x55
    broken.write_bytes(bytes(data))
    store.storage.upload(key, broken, head.metadata)
    out = tmp_path / "out.zip"
    with pytest.raises(DgError):
        store.get(f"rel/{files[1].name}", out)
    assert not out.exists()


def test_corrupted_cache_entry_is_refetched(store: DeltaStore, tmp_path: Path) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    for f in files:
        store.put(f, f"rel/{f.name}")
    entries = list((store.cache.root / "refs").rglob("*"))
    cached = [p for p in entries if p.is_file()]
    assert len(cached) == 1
    cached[0].write_bytes(b"garbage")
    out = tmp_path / "out.zip"
    got = store.get(f"rel/{files[1].name}", out)
    assert got.cache_hit is False and sha(out) == sha(files[1])


def test_missing_object(store: DeltaStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        store.get("rel/nothing.zip", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_file_changing_during_upload_is_not_kept(store: DeltaStore, tmp_path: Path) -> None:
    source = tmp_path / "growing.txt"
    source.write_bytes(b"x" * 100_000)

    rewritten: list[bool] = []

    def rewrite(_: int) -> None:
        if not rewritten:  # a build tool rewrites the file once, mid-upload
            rewritten.append(True)
            with source.open("ab") as f:
                f.write(b"more")

    with pytest.raises(IntegrityError, match="changed while"):
        store.put(source, "rel/growing.txt", progress=rewrite)
    assert store.storage.head("rel/growing.txt") is None


def test_delete_keeps_reference_while_needed(store: DeltaStore, tmp_path: Path) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 3)
    for f in files:
        store.put(f, f"rel/{f.name}")
    assert store.delete([f"rel/{files[0].name}"]) == [f"rel/{files[0].name}.delta"]
    assert store.storage.head("rel/reference.bin") is not None
    out = tmp_path / "out.zip"
    store.get(f"rel/{files[2].name}", out)
    assert sha(out) == sha(files[2])
    gone = store.delete([f"rel/{f.name}" for f in files[1:]])
    assert "rel/reference.bin" in gone
    assert store.storage.head("rel/reference.bin") is None


def test_listing_hides_internal_objects(store: DeltaStore, tmp_path: Path) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    for f in files:
        store.put(f, f"rel/{f.name}")
        store.put(f, f"rel/sub/{f.name}")
    top = list(store.list_files("rel/", recursive=False))
    names = sorted(getattr(e, "key", "") for e in top)
    assert names == ["rel/app-1.0.zip", "rel/app-1.1.zip", "rel/sub/"]
    deep = [e for e in store.list_files("rel/", recursive=True) if isinstance(e, Entry)]
    assert {e.original_size for e in deep} == {f.stat().st_size for f in files}


# ---------------------------------------------------------------- races between processes


def _racer(
    where: tuple[str, str, S3Options | None],
    cache: str,
    source: str,
    key: str,
    barrier: multiprocessing.synchronize.Barrier,
) -> None:
    kind, where_, options = where
    storage: Storage = S3Storage(where_, options) if kind == "s3" else LocalStorage(Path(where_))
    engine = DeltaStore(storage, settings=EngineSettings(cache_dir=Path(cache)))
    barrier.wait()
    engine.put(Path(source), key)


def test_two_first_uploads_race_and_both_read_back(
    backend: tuple[Storage, str], tmp_path: Path, settings: EngineSettings
) -> None:
    storage, _ = backend
    kind, where, options = (
        ("s3", storage.bucket, storage.options)
        if isinstance(storage, S3Storage)
        else ("local", str(storage.root), None)  # type: ignore[attr-defined]
    )
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    ctx = multiprocessing.get_context("spawn")
    for trial in range(3):
        barrier = ctx.Barrier(2)
        procs = [
            ctx.Process(
                target=_racer,
                args=(
                    (kind, where, options),
                    str(tmp_path / f"cache{i}"),
                    str(f),
                    f"race{trial}/{f.name}",
                    barrier,
                ),
            )
            for i, f in enumerate(files)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        reader = DeltaStore(storage, settings=settings)
        for f in files:
            out = tmp_path / f"out-{trial}-{f.name}"
            reader.get(f"race{trial}/{f.name}", out)
            assert sha(out) == sha(f)


def test_reference_cache_is_shared_between_stores(
    backend: tuple[Storage, str], tmp_path: Path, settings: EngineSettings
) -> None:
    storage, _ = backend
    files = series(tmp_path, ".zip", artifacts.write_zip, 3)
    cache = ReferenceCache(settings.cache_dir)
    DeltaStore(storage, settings=settings, cache=cache).put(files[0], f"rel/{files[0].name}")
    second = DeltaStore(storage, settings=settings, cache=ReferenceCache(settings.cache_dir))
    assert second.put(files[1], f"rel/{files[1].name}").cache_hit is True
    assert second.cache.hits == 1 and second.cache.misses == 0
    assert keys.reference_key("rel") == "rel/reference.bin"


class _RacingStorage(LocalStorage):
    """A local store where another machine deletes (or replaces) the reference at the worst time:
    just after this machine encoded a delta against it, before the delta lands."""

    def __init__(self, root: Path, replacement: Path | None) -> None:
        super().__init__(root)
        self.replacement = replacement
        self.struck = False

    def upload(self, key: str, source: Path, metadata: Mapping[str, str], **kw: Any) -> None:
        if key.endswith(".delta") and not self.struck and self.head("rel/reference.bin"):
            self.struck = True
            self.delete("rel/reference.bin")
            if self.replacement is not None:
                other = {"dg-file-sha256": sha(self.replacement), "dg-note": "reference"}
                super().upload("rel/reference.bin", self.replacement, other)
        super().upload(key, source, metadata, **kw)


@pytest.mark.parametrize("replaced", [False, True])
def test_a_reference_deleted_during_a_put_never_leaves_an_orphan_delta(
    tmp_path: Path, settings: EngineSettings, replaced: bool
) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 3)
    plain = DeltaStore(LocalStorage(tmp_path / "store"), settings=settings)
    plain.put(files[0], f"rel/{files[0].name}")
    racing = _RacingStorage(tmp_path / "store", files[2] if replaced else None)
    result = DeltaStore(racing, settings=settings).put(files[1], f"rel/{files[1].name}")
    assert racing.struck
    # restored and kept as a delta, or (when another reference took its place) stored direct
    assert result.kind is (Kind.DIRECT if replaced else Kind.DELTA)
    out = tmp_path / "back.zip"
    fresh = DeltaStore(racing, settings=EngineSettings(cache_dir=tmp_path / "other-cache"))
    fresh.get(f"rel/{files[1].name}", out)
    assert sha(out) == sha(files[1])


class _LateWriterStorage(LocalStorage):
    """A local store where another machine stores a new version into a DeltaSpace at the worst
    time for a delete: after this machine found no delta left, just before the reference goes."""

    def __init__(self, root: Path, other: Callable[[], object]) -> None:
        super().__init__(root)
        self.other = other
        self.struck = False

    def delete(self, key: str) -> None:
        if keys.is_reference(key) and not self.struck:
            self.struck = True
            self.other()
        super().delete(key)


def test_a_delta_stored_while_its_reference_is_deleted_keeps_its_reference(
    tmp_path: Path, settings: EngineSettings
) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 3)
    root = tmp_path / "store"
    other_settings = EngineSettings(cache_dir=tmp_path / "other-machine")
    other = DeltaStore(LocalStorage(root), settings=other_settings)
    other.put(files[0], f"rel/{files[0].name}")  # the other machine knows the reference

    def late_put() -> object:
        return other.put(files[2], f"rel/{files[2].name}")

    racing = _LateWriterStorage(root, late_put)
    ours = DeltaStore(racing, settings=settings)
    gone = ours.delete([f"rel/{files[0].name}"])  # the DeltaSpace's last file, as far as we saw
    assert racing.struck and "rel/reference.bin" in gone
    assert racing.head("rel/reference.bin") is not None  # put back
    out = tmp_path / "back.zip"
    fresh = DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=tmp_path / "c3"))
    assert fresh.get(f"rel/{files[2].name}", out).sha256 == sha(files[2])
    # With no late writer the reference simply goes.
    fresh.delete([f"rel/{files[2].name}"])
    assert list(fresh.storage.list_objects("rel/")) == []


class _RewritingStorage(LocalStorage):
    """A local store during whose first look for a reference a build rewrites the file being
    stored: after it was hashed, before it would become the DeltaSpace's reference."""

    def __init__(self, root: Path, rewrite: Callable[[], object]) -> None:
        super().__init__(root)
        self.rewrite = rewrite
        self.struck = False

    def head(self, key: str) -> ObjectInfo | None:
        if keys.is_reference(key) and not self.struck:
            self.struck = True
            self.rewrite()
        return super().head(key)


def test_a_file_rewritten_as_it_becomes_the_reference_never_corrupts_the_deltaspace(
    tmp_path: Path, settings: EngineSettings
) -> None:
    """Found by the kill -9 burst scenario: the reference was uploaded from the file itself,
    so a rewrite after hashing left reference.bin with other bytes than its SHA-256 metadata,
    and every later delta in that DeltaSpace failed."""
    files = series(tmp_path, ".zip", artifacts.write_zip, 3)
    first = files[0]
    rewritten = first.read_bytes()[::-1]  # other bytes, same size

    racing = _RewritingStorage(tmp_path / "store", lambda: first.write_bytes(rewritten))
    store = DeltaStore(racing, settings=settings)
    with pytest.raises(IntegrityError, match="changed while it was being stored"):
        store.put(first, f"rel/{first.name}")
    assert racing.struck
    assert racing.head("rel/reference.bin") is None  # nothing half-made is left
    for f in [first, *files[1:]]:  # the build is done: everything stores and reads back
        store.put(f, f"rel/{f.name}")
    reader = DeltaStore(racing, settings=EngineSettings(cache_dir=tmp_path / "reader"))
    (tmp_path / "back").mkdir()
    for f in [first, *files[1:]]:
        assert reader.get(f"rel/{f.name}", tmp_path / "back" / f.name).sha256 == sha(f)


def test_a_new_reference_is_made_from_a_copy_aside_when_the_cache_cannot_take_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache's folder is unusable (here: a file): the first put still creates the
    reference, from a checked copy in the work folder, and the file reads back."""
    (tmp_path / "cache").write_bytes(b"not a directory")
    settings = EngineSettings(cache_dir=tmp_path / "cache" / "references")
    store = DeltaStore(LocalStorage(tmp_path / "store"), settings=settings)
    first = series(tmp_path, ".zip", artifacts.write_zip, 1)[0]
    result = store.put(first, f"rel/{first.name}")
    assert result.kind is Kind.DELTA and result.reference_size == first.stat().st_size
    assert "copying it aside" in caplog.text
    reader = DeltaStore(store.storage, settings=EngineSettings(cache_dir=tmp_path / "c2"))
    assert reader.get(f"rel/{first.name}", tmp_path / "back.zip").sha256 == sha(first)


def test_rm_of_a_reference_is_refused_while_deltas_need_it(
    store: DeltaStore, tmp_path: Path
) -> None:
    files = series(tmp_path, ".zip", artifacts.write_zip, 2)
    for f in files:
        store.put(f, f"rel/{f.name}")
    with pytest.raises(ReservedNameError, match="still needed"):
        store.delete(["rel/reference.bin"])
    assert store.storage.head("rel/reference.bin") is not None
    store.delete([f"rel/{f.name}" for f in files])
    assert list(store.storage.list_objects("rel/")) == []
