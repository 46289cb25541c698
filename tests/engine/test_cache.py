"""Tests of the reference cache, with real files, real locks and real processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from dgagent.engine.cache import CacheEntry, ReferenceCache
from dgagent.errors import CacheError, IntegrityError

REPO = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Fetcher:
    """A fetch that writes fixed bytes and counts its calls."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0

    def __call__(self, file: BinaryIO) -> None:
        self.calls += 1
        file.write(self.data)


def never_fetch(file: BinaryIO) -> None:
    raise AssertionError("fetch was called on what should have been a hit")


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def evict_in_subprocess(root: Path) -> int:
    code = (
        "import sys; from pathlib import Path; from dgagent.engine.cache import ReferenceCache; "
        "print(ReferenceCache(Path(sys.argv[1]), max_bytes=0).evict())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def put(cache: ReferenceCache, data: bytes, *, mtime: float | None = None) -> Path:
    with cache.reference(sha(data), Fetcher(data)) as entry:
        path = entry.path
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_miss_then_hit_fetches_once(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one hashing chunk
    fetch = Fetcher(data)
    with cache.reference(sha(data), fetch) as first:
        assert not first.hit
        assert first.path.read_bytes() == data
    with cache.reference(sha(data), fetch) as second:
        assert second.hit
        assert second.path == first.path
        assert second.path.read_bytes() == data
    assert fetch.calls == 1
    assert (cache.hits, cache.misses) == (1, 1)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (1, 1, 1, len(data))
    assert first.path == tmp_path / "refs" / sha(data)[:2] / sha(data)
    assert files_under(tmp_path / "tmp") == []


def test_corrupted_entry_is_fetched_again(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    data = b"reference bytes " * 1000
    fetch = Fetcher(data)
    with cache.reference(sha(data), fetch) as entry:
        path = entry.path
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"XXXX")
    with cache.reference(sha(data), fetch) as entry:
        assert not entry.hit
        assert entry.path.read_bytes() == data
    with cache.reference(sha(data), fetch) as entry:
        assert entry.hit
    assert fetch.calls == 2
    assert (cache.hits, cache.misses) == (1, 2)


def test_wrong_bytes_from_fetch_raise_and_leave_nothing(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    with (
        pytest.raises(IntegrityError, match=r"reference\.bin is corrupt or was replaced"),
        cache.reference(sha(b"expected"), Fetcher(b"something else")),
    ):
        pytest.fail("the block must not run for a reference that failed its check")
    assert files_under(tmp_path / "refs") == []
    assert files_under(tmp_path / "tmp") == []


def test_fetch_error_passes_through_and_leaves_no_temp(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    failure = ConnectionResetError("the store hung up")

    def fetch(file: BinaryIO) -> None:
        file.write(b"partial")
        raise failure

    with pytest.raises(ConnectionResetError) as caught, cache.reference(sha(b"x"), fetch):
        pass
    assert caught.value is failure
    assert files_under(tmp_path / "tmp") == []
    assert files_under(tmp_path / "refs") == []


def test_eviction_removes_least_recently_used_first(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path, max_bytes=250)
    a, b, c, d = (bytes([n]) * 100 for n in range(4))
    path_a = put(cache, a, mtime=1000)
    path_b = put(cache, b, mtime=2000)
    path_c = put(cache, c)  # 300 bytes: a, the oldest, goes
    assert not path_a.exists()
    assert path_b.exists() and path_c.exists()

    with cache.reference(sha(b), never_fetch):  # using b makes it the most recent
        pass
    os.utime(path_c, (3000, 3000))
    path_d = put(cache, d)
    assert not path_c.exists()
    assert path_b.exists() and path_d.exists()
    assert cache.stats().bytes <= 250


def test_evict_returns_bytes_freed(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    for n in range(3):
        put(cache, bytes([n]) * 100, mtime=1000 + n)
    assert ReferenceCache(tmp_path, max_bytes=150).evict() == 200
    assert cache.stats().entries == 1


def test_entry_in_use_is_not_evicted_by_this_or_another_process(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path, max_bytes=0)
    data = b"in use" * 100
    with cache.reference(sha(data), Fetcher(data)) as entry:
        assert entry.path.exists()  # over the cap, yet the insert's own eviction kept it
        assert cache.evict() == 0
        assert evict_in_subprocess(tmp_path) == 0
        assert entry.path.read_bytes() == data
    assert evict_in_subprocess(tmp_path) == len(data)
    assert not entry.path.exists()


def test_entry_in_use_by_another_process_is_not_evicted(tmp_path: Path) -> None:
    data = b"held elsewhere" * 100
    path = put(ReferenceCache(tmp_path), data)
    code = (
        "import sys; from pathlib import Path; from dgagent.engine.cache import ReferenceCache\n"
        "with ReferenceCache(Path(sys.argv[1])).reference(sys.argv[2], None) as entry:\n"
        "    print(entry.hit, flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), sha(data)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "True\n"
        assert ReferenceCache(tmp_path, max_bytes=0).evict() == 0
        assert path.exists()
    finally:
        holder.communicate("")
    assert ReferenceCache(tmp_path, max_bytes=0).evict() == len(data)


def _fetch_in_child(
    root: Path, data: bytes, start: threading.Barrier, results: multiprocessing.Queue[str]
) -> None:
    def slow_fetch(file: BinaryIO) -> None:
        quarter = len(data) // 4
        for i in range(0, len(data), quarter):
            file.write(data[i : i + quarter])
            time.sleep(0.02)  # keep the downloads overlapping

    start.wait()
    with ReferenceCache(root).reference(sha(data), slow_fetch) as entry:
        results.put(sha(entry.path.read_bytes()))


def test_processes_fetching_the_same_reference_agree(tmp_path: Path) -> None:
    data = os.urandom(256 * 1024)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    children = [
        context.Process(target=_fetch_in_child, args=(tmp_path, data, start, results))
        for _ in range(4)
    ]
    for child in children:
        child.start()
    digests = [results.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert [child.exitcode for child in children] == [0] * 4
    assert digests == [sha(data)] * 4
    assert files_under(tmp_path / "refs") == [tmp_path / "refs" / sha(data)[:2] / sha(data)]
    assert files_under(tmp_path / "tmp") == []
    with ReferenceCache(tmp_path).reference(sha(data), never_fetch) as entry:
        assert entry.hit


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    data = b"shared by threads" * 1000
    put(cache, data)
    seen: list[CacheEntry] = []

    def use() -> None:
        for _ in range(20):
            with cache.reference(sha(data), never_fetch) as entry:
                seen.append(entry)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 160 and all(entry.hit for entry in seen)
    assert (cache.hits, cache.misses) == (160, 1)


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "a" * 65, " " + "a" * 63])
def test_invalid_sha_is_refused(tmp_path: Path, bad: str) -> None:
    cache = ReferenceCache(tmp_path)
    with (
        pytest.raises(IntegrityError, match="not a SHA-256 digest"),
        cache.reference(bad, never_fetch),
    ):
        pass
    with pytest.raises(IntegrityError, match="not a SHA-256 digest"):
        cache.add(bad, tmp_path / "whatever")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
def test_unwritable_root_raises_cache_error(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o500)
    try:
        with (
            pytest.raises(CacheError, match="DG_CACHE_DIR"),
            ReferenceCache(root).reference(sha(b"x"), Fetcher(b"x")),
        ):
            pass
    finally:
        root.chmod(0o700)


def test_root_that_is_a_file_raises_cache_error(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.write_bytes(b"not a directory")
    fetch = Fetcher(b"x")
    with (
        pytest.raises(CacheError, match=f"{root}.*DG_CACHE_DIR") as caught,
        ReferenceCache(root).reference(sha(b"x"), fetch),
    ):
        pass
    assert isinstance(caught.value.__cause__, OSError)
    assert fetch.calls == 0


def test_add_then_reference_is_a_hit(tmp_path: Path) -> None:
    source = tmp_path / "reference.bin"
    source.write_bytes(b"just uploaded" * 1000)
    cache = ReferenceCache(tmp_path / "cache")
    cache.add(sha(source.read_bytes()), source)
    with cache.reference(sha(source.read_bytes()), never_fetch) as entry:
        assert entry.hit
        assert entry.path.read_bytes() == source.read_bytes()
    assert (cache.hits, cache.misses) == (1, 0)


def test_add_touches_an_entry_already_there(tmp_path: Path) -> None:
    data = b"again" * 100
    cache = ReferenceCache(tmp_path / "cache")
    path = put(cache, data, mtime=1000)
    source = tmp_path / "reference.bin"
    source.write_bytes(data)
    cache.add(sha(data), source)
    assert path.stat().st_mtime > 1000
    assert (cache.hits, cache.misses) == (0, 1)


def test_add_refuses_a_file_that_does_not_match(tmp_path: Path) -> None:
    source = tmp_path / "reference.bin"
    source.write_bytes(b"changed since")
    cache = ReferenceCache(tmp_path / "cache")
    with pytest.raises(IntegrityError, match="changed after it was hashed"):
        cache.add(sha(b"original"), source)
    assert cache.stats().entries == 0
    assert files_under(tmp_path / "cache" / "tmp") == []


def test_eviction_sweeps_orphaned_temp_files(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    put(cache, b"x")
    orphan, fresh = tmp_path / "tmp" / "ref.orphan", tmp_path / "tmp" / "ref.fresh"
    orphan.write_bytes(b"left by a crash")
    fresh.write_bytes(b"still downloading")
    os.utime(orphan, (1000, 1000))
    cache.evict()
    assert not orphan.exists()
    assert fresh.exists()
