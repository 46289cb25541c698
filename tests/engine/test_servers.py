"""The engine's guarantees on real S3 servers (moto, SeaweedFS, ``rclone serve s3``).

- Where ``If-None-Match: *`` is enforced (moto, SeaweedFS) a DeltaSpace's first reference is
  ``reference.bin``; where it is not (rclone) it goes to ``.dg/refs/<sha256>/reference.bin``.
  Racing first writers never lose a file either way.
- Two writers storing one name at once (``name`` whole against ``name.delta``) never lose it:
  every interleaving of their storage calls on that name is run, then many real races.
- Metadata stays within what every server takes, for long and non-ASCII names and folders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

import pytest

from dgagent.engine import keys
from dgagent.engine.metadata import BUDGET, CUT_MARK, HEADER_PREFIX, Kind, ascii_value
from dgagent.engine.prune import Pruner, Retention
from dgagent.engine.store import DeltaStore
from dgagent.errors import DgError
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage, ObjectInfo, Prefix, S3Options, S3Storage, Storage
from dgagent.storage.base import Progress
from tests import artifacts
from tests.conftest import ServerBucket
from tests.servers import client

HONOURS_IF_NONE_MATCH = {"moto": True, "seaweedfs": True, "rclone": False}
AWS_METADATA_LIMIT = 2048


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def engine(sb: ServerBucket, home: Path, *, trust: bool = True) -> DeltaStore:
    """A DeltaStore of its own (client, cache, work folder) on the server's bucket."""
    options = dataclasses.replace(sb.options, trust_conditional_writes=trust)
    storage = S3Storage(sb.bucket, options)
    return DeltaStore(storage, settings=EngineSettings(cache_dir=home / "references"))


def zips(folder: Path, count: int, *, files: int = 24, stem: str = "app") -> list[Path]:
    """Successive versions of a zip, ``<stem>-1.<v>.zip``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        artifacts.write_zip(folder / f"{stem}-1.{v}.zip", artifacts.source_tree(v, files=files))
        for v in range(count)
    ]


def noise(path: Path, size: int, seed: int) -> Path:
    """Bytes no delta helps with: a version that has nothing in common with the others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def bucket_keys(sb: ServerBucket, prefix: str = "") -> list[str]:
    s3 = client(sb.endpoint)
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sb.bucket, Prefix=prefix):
        found.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(found)


def read_back(store: DeltaStore, key: str, out: Path) -> str:
    """The SHA-256 of logical ``key`` rebuilt into ``out`` (checked there by the engine too)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    got = store.get(key, out)
    assert got.sha256 == sha(out)
    return got.sha256


# ---------------------------------------------------------------- a. round trip


def test_round_trip_and_where_the_reference_goes(
    server_bucket: ServerBucket, tmp_path: Path
) -> None:
    sb = server_bucket
    versions = zips(tmp_path / "src", 4)
    notes = noise(tmp_path / "src" / "notes.txt", 5000, seed=1)
    writer = engine(sb, tmp_path / "writer")
    results = [writer.put(f, f"rel/{f.name}") for f in versions]
    plain = writer.put(notes, "rel/notes.txt")

    assert [r.kind for r in results] == [Kind.DELTA] * 4
    assert results[0].reference_size == versions[0].stat().st_size
    assert [r.reference_size for r in results[1:]] == [0, 0, 0]
    assert plain.kind is Kind.DIRECT
    if HONOURS_IF_NONE_MATCH[sb.name]:
        reference = "rel/reference.bin"
    else:
        reference = keys.addressed_reference_key("rel", sha(versions[0]))
    deltas = [f"rel/{f.name}.delta" for f in versions]
    assert bucket_keys(sb, "rel/") == sorted([reference, *deltas, "rel/notes.txt"])

    names = sorted(f"rel/{f.name}" for f in [*versions, notes])
    listed = list(writer.list_files("rel/", recursive=True))
    assert sorted(e.key for e in listed) == names
    top = [e.key for e in writer.list_files("", recursive=False)]
    assert top == ["rel/"]  # the probe's folder (.dg/) and the references stay hidden

    reader = engine(sb, tmp_path / "reader")  # empty cache: the reference comes from the server
    for f in [*versions, notes]:
        assert read_back(reader, f"rel/{f.name}", tmp_path / "out" / f.name) == sha(f)
    assert reader.cache.misses == 1


def test_listing_from_the_cache_and_batched_deletes(
    server_bucket: ServerBucket, tmp_path: Path
) -> None:
    """Each server's ETags identify a listed object's version for the metadata cache (rclone
    lists them bare and quotes them in a HEAD), its DeleteObjects takes a batch, and a summary
    counts exactly the bytes the bucket holds."""
    sb = server_bucket
    writer = engine(sb, tmp_path / "writer")
    for space in ("a", "b"):
        for f in zips(tmp_path / space, 3):
            writer.put(f, f"rel/{space}/{f.name}")
    heads: list[int] = []
    writer.on_head = heads.append
    first = writer.listing("rel/", recursive=True)
    assert heads[0] == -6 and len(heads) == 7  # the first look HEADs each delta once
    heads.clear()
    again = writer.listing("rel/", recursive=True)
    assert heads == []  # the second look is LISTs only
    assert [e.meta for e in again.files] == [e.meta for e in first.files]
    summary = again.summary()
    s3 = client(sb.endpoint)
    held = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sb.bucket, Prefix="rel/"):
        held += sum(o["Size"] for o in page.get("Contents", []))
    assert summary.files == 6 and summary.stored_bytes == held

    doomed = [o.key for o in again.objects]
    deleted = writer.delete_physical(doomed, spaces={"rel/a", "rel/b"})
    assert sorted(deleted) == sorted(doomed)
    assert bucket_keys(sb, "rel/") == []


def test_prune_retires_references_and_keeps_every_kept_version(
    server_bucket: ServerBucket, tmp_path: Path
) -> None:
    """A prune on each server (rclone: every reference content-addressed, metadata keys
    capitalised): the kept versions read back through a cold cache, the bucket holds exactly
    what the prune's report says, and nothing a kept file needs was deleted."""
    sb = server_bucket
    writer = engine(sb, tmp_path / "writer")
    files = artifacts.write_series(tmp_path / "src", 14)
    for f in files:
        writer.put(f, f"rel/{f.name}")

    report = Pruner(writer, Retention(keep_last=3)).run("rel/", recursive=False)

    assert report.retired and len(report.deleted) == 11
    s3 = client(sb.endpoint)
    held = sum(
        o["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sb.bucket, Prefix="rel/")
        for o in page.get("Contents", [])
    )
    assert held == report.stored_after
    reader = engine(sb, tmp_path / "reader")
    for f in files[-3:]:
        assert read_back(reader, f"rel/{f.name}", tmp_path / "out" / f.name) == sha(f)
    assert sorted(e.key for e in reader.listing("rel/", recursive=False).files) == sorted(
        f"rel/{f.name}" for f in files[-3:]
    )


@pytest.mark.parametrize("server_bucket", ["moto"], indirect=True)
def test_untrusted_conditional_writes_use_addressed_references(
    server_bucket: ServerBucket, tmp_path: Path
) -> None:
    """``trust_conditional_writes=False`` on a server that enforces ``If-None-Match``: the
    content-addressed layout all the same, and readable by a store that trusts the server."""
    sb = server_bucket
    versions = zips(tmp_path / "src", 2)
    writer = engine(sb, tmp_path / "writer", trust=False)
    for f in versions:
        assert writer.put(f, f"rel/{f.name}").kind is Kind.DELTA
    reference = keys.addressed_reference_key("rel", sha(versions[0]))
    assert bucket_keys(sb) == sorted([reference, *(f"rel/{f.name}.delta" for f in versions)])
    reader = engine(sb, tmp_path / "reader")
    for f in versions:
        assert read_back(reader, f"rel/{f.name}", tmp_path / "out" / f.name) == sha(f)


# ---------------------------------------------------------------- b. reference race

RACERS = 4
RACE_ROUNDS = 10


def test_first_writers_of_a_deltaspace_race_and_every_file_reads_back(
    server_bucket: ServerBucket, tmp_path: Path
) -> None:
    """RACERS writers, each with its own client and cache, store different first files into
    one new DeltaSpace at once, RACE_ROUNDS times. Before addressed references, rclone (which
    overwrites despite ``If-None-Match``) lost files here: a later reference.bin replaced the
    one earlier deltas were made against."""
    sb = server_bucket
    honoured = HONOURS_IF_NONE_MATCH[sb.name]
    versions = zips(tmp_path / "src", RACERS, files=8)
    stores = [engine(sb, tmp_path / f"writer{i}") for i in range(RACERS)]
    for store in stores:  # the probe (and its remembered answer) before the race, not in it
        assert store.storage.honours_create_only(1) is honoured

    creators: list[int] = []
    for r in range(RACE_ROUNDS):
        barrier = threading.Barrier(RACERS)

        def put(i: int, r: int = r, barrier: threading.Barrier = barrier) -> int:
            barrier.wait(timeout=30)
            return stores[i].put(versions[i], f"race{r}/{versions[i].name}").reference_size

        with ThreadPoolExecutor(RACERS) as pool:
            created = list(pool.map(put, range(RACERS)))
        creators.append(sum(1 for size in created if size))
        stored = bucket_keys(sb, f"race{r}/")
        addressed = [k for k in stored if keys.addressed_sha256(k)]
        if honoured:
            assert f"race{r}/reference.bin" in stored and not addressed
        else:
            assert f"race{r}/reference.bin" not in stored
            assert len(addressed) == creators[-1]
            assert {keys.addressed_sha256(k) for k in addressed} <= {sha(f) for f in versions}

    reader = engine(sb, tmp_path / "reader")
    for r in range(RACE_ROUNDS):
        for f in versions:
            out = tmp_path / "out" / f"{r}-{f.name}"
            assert read_back(reader, f"race{r}/{f.name}", out) == sha(f), (r, f.name)
    if honoured:
        assert creators == [1] * RACE_ROUNDS  # the losers used the winner's reference.bin
    else:
        assert max(creators) > 1, f"the writers never raced (creators per round: {creators})"


# ------------------------------------------------- c. sibling race, every interleaving


Call = tuple[str, str]
"""A storage call on a watched key: (``head``, ``get``, ``put`` or ``delete``, key)."""


def _conflict(one: Call, other: Call) -> bool:
    """Whether two calls' order can matter: the same key, and one of them writes it."""
    return one[1] == other[1] and not {one[0], other[0]} <= {"head", "get"}


class _Schedule:
    """Runs writers in threads and lets their storage calls on the watched keys through one at
    a time, in the order ``choices`` picks: at each step, among the writers waiting to make
    such a call (sorted by name), ``choices[step]`` (0 beyond its end). A step is decided only
    once every writer waits at a watched call or has finished, so other work (hashing, xdelta3,
    the reference) never changes the order.

    Orders that differ only by swapping calls that do not conflict give the same outcome, so
    they are run once: a writer whose call was already tried first at a step sleeps (is not
    offered) until a conflicting call is made (sleep sets, Godefroid 1996)."""

    def __init__(self, choices: list[int]) -> None:
        self.choices = choices
        self.options: list[int] = []
        """How many writers could go at each step taken."""
        self.trace: list[str] = []
        self._cond = threading.Condition()
        self._waiting: dict[str, Call] = {}
        self._running: str | None = None
        self._done: set[str] = set()

    @contextlib.contextmanager
    def step(self, writer: str, call: Call) -> Iterator[None]:
        with self._cond:
            self._waiting[writer] = call
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._running == writer)
        try:
            yield
        finally:
            with self._cond:
                self._running = None
                self._cond.notify_all()

    def run(self, writers: Mapping[str, Callable[[], object]]) -> dict[str, BaseException]:
        errors: dict[str, BaseException] = {}

        def body(name: str, work: Callable[[], object]) -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 (collected and asserted by the test)
                errors[name] = exc
            finally:
                with self._cond:
                    self._done.add(name)
                    self._cond.notify_all()

        threads = [threading.Thread(target=body, args=item) for item in writers.items()]
        for t in threads:
            t.start()
        names = set(writers)
        asleep: set[str] = set()
        while True:
            with self._cond:
                settled = self._cond.wait_for(
                    lambda: self._running is None and names <= set(self._waiting) | self._done,
                    timeout=60,
                )
                assert settled, f"a writer hung; steps so far: {self.trace}"
                if names <= self._done:
                    break
                ready = sorted(self._waiting)
                awake = [w for w in ready if w not in asleep] or ready[:1]
                depth = len(self.options)
                pick = self.choices[depth] if depth < len(self.choices) else 0
                self.options.append(len(awake))
                writer = awake[pick]
                call = self._waiting.pop(writer)
                asleep = {
                    w
                    for w in (asleep | set(awake[:pick])) - {writer}
                    if not _conflict(self._waiting[w], call)
                }
                self.trace.append(f"{writer} {call[0]} {call[1].rpartition('/')[2]}")
                self._running = writer
                self._cond.notify_all()
        for t in threads:
            t.join()
        return errors

    def next_choices(self) -> list[int] | None:
        """The next schedule in depth-first order, None once every one was run."""
        taken = [self.choices[i] if i < len(self.choices) else 0 for i in range(len(self.options))]
        for i in reversed(range(len(taken))):
            if taken[i] + 1 < self.options[i]:
                return [*taken[:i], taken[i] + 1]
        return None


class _Gated:
    """A Storage whose calls on ``watched`` keys wait for their turn in a _Schedule."""

    def __init__(
        self, inner: Storage, writer: str, schedule: _Schedule, watched: frozenset[str]
    ) -> None:
        self.inner = inner
        self.writer = writer
        self.schedule = schedule
        self.watched = watched

    def _turn(self, call: str, key: str) -> contextlib.AbstractContextManager[None]:
        if key in self.watched:
            return self.schedule.step(self.writer, (call, key))
        return contextlib.nullcontext()

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def cache_scope(self) -> None:
        return None  # every HEAD goes through the schedule

    def honours_create_only(self, size: int) -> bool:
        return self.inner.honours_create_only(size)

    def write_mode(self) -> str:
        return self.inner.write_mode()

    def head(self, key: str) -> ObjectInfo | None:
        with self._turn("head", key):
            return self.inner.head(key)

    def list_objects(
        self, prefix: str, *, delimiter: str | None = None
    ) -> Iterator[ObjectInfo | Prefix]:
        return self.inner.list_objects(prefix, delimiter=delimiter)

    def download(self, key: str, dest: BinaryIO, *, progress: Progress | None = None) -> ObjectInfo:
        with self._turn("get", key):
            return self.inner.download(key, dest, progress=progress)

    def upload(
        self,
        key: str,
        source: Path,
        metadata: Mapping[str, str],
        *,
        create_only: bool = False,
        progress: Progress | None = None,
    ) -> None:
        with self._turn("put", key):
            self.inner.upload(key, source, metadata, create_only=create_only, progress=progress)

    def delete(self, key: str) -> None:
        with self._turn("delete", key):
            self.inner.delete(key)

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)


SIBLING_KINDS = {
    # writer A's form, writer B's form
    "delta-vs-whole": ("delta", "whole"),
    "whole-vs-whole": ("whole", "whole"),
    "delta-vs-delta": ("delta", "delta"),
}
MAX_INTERLEAVINGS = 400


@pytest.mark.parametrize("before", ["absent", "delta", "whole"])
@pytest.mark.parametrize("kinds", sorted(SIBLING_KINDS))
def test_every_interleaving_of_two_writers_of_one_name_keeps_it(
    tmp_path: Path, kinds: str, before: str
) -> None:
    """Writers A and B store one name at once, each in its form (a zip that deltas well, or
    noise under the same .zip name, put with ``delta=False`` so it is stored whole: noise put
    as a delta may now become a new reference), over a name ``before`` absent or stored in
    either form. Every order of their HEAD/PUT/DELETE calls on ``name`` and ``name.delta`` is
    run; after each, the name must read back as A's or B's file.

    With the old settle step (delete the other form unconditionally) delta-vs-whole loses the
    name: A puts name.delta; B puts name and deletes name.delta; A deletes name."""
    root = tmp_path / "store"
    versions = zips(tmp_path / "src", 4, files=4)
    key = "rel/app.zip"
    plain = DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=tmp_path / "p" / "c"))
    plain.put(versions[0], "rel/app-1.0.zip")  # the DeltaSpace's reference
    size = versions[0].stat().st_size
    content = {
        ("A", "delta"): versions[1],
        ("B", "delta"): versions[2],
        ("A", "whole"): noise(tmp_path / "src" / "a.noise", size, seed=11),
        ("B", "whole"): noise(tmp_path / "src" / "b.noise", size, seed=12),
    }
    earlier = {
        "absent": None,
        "delta": versions[3],
        "whole": noise(tmp_path / "src" / "old.noise", size, seed=13),
    }[before]
    forms = dict(zip("AB", SIBLING_KINDS[kinds], strict=True))
    sources = {w: content[w, form] for w, form in forms.items()}
    wanted = {sha(p): w for w, p in sources.items()}
    watched = frozenset({key, keys.delta_key(key)})
    reader = DeltaStore(LocalStorage(root), settings=EngineSettings(cache_dir=tmp_path / "r" / "c"))

    choices: list[int] | None = []
    runs = 0
    outcomes: set[str] = set()
    while choices is not None:
        runs += 1
        assert runs <= MAX_INTERLEAVINGS, "more interleavings than expected: is a writer looping?"
        for stale in watched:
            plain.storage.delete(stale)
        if earlier is not None:
            stored = plain.put(earlier, key, delta=before == "delta")
            assert stored.kind is (Kind.DELTA if before == "delta" else Kind.DIRECT)
        schedule = _Schedule(choices)

        def writer(w: str, schedule: _Schedule = schedule) -> Callable[[], object]:
            storage = _Gated(LocalStorage(root), w, schedule, watched)
            settings = EngineSettings(cache_dir=tmp_path / w / "c")
            delta = forms[w] == "delta"
            return lambda: DeltaStore(storage, settings=settings).put(sources[w], key, delta=delta)

        errors = schedule.run({w: writer(w) for w in "AB"})
        assert not errors, (schedule.trace, errors)
        out = tmp_path / "out" / f"{runs}.zip"
        try:
            got = read_back(reader, key, out)
        except DgError as exc:
            pytest.fail(f"{key} unreadable ({exc}) after: {'; '.join(schedule.trace)}")
        assert got in wanted, f"{key} holds neither version after: {'; '.join(schedule.trace)}"
        forms_left = sorted(k for k in watched if plain.storage.head(k) is not None)
        outcomes.add(f"{wanted[got]} as {forms_left}")
        choices = schedule.next_choices()
    assert runs > 1  # the writers did interleave
    print(f"{kinds}, before {before}: {runs} interleavings, outcomes {sorted(outcomes)}")


# ------------------------------------------------- d. sibling race, real servers

SIBLING_ROUNDS = {"rclone": 60, "seaweedfs": 20, "moto": 20}


class _Aligned(S3Storage):
    """An S3Storage that signals when it starts the upload of ``key`` (or its .delta) and, when
    told to ``follow`` the other writer, first waits for that one's upload to start, then
    ``delay`` seconds more: two small uploads then end close together, in either order."""

    def __init__(self, bucket: str, options: S3Options) -> None:
        super().__init__(bucket, options)
        self.key = ""
        self.started = threading.Event()
        self.follow: threading.Event | None = None
        self.delay = 0.0

    def upload(
        self,
        key: str,
        source: Path,
        metadata: Mapping[str, str],
        *,
        create_only: bool = False,
        progress: Progress | None = None,
    ) -> None:
        if keys.logical_key(key) == self.key and not self.started.is_set():
            if self.follow is not None:
                assert self.follow.wait(timeout=30), "the other writer never uploaded"
                time.sleep(self.delay)
            self.started.set()
        super().upload(key, source, metadata, create_only=create_only, progress=progress)


def test_two_writers_of_one_name_race_on_real_servers(
    server_bucket: ServerBucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two threads with their own stores put one name at once, A as a delta, B whole,
    SIBLING_ROUNDS[server] times; after each round the name reads back as A's or B's file.
    A's delta is ~100 bytes, B's file 70 KB: the one that leads a round starts its upload, the
    other starts 0-20 ms later."""
    sb = server_bucket
    rounds = SIBLING_ROUNDS[sb.name]
    versions = zips(tmp_path / "src", 2, files=4)
    engine(sb, tmp_path / "setup").put(versions[0], f"sib/{versions[0].name}")
    storages = {w: _Aligned(sb.bucket, sb.options) for w in "AB"}
    stores = {
        w: DeltaStore(storages[w], settings=EngineSettings(cache_dir=tmp_path / w / "references"))
        for w in "AB"
    }
    reader = engine(sb, tmp_path / "reader")
    jitter = random.Random(5)
    outcomes: dict[str, int] = {}
    for r in range(rounds):
        key = f"sib/app-{r}.zip"
        sources = {"A": versions[1], "B": noise(tmp_path / "noise" / f"{r}.zip", 70_000, r)}
        leader, follower = ("A", "B") if r % 2 else ("B", "A")
        for storage in storages.values():
            storage.key = key
            storage.started = threading.Event()
        storages[leader].follow = None
        storages[follower].follow = storages[leader].started
        storages[follower].delay = jitter.uniform(0, 0.02)
        barrier = threading.Barrier(2)

        def put(
            w: str,
            key: str = key,
            barrier: threading.Barrier = barrier,
            sources: dict[str, Path] = sources,
        ) -> Kind:
            barrier.wait(timeout=30)
            return stores[w].put(sources[w], key, delta=w == "A").kind

        with ThreadPoolExecutor(2) as pool:
            kinds = dict(zip("AB", pool.map(put, "AB"), strict=True))
        assert kinds["B"] is Kind.DIRECT
        got = read_back(reader, key, tmp_path / "out" / f"{r}.zip")
        winner = {sha(path): w for w, path in sources.items()}.get(got)
        assert winner is not None, f"round {r}: {key} holds neither version"
        forms = len(bucket_keys(sb, key))
        outcome = f"{winner}'s file; A stored {kinds['A'].value}; {forms} form(s) left"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    repaired = sum("storing it again" in m for m in caplog.messages)
    print(f"{sb.name}: {rounds} rounds, {outcomes}; {repaired} re-stored after losing a race")


# ---------------------------------------------------------------- e. long names


def long_ascii_name(version: int) -> str:
    """240 bytes of ASCII."""
    head = f"app-{version}-"
    return head + "x" * (240 - len(head) - len(".zip")) + ".zip"


def long_unicode_name(version: int) -> str:
    """120 characters, accented Latin and CJK: 243 bytes in UTF-8, within the 255 bytes a file
    name may have on rclone's local disk once '.delta' is added."""
    head = f"版本{version}-"
    body = ("éüñøå" * 21 + "漢字テスト版" * 2)[: 120 - len(head) - len(".zip")]
    return head + body + ".zip"


def cjk_name(version: int) -> str:
    """80 CJK characters: 720 once percent-encoded in dg-original-name."""
    return f"{version}" + "漢字版本" * 19 + "版.zip"


LONG_NAMES: dict[str, tuple[str, Callable[[int], str], bool]] = {
    # folder, name of version n, whether a delta's dg-original-name must be cut to fit
    "ascii-240-bytes": ("long", long_ascii_name, False),
    "unicode-120-chars": ("long", long_unicode_name, False),
    "cjk-in-deep-folder": ("é" * 100, cjk_name, True),
}


def check_metadata(sb: ServerBucket, key: str) -> dict[str, str]:
    """The object's user metadata (boto3's HEAD), checked against AWS's limit and our budget."""
    meta = client(sb.endpoint).head_object(Bucket=sb.bucket, Key=key)["Metadata"]
    aws = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    headers = sum(len(HEADER_PREFIX) + len(k.encode()) + len(v.encode()) for k, v in meta.items())
    assert aws <= AWS_METADATA_LIMIT, (key, aws)
    assert headers <= BUDGET, (key, headers)
    assert all(v.isascii() for v in meta.values()), meta
    return meta


def recorded_name_cut(meta: Mapping[str, str], key: str, name: str) -> bool:
    """Whether dg-original-name (dg-source-name for a reference) was cut to fit. It must be the
    name percent-encoded, or a start of that marked with '...' which still decodes (strict
    UTF-8) to a start of the name: a cut never splits an escape, nor a character's escapes."""
    lower = {k.lower(): v for k, v in meta.items()}
    value = lower.get("dg-original-name") or lower["dg-source-name"]
    if value == ascii_value(name):
        return False
    assert value.endswith(CUT_MARK), value
    kept = value[: -len(CUT_MARK)]
    try:
        start = unquote(kept, errors="strict")
    except UnicodeDecodeError as exc:
        cut_at = kept[-12:]
        raise AssertionError(f"{key}: name cut inside a character: ...{cut_at}") from exc
    assert name.startswith(start), value
    return True


@pytest.mark.parametrize("case", sorted(LONG_NAMES))
def test_long_names_fit_the_metadata_limit(
    server_bucket: ServerBucket, tmp_path: Path, case: str
) -> None:
    """A long name as a DeltaSpace's first file (its reference), as its second (a delta), and
    as a direct file: stored, within the metadata limits, and read back bit-exact."""
    sb = server_bucket
    folder, naming, cut = LONG_NAMES[case]
    names = [naming(0), naming(1)]
    if case.startswith("ascii"):
        assert all(n.isascii() and len(n.encode()) == 240 for n in names)
    if case.startswith("unicode"):
        assert all(not n.isascii() and len(n) == 120 for n in names)
    versions = zips(tmp_path / "src", 2)
    direct = noise(tmp_path / "src" / "direct.bin", 3000, seed=3)
    stored = {
        f"{folder}/{names[0]}": (versions[0], Kind.DELTA),
        f"{folder}/{names[1]}": (versions[1], Kind.DELTA),
        f"plain/{names[1]}": (direct, Kind.DIRECT),
    }
    writer = engine(sb, tmp_path / "writer")
    for key, (source, kind) in stored.items():
        assert writer.put(source, key, delta=kind is Kind.DELTA).kind is kind, key
    reader = engine(sb, tmp_path / "reader")
    for i, (key, (source, _)) in enumerate(stored.items()):
        assert read_back(reader, key, tmp_path / "out" / f"{i}.zip") == sha(source)
    objects = bucket_keys(sb)
    references = [k for k in objects if keys.is_reference(k)]
    assert len(references) == 1 and len(objects) == len(stored) + 1
    for obj in objects:
        meta = check_metadata(sb, obj)
        if obj in references:  # the name of the file it was made from, never cut
            assert not recorded_name_cut(meta, obj, names[0])
            continue
        name = keys.logical_key(obj).rpartition("/")[2]
        assert recorded_name_cut(meta, obj, name) is (cut and keys.is_delta(obj)), obj


def long_folder() -> str:
    """More than 700 characters, a quarter of them non-ASCII (each 6 characters once
    percent-encoded in dg-ref-key): no delta's metadata can name a reference in it. Parts stay
    under 255 bytes (rclone's local disk) and keys under S3's 1,024 bytes."""
    return "/".join(f"{i}" + "é" * 44 + "d" * 130 for i in range(4))


def test_a_folder_too_long_for_a_delta_stores_the_file_whole(
    server_bucket: ServerBucket, tmp_path: Path
) -> None:
    sb = server_bucket
    folder = long_folder()
    versions = zips(tmp_path / "src", 2)
    paths = [f"{folder}/{f.name}" for f in versions]
    assert len(folder) >= 700 and all(len(k.encode()) + len(".delta") <= 1024 for k in paths)
    writer = engine(sb, tmp_path / "writer")
    first = writer.put(versions[0], paths[0])
    assert first.kind is Kind.DIRECT and first.reference_size == 0
    assert bucket_keys(sb) == [paths[0]]  # no reference, no probe left behind
    assert writer.put(versions[1], paths[1]).kind is Kind.DIRECT
    assert bucket_keys(sb) == sorted(paths)
    assert [e.key for e in writer.list_files(folder + "/", recursive=True)] == sorted(paths)
    reader = engine(sb, tmp_path / "reader")
    for i, (key, f) in enumerate(zip(paths, versions, strict=True)):
        assert not recorded_name_cut(check_metadata(sb, key), key, f.name)
        assert read_back(reader, key, tmp_path / "out" / f"{i}.zip") == sha(f)
