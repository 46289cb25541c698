"""Split points: large members recompressed in pieces on every core, bit-exact."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from dgagent.engine import archive, archive_split, archive_v2
from dgagent.engine.archive_deflate import Params
from dgagent.engine.archive_recompress import Recompressor
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.codec import Xdelta3
from dgagent.engine.expanded import ExpandedReferences
from dgagent.errors import IntegrityError
from tests.engine.test_archive_v2 import encode_and_decode, expanded, machine_code, parts_of


def text(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [f"w{rng.randrange(20000)}".encode() for _ in range(3000)]
    out = b" ".join(rng.choice(words) for _ in range(size // 5))
    return out[:size]


def deflate(params: Params, plain: bytes) -> bytes:
    c = params.compressor()
    return c.compress(plain) + c.flush()


def recompress(params: Params, plain: bytes, splits: list[archive_split.Split], size: int) -> bytes:
    starts = [0, *(p for p, _ in splits)]
    ends = [*starts[1:], len(plain)]
    pieces = [
        archive_split.compress_piece(params, plain, s, e) for s, e in zip(starts, ends, strict=True)
    ]
    return archive_split.splice(pieces, splits, size)


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        (Params(6), "text"),
        (Params(9), "text"),
        (Params(6, memlevel=9), "code"),
        (Params(5), "text"),
        (Params(6, strategy=zlib.Z_FILTERED), "text"),
    ],
)
def test_pieces_spliced_at_the_chosen_block_ends_are_the_whole_stream(
    params: Params, kind: str
) -> None:
    plain = text(1, 5_000_000) if kind == "text" else machine_code(3, 4_000_000, 2)
    deflated = deflate(params, plain)
    splits = archive_split.choose(params, deflated, plain)
    assert len(splits) >= 2
    archive_split.check(splits, len(plain), deflated=len(deflated))
    assert any(b % 8 for _, b in splits)  # pieces really land between byte boundaries
    assert recompress(params, plain, splits, len(deflated)) == deflated


def test_no_splits_where_a_restart_would_differ_or_blocks_are_stored() -> None:
    plain = text(2, 3_000_000)
    # Levels 1-3 insert fewer strings than a dictionary does; not split.
    assert archive_split.choose(Params(1), deflate(Params(1), plain), plain) == []
    # Incompressible data makes stored blocks, whose padding depends on the bit offset.
    noise = random.Random(4).randbytes(3_000_000)
    assert archive_split.choose(Params(6), deflate(Params(6), noise), noise) == []
    small = plain[: archive_split.MIN_PLAIN - 1]
    assert archive_split.choose(Params(6), deflate(Params(6), small), small) == []


def test_block_ends_are_where_inflate_stops() -> None:
    plain = text(5, 1_500_000)
    deflated = deflate(Params(6), plain)
    ends = archive_split.block_ends(deflated)
    assert ends and all(not stored for _, _, stored in ends)
    for p, b, _ in ends:  # inflating up to a block end gives exactly the plain bytes before it
        d = zlib.decompressobj(-15)
        head = d.decompress(deflated[: b // 8])
        assert len(head) <= p and plain.startswith(head)
    assert archive_split.block_ends(b"\xff" * 64) is None


def wheel(path: Path, so: bytes, notes: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        stamp = (2024, 1, 1, 0, 0, 0)
        z.writestr(zipfile.ZipInfo("pkg/_native.cpython-311-x86_64-linux-gnu.so", stamp), so, 8)
        z.writestr(zipfile.ZipInfo("pkg/NOTES.txt", stamp), notes, 8)
        z.writestr(zipfile.ZipInfo("pkg/__init__.py", stamp), b"x = 1\n" * 100, 8)
    return path


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("split")
    notes = text(6, 2_600_000)
    ref = wheel(d / "pkg-1.0.whl", machine_code(8, 2_500_000, 0), notes)
    new = wheel(d / "pkg-1.1.whl", machine_code(8, 2_500_000, 1), notes[:-9000] + b"tail" * 9)
    return ref, new


def test_an_archive_delta_carries_split_points_that_older_readers_ignore(
    versions: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, new = versions
    made, delta = encode_and_decode(ref, new, tmp_path)  # decodes with the splits
    assert made.hdiff == 1 and made.split == 2  # the native member (H) and the notes (D)
    assert parts_of(delta) == [archive_v2.XDELTA3, archive_v2.HDIFFPATCH, archive_v2.SPLITS]
    # A reader from before the split points names no S part and recompresses whole.
    monkeypatch.setattr(archive_v2._Parts, "splits", lambda self, origin: [])
    out = tmp_path / "old-reader"
    archive_v2.decode(Xdelta3(), (ref, expanded(ref, tmp_path)), delta, out, tmp_path)
    assert out.read_bytes() == new.read_bytes()


def test_without_split_points_the_delta_is_what_it_was(
    versions: tuple[Path, Path], tmp_path: Path
) -> None:
    ref, new = versions
    codec = Xdelta3()
    sides = (ref, expanded(ref, tmp_path)), (new, expanded(new, tmp_path))
    made = archive_v2.encode(codec, *sides, tmp_path / "plain.delta", tmp_path, split=False)
    assert made.split == 0
    assert parts_of(tmp_path / "plain.delta") == [archive_v2.XDELTA3, archive_v2.HDIFFPATCH]


def test_a_split_point_that_does_not_hold_costs_only_the_speed_up(
    versions: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split that passed its check but breaks the stream later fails the decode check; the
    delta is then made again without splits, and still rebuilds exactly."""
    ref, new = versions
    real = archive_split.choose

    def off_by_one_bit(params: Params, deflated: bytes, plain: bytes) -> list[tuple[int, int]]:
        return [(p, b + 1) for p, b in real(params, deflated, plain)]

    monkeypatch.setattr(archive_split, "choose", off_by_one_bit)
    cache = ReferenceCache(tmp_path / "cache")
    refs = ExpandedReferences(cache, Xdelta3())
    sides = (ref, expanded(ref, tmp_path)), (new, expanded(new, tmp_path))
    out = tmp_path / "checked.delta"
    sha = hashlib.sha256(new.read_bytes()).hexdigest()
    assert refs.encode_checked(*sides, out, tmp_path, sha)
    assert archive_v2.SPLITS not in parts_of(out)
    rebuilt = tmp_path / "rebuilt"
    archive_v2.decode(Xdelta3(), sides[0], out, rebuilt, tmp_path)
    assert rebuilt.read_bytes() == new.read_bytes()


def test_split_points_out_of_order_are_refused(tmp_path: Path) -> None:
    plain = text(7, 3_000_000)
    params = Params(6)
    deflated = deflate(params, plain)
    splits = archive_split.choose(params, deflated, plain)
    header = params.header(zlib.crc32(plain), len(deflated), len(plain))
    out = io.BytesIO()
    with Recompressor(out) as background:
        assert background.add(header, plain, splits) == len(deflated)
        background.finish()
    assert out.getvalue() == deflated
    for bad in (splits[::-1], [(0, 0), *splits], [(len(plain), splits[0][1])]):
        with pytest.raises(IntegrityError, match="split points"), Recompressor(io.BytesIO()) as b:
            b.add(header, plain, bad)
    wrong_crc = params.header(zlib.crc32(plain) ^ 1, len(deflated), len(plain))
    with pytest.raises(IntegrityError, match="CRC-32"), Recompressor(io.BytesIO()) as b:
        b.add(wrong_crc, plain, splits)
        b.finish()


def test_the_split_part_is_read_back_as_written() -> None:
    table = {10: [(1, 2), (3, 4)], 7: [(5, 6)]}
    data = archive_split.pack(table)
    assert archive_split.unpack(io.BytesIO(data), len(data)) == table
    for damaged in (data[:-3], data + b"\0"):
        with pytest.raises(IntegrityError):
            archive_split.unpack(io.BytesIO(damaged), len(damaged))
    assert struct.unpack_from("<I", data)[0] == 2


def test_a_plain_expanded_form_rebuilds_without_split_points(tmp_path: Path) -> None:
    """References are expanded forms, not plans: they carry no splits and rebuild as before."""
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.txt", text(9, 2_500_000))
    exp = expanded(path, tmp_path)
    out = io.BytesIO()
    with exp.open("rb") as src:
        archive.rebuild(src, out)
    assert out.getvalue() == path.read_bytes()
