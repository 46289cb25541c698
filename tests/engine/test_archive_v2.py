"""archive-v2: HDiffPatch parts for native members, unchanged members copied, v1 still read."""

from __future__ import annotations

import doctest
import hashlib
import io
import json
import random
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from dgagent.cli.main import main
from dgagent.client import open_store
from dgagent.engine import (
    archive,
    archive_deflate,
    archive_hdiff,
    archive_recompress,
    archive_v2,
)
from dgagent.engine.codec import Xdelta3
from dgagent.engine.metadata import CODEC_KEY
from dgagent.engine.store import DeltaStore
from dgagent.errors import IntegrityError
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage

DATA = Path(__file__).parent / "data"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machine_code(seed: int, size: int, version: int) -> bytes:
    """ELF-like code: short instructions and rel32 calls across the whole member. Each version
    inserts a little code early on, so every call spanning it changes, as after a relink."""
    rng = random.Random(seed)
    insns: list[tuple[bytes, int | None]] = []
    pos = 0
    while pos < size:
        if rng.random() < 0.3:
            insns.append((b"\xe8", rng.randrange(size)))
            pos += 5
        else:
            n = rng.choice((1, 2, 3, 4))
            insns.append((rng.randbytes(n), None))
            pos += n
    for v in range(1, version + 1):
        at = len(insns) * v // 7
        insns[at:at] = [(bytes([0x90 + v] * 3), None)] * 5
    out = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9))
    starts, at = [], len(out)
    for op, target in insns:
        starts.append(at)
        at += len(op) + (4 if target is not None else 0)
    for (op, target), start in zip(insns, starts, strict=True):
        out += op
        if target is not None:
            goal = starts[min(target * len(starts) // size, len(starts) - 1)]
            out += struct.pack("<i", goal - (start + 5))
    return bytes(out)


def native_wheel(path: Path, version: int, *, so_size: int = 200_000, seed: int = 7) -> Path:
    """A wheel with a changing extension module and unchanged Python and data members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        stamp = (2024, 1, 1, 0, 0, 0)
        for i in range(5):
            text = f"def f{i}():\n    return {i}\n".encode() * 400
            z.writestr(zipfile.ZipInfo(f"pkg/mod{i}.py", stamp), text, zipfile.ZIP_DEFLATED)
        so = machine_code(seed, so_size, version)
        z.writestr(zipfile.ZipInfo("pkg/_native.cpython-311-x86_64-linux-gnu.so", stamp), so, 8)
        meta = f"Name: pkg\nVersion: 1.{version}\n".encode()
        z.writestr(zipfile.ZipInfo("pkg-1.0.dist-info/METADATA", stamp), meta, 8)
    return path


def expanded(path: Path, work: Path) -> Path:
    out = work / f"{path.name}.expanded"
    with out.open("wb") as f:
        archive.expand_for_delta(path, f)
    return out


def parts_of(delta: Path) -> list[bytes]:
    """The differ of each part of an archive-v2 delta."""
    data = delta.read_bytes()
    assert data.startswith(archive_v2.DELTA_MAGIC)
    at = len(archive_v2.DELTA_MAGIC)
    (count,) = struct.unpack_from("<I", data, at)
    return [struct.unpack_from("<cQQQ", data, at + 4 + 25 * i)[0] for i in range(count)]


def encode_and_decode(
    ref: Path, target: Path, work: Path, *, forms: tuple[Path, Path] | None = None
) -> tuple[archive_v2.Made, Path]:
    """Encode ``target`` against ``ref`` (their expanded forms, or ``forms``: the reference's
    source form and the target's expansion), decode, compare; (what was made, the delta)."""
    codec = Xdelta3()
    ref_form, target_form = forms or (expanded(ref, work), expanded(target, work))
    sides = (ref, ref_form), (target, target_form)
    delta = work / "v2.delta"
    made = archive_v2.encode(codec, *sides, delta, work)
    out = work / "rebuilt"
    archive_v2.decode(codec, sides[0], delta, out, work)
    assert out.read_bytes() == target.read_bytes()
    return made, delta


def test_native_member_gets_an_hdiffpatch_part_and_unchanged_members_are_copied(
    tmp_path: Path,
) -> None:
    ref = native_wheel(tmp_path / "pkg-1.0.whl", 0)
    target = native_wheel(tmp_path / "pkg-1.1.whl", 1)
    made, delta = encode_and_decode(ref, target, tmp_path)
    assert (made.hdiff, made.unchanged) == (1, 5)  # METADATA changed and is small: inline
    assert parts_of(delta) == [archive_v2.XDELTA3, archive_v2.HDIFFPATCH]


def test_hdiffpatch_beats_xdelta3_on_shifted_code_and_large_members_stay_with_xdelta3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = native_wheel(tmp_path / "pkg-1.0.whl", 0)
    target = native_wheel(tmp_path / "pkg-1.1.whl", 1)
    (tmp_path / "a").mkdir()
    _, with_hdiff = encode_and_decode(ref, target, tmp_path / "a")
    # Above the memory bound the member stays in the xdelta3 part, and still rebuilds.
    monkeypatch.setattr(archive_hdiff, "MAX_MEMBER", 100_000)
    (tmp_path / "b").mkdir()
    made, xdelta_only = encode_and_decode(ref, target, tmp_path / "b")
    assert made.hdiff == 0 and parts_of(xdelta_only) == [archive_v2.XDELTA3]
    assert with_hdiff.stat().st_size * 2 < xdelta_only.stat().st_size


def test_damaged_hdiffpatch_part_is_refused(tmp_path: Path) -> None:
    ref = native_wheel(tmp_path / "pkg-1.0.whl", 0)
    target = native_wheel(tmp_path / "pkg-1.1.whl", 1)
    _, delta = encode_and_decode(ref, target, tmp_path)
    data = bytearray(delta.read_bytes())
    data[-40] ^= 0xFF  # inside the last part, the HDiffPatch one
    delta.write_bytes(bytes(data))
    sides = (ref, expanded(ref, tmp_path))
    with pytest.raises(IntegrityError):
        archive_v2.decode(Xdelta3(), sides, delta, tmp_path / "o", tmp_path)
    delta.write_bytes(bytes(data[:30]))
    with pytest.raises(IntegrityError, match="truncated"):
        archive_v2.decode(Xdelta3(), sides, delta, tmp_path / "o", tmp_path)


def test_store_writes_v3_and_reads_it_back_with_a_cold_cache(
    store: DeltaStore, tmp_path: Path
) -> None:
    ours = DeltaStore(
        store.storage,
        settings=EngineSettings(cache_dir=store.settings.cache_dir, codec="archive"),
        cache=store.cache,
    )
    files = [native_wheel(tmp_path / f"pkg-1.{v}-py3-none-any.whl", v) for v in range(3)]
    results = [ours.put(f, f"rel/{f.name}") for f in files]
    assert [r.codec for r in results] == ["compat", archive.CODEC, archive.CODEC]
    head = ours.storage.head(f"rel/{files[2].name}.delta")
    assert head is not None and head.metadata is not None
    assert head.metadata[CODEC_KEY] == "archive-v3"
    cold = DeltaStore(
        store.storage, settings=EngineSettings(cache_dir=tmp_path / "cold" / "references")
    )
    for f in files:
        out = tmp_path / "out.whl"
        assert cold.get(f"rel/{f.name}", out).sha256 == sha(f)
        assert out.read_bytes() == f.read_bytes()


def test_an_archive_v1_store_written_before_v2_still_reads(tmp_path: Path) -> None:
    """tests/engine/data/archive-v1-store was written by dg-agent before archive-v2 (the script
    beside it, run at commit 5556eb7): a compat reference and an archive-v1 delta."""
    root = tmp_path / "store"
    shutil.copytree(DATA / "archive-v1-store", root)
    settings = EngineSettings(cache_dir=tmp_path / "cache" / "references")
    reader = open_store(LocalStorage(root), settings=settings)
    head = reader.storage.head("rel/pkg-1.1-py3-none-any.whl.delta")
    assert head is not None and head.metadata is not None
    assert head.metadata[CODEC_KEY] == archive.CODEC_V1
    out = tmp_path / "out.whl"
    got = reader.get("rel/pkg-1.1-py3-none-any.whl", out)
    assert (
        got.sha256
        == sha(out)
        == ("c5dc21b235a5e3834febaa050b3e8c4db929987a9dce539025a6734a0aa7630f")
    )
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        assert z.read("pkg/mod3.py").startswith(b"# v1\n")
    # and twice, from the expanded reference it cached the first time
    assert reader.get("rel/pkg-1.1-py3-none-any.whl", out).sha256 == got.sha256


def test_an_archive_v2_store_written_before_v3_still_reads(tmp_path: Path) -> None:
    """tests/engine/data/archive-v2-store was written by dg-agent before archive-v3 (the script
    beside it, run at commit b5567ea): a compat reference and an archive-v2 delta with an
    HDiffPatch part, made against the reference's expanded (not inflated) form."""
    root = tmp_path / "store"
    shutil.copytree(DATA / "archive-v2-store", root)
    settings = EngineSettings(cache_dir=tmp_path / "cache" / "references")
    reader = open_store(LocalStorage(root), settings=settings)
    name = "rel/nat-1.1-cp311-linux_x86_64.whl"
    head = reader.storage.head(f"{name}.delta")
    assert head is not None and head.metadata is not None
    assert head.metadata[CODEC_KEY] == archive.CODEC_V2
    out = tmp_path / "out.whl"
    want = "d31077e5a576df8123bc8d86377926e37d9c38643b12fc5f69f9d9d7024e8993"
    assert reader.get(name, out).sha256 == sha(out) == want
    assert out.read_bytes() == native_wheel(tmp_path / "again.whl", 1).read_bytes()
    assert reader.get(name, out).sha256 == want  # from the cached expanded reference


def test_remembered_choices_give_the_same_expansion(tmp_path: Path) -> None:
    """The reference's expanded form must come out the same on every machine and run: replaying
    remembered zlib choices (and ruling candidates out early) changes nothing in it."""
    memo = archive_deflate.Choices()
    for v in range(3):
        path = native_wheel(tmp_path / f"pkg-1.{v}.whl", v)
        fresh, replayed = io.BytesIO(), io.BytesIO()
        archive.expand(path, fresh, verify=False)
        archive.expand(path, replayed, verify=False, memo=memo)
        assert replayed.getvalue() == fresh.getvalue()
        full = io.BytesIO()
        archive.expand(path, full, verify=True)
        assert full.getvalue() == fresh.getvalue()
    assert len(memo.seen) >= 8  # 7 members, the changing ones once per version


def test_large_members_recompressed_in_the_background_land_in_place(tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(5):  # large and small members interleaved, at two levels
            words = [f"w{rng.randrange(9000)}".encode() for _ in range(500)]
            big = b" ".join(rng.choice(words) for _ in range(150_000 + 40_000 * i))
            assert len(big) >= archive_recompress.BATCH
            z.writestr(f"big{i}.txt", big, compresslevel=9 if i % 2 else 6)
            z.writestr(f"small{i}.txt", f"small {i}\n".encode() * 50)
    exp = expanded(path, tmp_path)
    out = io.BytesIO()
    with exp.open("rb") as src:
        assert archive.rebuild(src, out) == path.stat().st_size
    assert out.getvalue() == path.read_bytes()
    # A wrong CRC-32 in a member handed to a worker thread still fails the rebuild.
    data = bytearray(exp.read_bytes())
    with exp.open("rb") as src:
        first = next(r for r in archive.records(src) if r.tag == b"D")
    data[first.at - archive_deflate.RECORD.size + 5] ^= 0xFF  # big0's CRC-32
    with pytest.raises(IntegrityError, match="CRC-32"):
        archive.rebuild(io.BytesIO(bytes(data)), io.BytesIO())


def test_migrate_reads_v1_and_writes_v3_and_ls_stats_show_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    shutil.copytree(DATA / "archive-v1-store", src)
    wheels = [native_wheel(tmp_path / f"nat-1.{v}-cp311-linux_x86_64.whl", v) for v in range(2)]

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 0
        return capsys.readouterr().out

    for w in wheels:
        run("cp", "-q", "--codec", "archive", str(w), f"file://{src}/nat/")
    listing = run("ls", "-r", f"file://{src}/")
    assert "[archive-v1]" in listing and "[archive-v3]" in listing
    assert json.loads(run("stats", "--json", f"file://{src}/"))["total"]["archive_files"] == 2

    monkeypatch.setenv("DG_CODEC", "archive")
    dst = tmp_path / "dst"
    dst.mkdir()
    run("migrate", "-q", "--yes", "--no-preserve-prefix", f"file://{src}/", f"file://{dst}/")
    rows = json.loads(run("ls", "--json", "-r", f"file://{dst}/"))["files"]
    codecs = {Path(f["key"]).name: f["codec"] for f in rows}
    assert codecs["pkg-1.1-py3-none-any.whl"] in ("compat", archive.CODEC)
    assert codecs[wheels[1].name] == archive.CODEC
    back = tmp_path / "back"
    run("cp", "-q", "-r", f"file://{dst}/nat/", f"{back}/")
    assert all((back / w.name).read_bytes() == w.read_bytes() for w in wheels)
    run("cp", "-q", f"file://{dst}/rel/pkg-1.1-py3-none-any.whl", f"{back}/")
    assert sha(back / "pkg-1.1-py3-none-any.whl") == (
        "c5dc21b235a5e3834febaa050b3e8c4db929987a9dce539025a6734a0aa7630f"
    )


def test_rotation_makes_a_new_reference_and_archive_deltas_follow_it(
    store: DeltaStore, tmp_path: Path
) -> None:
    """The reference policy (rotate, the default) weighs archive deltas like any other: a version
    whose native code was rewritten becomes the next reference, and the one after it is an
    archive-v3 delta against that reference."""
    ours = DeltaStore(
        store.storage,
        settings=EngineSettings(
            cache_dir=store.settings.cache_dir, codec="archive", reference_policy="rotate"
        ),
        cache=store.cache,
    )
    files = [
        native_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", 0, seed=7),
        native_wheel(tmp_path / "pkg-2.0-py3-none-any.whl", 0, seed=8),  # all new code
        native_wheel(tmp_path / "pkg-2.1-py3-none-any.whl", 1, seed=8),
    ]
    results = [ours.put(f, f"rel/{f.name}") for f in files]
    assert results[1].reference_size == files[1].stat().st_size  # it became a reference
    assert results[2].codec == archive.CODEC and results[2].reference_size == 0
    head = ours.storage.head(f"rel/{files[2].name}.delta")
    assert head is not None and head.metadata is not None
    assert "/.dg/refs/" in head.metadata["dg-ref-key"]
    cold = DeltaStore(
        store.storage, settings=EngineSettings(cache_dir=tmp_path / "cold" / "references")
    )
    for f in files:
        assert cold.get(f"rel/{f.name}", tmp_path / "out.whl").sha256 == sha(f)


def test_doctests() -> None:
    for module in (archive_v2, archive_hdiff):
        assert doctest.testmod(module).attempted > 0
        assert doctest.testmod(module).failed == 0


def test_a_wheel_zlib_barely_reproduces_is_stored_as_compat(
    store: DeltaStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like a maturin wheel: its native member deflated by another deflater (here zlib with a
    strategy no candidate uses), only a small LICENSE reproducible. Not worth an archive delta."""
    original = zipfile._get_compressor  # type: ignore[attr-defined]

    def other_deflater(compress_type: int, compresslevel: int | None = None) -> Any:
        return zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_HUFFMAN_ONLY)

    files = []
    for v in range(2):
        path = tmp_path / f"rs-1.{v}-cp311-linux_x86_64.whl"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("LICENSE", b"MIT License\n" * 20)
            monkeypatch.setattr(zipfile, "_get_compressor", other_deflater)
            z.writestr("rs/_native.so", machine_code(5, 300_000, v))
            monkeypatch.setattr(zipfile, "_get_compressor", original)
        found = archive.expand(path, io.BytesIO(), verify=True)
        assert (found.members, found.verbatim) == (1, 1)
        assert not found.pays(path.stat().st_size)
        files.append(path)
    ours = DeltaStore(
        store.storage,
        settings=EngineSettings(cache_dir=store.settings.cache_dir, codec="archive"),
        cache=store.cache,
    )
    assert [ours.put(f, f"rs/{f.name}").codec for f in files] == ["compat", "compat"]
    assert ours.get(f"rs/{files[1].name}", tmp_path / "out.whl").sha256 == sha(files[1])


def test_members_applied_ahead_or_on_demand_rebuild_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader applies HDiffPatch parts while xdelta3 decodes the plan, up to PREFETCH bytes
    of members; the rest are applied when the rebuild reaches them."""
    wheels = []
    for v in range(2):
        path = tmp_path / f"two-1.{v}.whl"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            stamp = (2024, 1, 1, 0, 0, 0)
            for seed in (7, 8):
                so = machine_code(seed, 150_000, v)
                z.writestr(zipfile.ZipInfo(f"pkg/_m{seed}.so", stamp), so, zipfile.ZIP_DEFLATED)
        wheels.append(path)
    for budget in (archive_v2.PREFETCH, 1, 0):  # both ahead, the first only, none
        monkeypatch.setattr(archive_v2, "PREFETCH", budget)
        work = tmp_path / f"w{budget}"
        work.mkdir()
        made, delta = encode_and_decode(wheels[0], wheels[1], work)
        assert made.hdiff == 2
        assert parts_of(delta).count(archive_v2.HDIFFPATCH) == 2
