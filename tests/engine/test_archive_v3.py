"""archive-v3: the reference's inflated form, members probed on every core, and the compat delta
made beside the archive one."""

from __future__ import annotations

import gzip
import io
import os
import random
import zipfile
import zlib
from pathlib import Path

import pytest

from dgagent.engine import archive, archive_deflate, archive_v2
from dgagent.engine.archive_zip import deflated_members
from dgagent.engine.results import COMPAT
from dgagent.engine.store import DeltaStore
from dgagent.errors import IntegrityError
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage
from tests.engine.test_archive_v2 import encode_and_decode, expanded, native_wheel, sha

STAMP = (2024, 1, 1, 0, 0, 0)


def words(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    vocab = [f"w{rng.randrange(4000)}" for _ in range(400)]
    return " ".join(rng.choice(vocab) for _ in range(size // 5)).encode()[:size]


def mixed_zip(path: Path, v: int) -> Path:
    """Members zlib reproduces (levels 6, 9, 1) and one no candidate remakes (written with
    zlib's Huffman-only strategy, like a member from another deflater), unchanged across
    versions, so only part of the file expands."""
    with zipfile.ZipFile(path, "w") as z:
        for i, level in enumerate((6, 9, 1, 6, 9)):
            data = words(i, 30_000) + (f"# v{v}\n".encode() if i == 3 else b"")
            info = zipfile.ZipInfo(f"pkg/m{i}.txt", STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data, compresslevel=level)
        real = zipfile._get_compressor  # type: ignore[attr-defined]
        zipfile._get_compressor = lambda *_: zlib.compressobj(  # type: ignore[attr-defined]
            6, zlib.DEFLATED, -15, 8, zlib.Z_HUFFMAN_ONLY
        )
        try:
            info = zipfile.ZipInfo("pkg/foreign.txt", STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, words(99, 200_000))
        finally:
            zipfile._get_compressor = real  # type: ignore[attr-defined]
    return path


def test_the_inflated_form_inflates_every_stream_and_cannot_be_rebuilt(tmp_path: Path) -> None:
    path = mixed_zip(tmp_path / "a.zip", 0)
    exp, inflated = io.BytesIO(), tmp_path / "a.inflated"
    found = archive.expand(path, exp, verify=False)
    assert found.verbatim == 1  # the Huffman-only member
    with inflated.open("wb") as f:
        archive.inflate(path, f)
    with inflated.open("rb") as f:
        records = [r for r in archive.records(f) if r.tag == b"D"]
    assert len(records) == found.members + 1  # the foreign member is inflated too
    assert all(r.header[1:5] == b"\0\0\0\0" for r in records)  # no zlib parameters
    data = inflated.read_bytes()
    assert words(99, 200_000) in data
    with pytest.raises(IntegrityError, match="bad magic"), inflated.open("rb") as f:
        archive.rebuild(f, io.BytesIO())
    again = tmp_path / "b.inflated"
    with again.open("wb") as f:
        archive.inflate(path, f)
    assert again.read_bytes() == data  # deterministic: writer and reader make the same bytes
    gz = tmp_path / "c.gz"
    gz.write_bytes(gzip.compress(words(5, 50_000), mtime=0))
    with (tmp_path / "c.inflated").open("wb") as f:
        archive.inflate(gz, f)
    assert words(5, 50_000) in (tmp_path / "c.inflated").read_bytes()


def round_trip(old: Path, new: Path, target: Path, work: Path) -> tuple[archive_v2.Made, Path]:
    """An archive-v3 delta of ``new`` (its expansion: ``target``) against ``old``'s inflated
    form, decoded and compared with ``new``."""
    inflated = work / "ref.inflated"
    with inflated.open("wb") as f:
        archive.inflate(old, f)
    return encode_and_decode(old, new, work, forms=(inflated, target))


def test_unchanged_members_zlib_does_not_reproduce_are_copied_from_the_reference(
    tmp_path: Path,
) -> None:
    old, new = mixed_zip(tmp_path / "p-1.0.zip", 0), mixed_zip(tmp_path / "p-1.1.zip", 1)
    made, delta = round_trip(old, new, expanded(new, tmp_path), tmp_path)
    assert made.unchanged >= 5  # four unchanged text members and the foreign one
    assert delta.stat().st_size < 2_000  # the 200 KB foreign member is not in it


def test_learning_on_every_core_changes_no_expansion(tmp_path: Path) -> None:
    """Members probed side by side under a guessed previous member (mixed levels make the
    guess wrong for some) give the expanded form a plain ordered expansion gives."""
    for v in range(2):
        path = mixed_zip(tmp_path / f"m-{v}.zip", v)
        memo = archive_deflate.Choices()
        with path.open("rb") as src:
            spans = [(s, n, c) for s, n, c in deflated_members(src, path.stat().st_size) if n]
            digests = memo.learn(src, spans)
        assert len(digests) == len(spans) - 1 and memo.seen
        learned, plain, full = io.BytesIO(), io.BytesIO(), io.BytesIO()
        archive.expand(path, learned, verify=False, memo=memo)
        archive.expand(path, plain, verify=False)
        archive.expand(path, full, verify=True)
        assert learned.getvalue() == plain.getvalue() == full.getvalue()
        fresh = io.BytesIO()
        archive.expand(path, fresh, verify=False, memo=archive_deflate.Choices())
        assert fresh.getvalue() == plain.getvalue()


def xdelta3_children() -> list[int]:
    """Child processes of this test process that run xdelta3."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"xdelta3" in cmd:
            found.append(int(pid))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_the_compat_delta_made_beside_wins_when_smaller_and_is_stopped_when_not_wanted(
    tmp_path: Path,
) -> None:
    store = DeltaStore(
        LocalStorage(tmp_path / "store"),
        settings=EngineSettings(cache_dir=tmp_path / "cache" / "references", codec="archive"),
    )
    (tmp_path / "store").mkdir()
    # Native code that changes: the archive delta wins and the compat one is stopped early.
    files = [native_wheel(tmp_path / f"pkg-1.{v}-py3-none-any.whl", v) for v in range(2)]
    results = [store.put(f, f"nat/{f.name}") for f in files]
    assert results[1].codec == archive.CODEC
    assert xdelta3_children() == []
    # A small wheel with a one-line change: the archive container's own bytes are more than
    # 5 % of it, so the compat delta is made beside it, and (smaller, readable by DeltaGlider)
    # is the one kept.
    small = []
    for v in range(2):
        w = tmp_path / f"t-1.{v}-py3-none-any.whl"
        with zipfile.ZipFile(w, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(zipfile.ZipInfo("t/a.py", STAMP), words(3, 3_000) + f"\nv = {v}\n".encode())
        small.append(w)
        result = store.put(w, f"t/{w.name}")
    assert result.codec == COMPAT and result.stored_size < 200
    assert xdelta3_children() == []
    for f in [*files, *small]:
        out = tmp_path / "out"
        assert store.get(f"{'nat' if f in files else 't'}/{f.name}", out).sha256 == sha(f)


def gz_wheel(path: Path, v: int) -> Path:
    """A wheel like botocore's: ``.json.gz`` members whose only change per release is the gzip
    header's mtime, deflated again in the zip (to stored blocks: gzip data does not compress),
    beside a text member that changes and deflates."""
    with zipfile.ZipFile(path, "w") as z:
        for i in range(6):
            data = gzip.compress(words(10 + i, 90_000), mtime=1_700_000_000 + v)
            z.writestr(zipfile.ZipInfo(f"pkg/data/s{i}.json.gz", STAMP), data, 8)
        text = words(1, 40_000) + f"\nversion = {v}\n".encode()
        z.writestr(zipfile.ZipInfo("pkg/__init__.py", STAMP), text, 8)
    return path


def test_stored_only_streams_are_told_apart_by_their_block_headers() -> None:
    noise = random.Random(7).randbytes(150_000)
    for level in (0, 6, 9):
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        stored = c.compress(noise) + c.flush()
        framed = io.BytesIO(b"xx" + stored + b"yy")
        assert archive_deflate.stored_only(framed, 2, len(stored))
        assert not archive_deflate.stored_only(framed, 2, len(stored) - 1)  # ends elsewhere
        assert not archive_deflate.stored_only(framed, 2, len(stored) + 1)
    text = words(2, 150_000)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    huffman = c.compress(text) + c.flush()
    assert not archive_deflate.stored_only(io.BytesIO(huffman), 0, len(huffman))
    # Stored blocks, then a Huffman one: not stored only.
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    mixed = c.compress(noise) + c.compress(text) + c.flush()
    assert not archive_deflate.stored_only(io.BytesIO(mixed), 0, len(mixed))


def test_members_deflated_to_stored_blocks_stay_verbatim_and_are_copied_on_read(
    tmp_path: Path,
) -> None:
    old, new = gz_wheel(tmp_path / "g-1.0.whl", 0), gz_wheel(tmp_path / "g-1.1.whl", 1)
    target = tmp_path / "new.expanded"
    with target.open("wb") as f:
        found = archive.expand_target(new, f)
    assert found.members == 1  # the text member; the six .json.gz members stay verbatim
    with target.open("rb") as f:
        assert [r.tag for r in archive.records(f)].count(b"D") == 1
    _, delta = round_trip(old, new, target, tmp_path)
    # xdelta3 finds the verbatim members' bytes in the reference's inflated form: the delta
    # holds the changed mtimes and the one changed line, not 540 KB of gzip data.
    assert delta.stat().st_size < 3_000
    # The expansion the reference was made with (archive-v1 and -v2) is unchanged: there the
    # same members are still D records.
    with expanded(new, tmp_path).open("rb") as f:
        assert [r.tag for r in archive.records(f)].count(b"D") == 7


def test_a_changed_verbatim_member_copies_what_it_shares_with_its_counterpart(
    tmp_path: Path,
) -> None:
    """Each .json.gz member changed (its gzip mtime, near its start): all after that is the
    reference's, copied from reference.bin instead of left for xdelta3 in pieces."""
    old, new = gz_wheel(tmp_path / "g-1.0.whl", 0), gz_wheel(tmp_path / "g-1.1.whl", 1)
    target = tmp_path / "new.expanded"
    with target.open("wb") as f:
        archive.expand_target(new, f)
    made, _ = round_trip(old, new, target, tmp_path)
    assert (made.unchanged, made.shared) == (0, 6)
    assert made.plan_bytes < 60_000  # the text member's 40 KB and the changed heads, not 540 KB


def test_shared_ends_are_found_from_either_side() -> None:
    assert archive_v2._alike(b"abcdef", b"abcxef", "little") == 3
    assert archive_v2._alike(b"abcdef", b"abcxef", "big") == 2
    assert archive_v2._alike(b"same", b"same", "big") == 4
    assert archive_v2._alike(b"abcd", b"ab", "little") == 2
    assert archive_v2._alike(b"abcd", b"cd", "big") == 2
    assert archive_v2._alike(b"x", b"y", "little") == 0
    noise = random.Random(3).randbytes(100_000)
    flipped = bytes(b ^ 0xFF for b in noise[7:11])
    changed = noise[:7] + flipped + noise[11:60_000] + bytes([noise[60_000] ^ 1]) + noise[60_001:]
    assert archive_v2._alike(noise, changed, "little") == 7
    assert archive_v2._alike(noise, changed, "big") == 100_000 - 60_001
