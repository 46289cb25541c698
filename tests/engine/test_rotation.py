"""Reference rotation on both backends: a drifting release series gets new references, every
version reads back bit-exact from a cold cache, and a new process takes up where the last one
stopped (the state is in the deltas' metadata)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from dgagent.engine import keys, rotation
from dgagent.engine.codec import Xdelta3
from dgagent.engine.metadata import Kind, parse_metadata
from dgagent.engine.rotation import Cost, Decision
from dgagent.engine.store import DeltaStore, Entry
from dgagent.settings import EngineSettings
from dgagent.storage import ObjectInfo, Storage

BLOCK = 4096
BLOCKS = 64
CHANGED_PER_VERSION = 4


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def drifting_series(folder: Path, count: int, *, name: str = "app") -> list[Path]:
    """Versions of a 256 KiB file, each rewriting 4 more of its 64 blocks than the last: the
    delta against the first version grows by ~16 KiB a version, against the previous one
    stays ~16 KiB (a long-lived project's release series, in small)."""
    rng = random.Random(name)
    blocks = [rng.randbytes(BLOCK) for _ in range(BLOCKS)]
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for v in range(count):
        for i in range(v * CHANGED_PER_VERSION, (v + 1) * CHANGED_PER_VERSION):
            blocks[i % BLOCKS] = rng.randbytes(BLOCK)
        path = folder / f"{name}-1.{v}.zip"
        path.write_bytes(b"".join(blocks))
        files.append(path)
    return files


def fresh_store(storage: Storage, tmp_path: Path, name: str) -> DeltaStore:
    """Another process's view: its own cache (cold) and no memory of the DeltaSpaces."""
    return DeltaStore(storage, settings=EngineSettings(cache_dir=tmp_path / name / "refs"))


def stored_bytes(storage: Storage, prefix: str) -> int:
    return sum(o.size for o in storage.list_objects(prefix) if isinstance(o, ObjectInfo))


def test_the_rule() -> None:
    """Above the max ratio, or once the deltas paid one file size above the first: rotate."""
    cost = Cost("r")
    assert rotation.decide("rotate", cost, 100, 1000, 0.5)[0] is Decision.DELTA
    cost = cost.after(100).after(300).after(400)  # paid 200 + 300
    assert (cost.first, cost.paid) == (100, 500)
    assert rotation.decide("rotate", cost, 500, 1000, 0.5)[0] is Decision.DELTA  # 500+400<1000
    assert rotation.decide("rotate", cost, 700, 1000, 0.5)[0] is Decision.NEW_REFERENCE
    assert rotation.decide("rotate", cost, 600, 1000, 0.5)[0] is Decision.NEW_REFERENCE
    decision, why = rotation.decide("single", cost, 600, 1000, 0.5)
    assert decision is Decision.WHOLE and "0.600" in why
    assert rotation.decide("single", cost, None, 1000, 0.5)[0] is Decision.WHOLE
    assert Cost.parse("r", cost.encode()) == cost
    assert Cost.parse("r", "garbage") == Cost("r")


def test_a_drifting_series_rotates_and_reads_back_from_a_cold_cache(
    backend: tuple[Storage, str], tmp_path: Path
) -> None:
    storage, _ = backend
    files = drifting_series(tmp_path / "src", 14)
    writer = fresh_store(storage, tmp_path, "writer")
    results = [writer.put(f, f"rel/{f.name}") for f in files]

    assert all(r.kind is Kind.DELTA for r in results)
    made = [r for r in results if r.why.startswith("new reference")]
    assert made[0] is results[0] and len(made) >= 2, [r.why for r in results]
    rotated = [o.key for o in storage.list_objects("rel/.dg/refs/") if isinstance(o, ObjectInfo)]
    assert len(rotated) == len(made) - 1
    # Every delta is against a whole-file reference of its DeltaSpace, named in its metadata.
    for f, r in zip(files, results, strict=True):
        head = storage.head(r.stored_key)
        assert head is not None
        meta = parse_metadata(r.stored_key, head.metadata or {})
        assert meta.ref_key is not None and storage.head(meta.ref_key) is not None
        assert meta.why == r.why and meta.cost is not None
        assert meta.file_sha256 == sha(f)
    reader = fresh_store(storage, tmp_path, "reader")
    for f in files:
        out = tmp_path / "out" / f.name
        out.parent.mkdir(parents=True, exist_ok=True)
        assert reader.get(f"rel/{f.name}", out).sha256 == sha(f)
    listed = {e.key for e in reader.list_files("rel/", recursive=True) if isinstance(e, Entry)}
    assert listed == {f"rel/{f.name}" for f in files}


def test_rotation_stores_less_than_one_sticky_reference(
    backend: tuple[Storage, str], tmp_path: Path
) -> None:
    storage, _ = backend
    files = drifting_series(tmp_path / "src", 16)
    store = fresh_store(storage, tmp_path, "s")
    for f in files:
        store.put(f, f"rotate/{f.name}")
        store.put(f, f"single/{f.name}", policy="single")
    rotate, single = stored_bytes(storage, "rotate/"), stored_bytes(storage, "single/")
    original = sum(f.stat().st_size for f in files)
    assert rotate < 0.8 * single < original, (rotate, single, original)
    assert not [o for o in storage.list_objects("single/.dg/") if isinstance(o, ObjectInfo)]


def test_a_new_process_takes_up_the_rotation_state(
    backend: tuple[Storage, str], tmp_path: Path
) -> None:
    """Storing a series one version per process gives the same decisions as one process."""
    storage, _ = backend
    files = drifting_series(tmp_path / "src", 12)
    one = fresh_store(storage, tmp_path, "one")
    together = [one.put(f, f"a/{f.name}").why for f in files]
    apart = [
        fresh_store(storage, tmp_path, f"p{n}").put(f, f"b/{f.name}").why
        for n, f in enumerate(files)
    ]
    assert apart == together
    assert stored_bytes(storage, "a/") == pytest.approx(stored_bytes(storage, "b/"), rel=0.02)


def test_each_lineage_of_a_folder_keeps_its_own_reference(
    backend: tuple[Storage, str], tmp_path: Path
) -> None:
    """An app and its docs in one folder: neither makes the other's versions references."""
    storage, _ = backend
    apps = drifting_series(tmp_path / "app", 4, name="app")
    docs = drifting_series(tmp_path / "docs", 4, name="docs")
    store = fresh_store(storage, tmp_path, "s")
    whys = []
    for app, doc in zip(apps, docs, strict=True):
        whys.append(store.put(app, f"rel/{app.name}").why)
        whys.append(store.put(doc, f"rel/{doc.name}").why)
    made = [w for w in whys if w.startswith("new reference")]
    assert len(made) == 2, whys  # the first app, and the first docs (its delta was too large)
    reader = fresh_store(storage, tmp_path, "reader")
    for f in apps + docs:
        out = tmp_path / "out" / f.name
        out.parent.mkdir(parents=True, exist_ok=True)
        assert reader.get(f"rel/{f.name}", out).sha256 == sha(f)


def test_deleting_the_versions_of_an_old_reference_deletes_it(
    backend: tuple[Storage, str], tmp_path: Path
) -> None:
    storage, _ = backend
    files = drifting_series(tmp_path / "src", 14)
    store = fresh_store(storage, tmp_path, "s")
    results = [store.put(f, f"rel/{f.name}") for f in files]
    second = next(i for i, r in enumerate(results) if i and r.why.startswith("new reference"))
    old = keys.reference_key("rel")
    assert storage.head(old) is not None
    # Deleting some of the old reference's versions keeps it; deleting the last one drops it.
    store.delete([f"rel/{f.name}" for f in files[1:second]])
    assert storage.head(old) is not None
    gone = store.delete([f"rel/{files[0].name}"])
    assert old in gone and storage.head(old) is None
    reader = fresh_store(storage, tmp_path, "reader")
    for f in files[second:]:
        out = tmp_path / "out" / f.name
        out.parent.mkdir(parents=True, exist_ok=True)
        assert reader.get(f"rel/{f.name}", out).sha256 == sha(f)
    # The last file takes every remaining reference with it.
    store.delete([f"rel/{f.name}" for f in files[second:]])
    assert [o for o in storage.list_objects("rel/") if isinstance(o, ObjectInfo)] == []


def test_an_encode_past_the_limit_is_stopped(tmp_path: Path) -> None:
    rng = random.Random(5)
    ref, target = tmp_path / "ref", tmp_path / "target"
    ref.write_bytes(rng.randbytes(2 * 1024 * 1024))
    target.write_bytes(rng.randbytes(2 * 1024 * 1024))
    codec = Xdelta3()
    out = tmp_path / "out.delta"
    assert codec.encode(ref, target, out, limit=100_000) is False
    assert out.stat().st_size <= 100_000
    assert codec.encode(ref, target, out, limit=4 * 1024 * 1024) is True
    assert out.stat().st_size > 2 * 1024 * 1024  # the whole (useless) delta, when allowed
