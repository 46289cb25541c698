"""The archive codec: bit-exact expansion and rebuild of zip and gzip, and the store using it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import random
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dgagent.agent import config as config_file
from dgagent.cli.main import main
from dgagent.engine import archive, archive_deflate
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.metadata import CODEC_KEY, Kind, parse_metadata
from dgagent.engine.store import DeltaStore, Entry
from dgagent.errors import IntegrityError
from dgagent.settings import EngineSettings, from_env
from dgagent.storage import S3Options, S3Storage
from tests import artifacts

UPSTREAM = Path(sys.executable).parent / "deltaglider"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def round_trip(path: Path, work: Path, *, verify: bool = True) -> archive.Expansion:
    """Expand and rebuild ``path``; the rebuilt bytes must be the original ones."""
    expanded, rebuilt = work / f"{path.name}.exp", work / f"{path.name}.out"
    with expanded.open("wb") as f:
        found = archive.expand(path, f, verify=verify)
    with expanded.open("rb") as src, rebuilt.open("wb") as dest:
        size = archive.rebuild(src, dest)
    assert size == path.stat().st_size
    assert rebuilt.read_bytes() == path.read_bytes()
    return found


def text_member(seed: int, size: int = 20_000) -> bytes:
    rng = random.Random(seed)
    words = [f"w{rng.randrange(5000)}" for _ in range(300)]
    return " ".join(rng.choice(words) for _ in range(size // 5)).encode()[:size]


def wheel_tree(version: int, members: int = 40) -> dict[str, bytes]:
    """Many deflated members; each version rewrites the start of one of them."""
    tree = {f"pkg/mod{i:02d}.py": text_member(i) for i in range(members)}
    for v in range(1, version + 1):
        name = f"pkg/mod{(v * 7) % members:02d}.py"
        tree[name] = f"# version {v}\n".encode() + tree[name]
    tree["pkg-1.0.dist-info/METADATA"] = f"Name: pkg\nVersion: 1.{version}\n".encode()
    return tree


def write_wheel(path: Path, tree: dict[str, bytes], **options: Any) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **options) as z:
        for name, data in sorted(tree.items()):
            z.writestr(
                zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED
            )
    return path


class _Unseekable(io.RawIOBase):
    """A write-only stream without tell(): zipfile then writes data descriptors."""

    def __init__(self, sink: io.BufferedWriter) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.sink.write(data)

    def tell(self) -> int:
        raise OSError("not seekable")


class _FlushingDeflate:
    """Raw deflate with a full flush in the middle: valid, but no plain zlib run makes it."""

    def __init__(self) -> None:
        self._c = zlib.compressobj(6, zlib.DEFLATED, -15)

    def compress(self, data: bytes) -> bytes:
        half = len(data) // 2
        flushed = self._c.compress(data[:half]) + self._c.flush(zlib.Z_FULL_FLUSH)
        return flushed + self._c.compress(data[half:])

    def flush(self) -> bytes:
        return self._c.flush()


# ------------------------------------------------------------ the format alone


@pytest.mark.parametrize("verify", [True, False])
def test_wheel_jar_and_mixed_zip_round_trip(tmp_path: Path, verify: bool) -> None:
    tree = {**artifacts.source_tree(2), "big.txt": text_member(9, 400_000)}  # > one probe
    wheel = round_trip(write_wheel(tmp_path / "a.whl", tree), tmp_path, verify=verify)
    assert wheel.kind == "zip" and wheel.members == len(tree) and wheel.verbatim == 0
    jar = round_trip(artifacts.write_jar(tmp_path / "a.jar", tree), tmp_path, verify=verify)
    assert jar.members == len(tree) + 1
    zipped = artifacts.write_zip(tmp_path / "m.zip", tree, stored=(".so",))
    mixed = round_trip(zipped, tmp_path, verify=verify)
    assert mixed.members == len(tree) - 1  # the stored member is not a deflate stream


@pytest.mark.parametrize("level", [1, 9])
def test_other_zlib_levels_are_found(tmp_path: Path, level: int) -> None:
    path = tmp_path / f"l{level}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for name, data in artifacts.source_tree(1).items():
            z.writestr(name, data)
    assert round_trip(path, tmp_path).verbatim == 0


def test_zip64_structures_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "z64.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("forced.txt", "w", force_zip64=True) as member:
            member.write(text_member(1))
        # Small limits make zipfile write zip64 extra fields, a zip64 end record and locator.
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
        monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)
        for i in range(5):
            z.writestr(f"m{i}.txt", text_member(i + 10, 5000))
    monkeypatch.undo()
    raw = path.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
    assert round_trip(path, tmp_path).members == 6


def test_data_descriptors_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "dd.zip"
    with (
        path.open("wb") as sink,
        zipfile.ZipFile(_Unseekable(sink), "w", zipfile.ZIP_DEFLATED) as z,
    ):
        for name, data in artifacts.source_tree(1).items():
            z.writestr(name, data)
    with zipfile.ZipFile(path) as z:
        assert all(info.flag_bits & 0x08 for info in z.infolist())
    assert round_trip(path, tmp_path).verbatim == 0


def test_odd_extra_fields_and_comments_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "extra.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.comment = b"archive comment PK\x05\x06 with a fake end record inside"
        for i, (name, data) in enumerate(sorted(artifacts.source_tree(1).items())):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.extra = struct.pack("<HH", 0xCAFE, 4) + i.to_bytes(4, "little")
            info.comment = b"member comment"
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    assert round_trip(path, tmp_path).verbatim == 0


def test_member_not_made_by_plain_zlib_is_kept_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = zipfile._get_compressor  # type: ignore[attr-defined]

    def compressor(compress_type: int, compresslevel: int | None = None) -> Any:
        if compress_type == zipfile.ZIP_DEFLATED:
            return _FlushingDeflate()
        return original(compress_type, compresslevel)

    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        monkeypatch.setattr(zipfile, "_get_compressor", compressor)
        z.writestr("odd.txt", text_member(3))
        monkeypatch.setattr(zipfile, "_get_compressor", original)
        z.writestr("plain.txt", text_member(4))
    with zipfile.ZipFile(path) as z:
        assert z.read("odd.txt") == text_member(3)
    found = round_trip(path, tmp_path)
    assert (found.members, found.verbatim) == (1, 1)


def flushing_zip(path: Path, monkeypatch: pytest.MonkeyPatch, odd: bytes, version: int = 0) -> Path:
    """A zip whose member odd.txt was deflated with a full flush half way, beside plain ones."""
    original = zipfile._get_compressor  # type: ignore[attr-defined]

    def compressor(compress_type: int, compresslevel: int | None = None) -> Any:
        if compress_type == zipfile.ZIP_DEFLATED:
            return _FlushingDeflate()
        return original(compress_type, compresslevel)

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        monkeypatch.setattr(zipfile, "_get_compressor", compressor)
        z.writestr("odd.txt", odd)
        monkeypatch.setattr(zipfile, "_get_compressor", original)
        for i in range(8):
            z.writestr(f"plain{i}.txt", f"v{version}\n".encode() + text_member(40 + i))
    return path


def test_a_late_difference_is_caught_and_the_store_uses_compat(
    store: DeltaStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that matches zlib on its first 64 KiB only: full verification keeps it verbatim;
    the store's cheaper expansion trusts a single prefix match, misses it, and its decode check
    falls back to compat. (One candidate only, so that the prefix match is not ambiguous.)"""
    monkeypatch.setattr(archive_deflate, "CANDIDATES", (archive_deflate.Params(6),))
    monkeypatch.setattr(archive_deflate, "PROBE", 64 * 1024)  # the flush lies beyond the probe
    monkeypatch.setattr(archive_deflate, "PROBE_PLAIN", 256 * 1024)
    # odd.txt changes too: an unchanged member would be copied from the reference untouched.
    files = [
        flushing_zip(tmp_path / f"app-1.{v}.zip", monkeypatch, text_member(70 + v, 1_000_000), v)
        for v in range(2)
    ]
    found = round_trip(files[1], tmp_path, verify=True)
    assert (found.members, found.verbatim) == (8, 1)
    results = [store.put(f, f"rel/{f.name}", codec="archive") for f in files]
    assert [r.codec for r in results] == ["compat", "compat"]
    out = tmp_path / "out.zip"
    assert store.get(f"rel/{files[1].name}", out).sha256 == sha(files[1])


def test_a_gzip_that_would_not_rebuild_never_becomes_the_reference(
    store: DeltaStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_deflate, "CANDIDATES", (archive_deflate.Params(6),))
    monkeypatch.setattr(archive_deflate, "PROBE", 64 * 1024)
    monkeypatch.setattr(archive_deflate, "PROBE_PLAIN", 256 * 1024)
    body = _FlushingDeflate()
    data = text_member(80, 1_000_000)
    raw = body.compress(data) + body.flush()
    path = tmp_path / "odd-1.0.tgz"
    trailer = struct.pack("<II", zlib.crc32(data), len(data))
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(4) + b"\x00\xff" + raw + trailer)
    assert gzip.decompress(path.read_bytes()) == data
    result = store.put(path, f"rel/{path.name}", codec="archive")
    assert result.kind is Kind.DIRECT
    assert store.storage.head("rel/reference.bin") is None
    out = tmp_path / "out.tgz"
    assert store.get(f"rel/{path.name}", out).sha256 == sha(path)


def test_gzip_by_python_and_by_gnu_gzip(tmp_path: Path) -> None:
    tree = artifacts.source_tree(1)
    by_python = artifacts.write_npm_tgz(tmp_path / "a.tgz", tree)
    assert round_trip(by_python, tmp_path).members == 1
    plain = tmp_path / "b.tar"
    plain.write_bytes(artifacts.tar_bytes(tree))
    gzip_bin = shutil.which("gzip")
    assert gzip_bin
    for level in ("-6", "-9"):
        out = tmp_path / f"b{level}.tar.gz"
        with out.open("wb") as f:
            subprocess.run([gzip_bin, level, "-N", "-c", str(plain)], stdout=f, check=True)
        assert out.read_bytes()[3] & 0x08  # FNAME: the header carries the name
        found = round_trip(out, tmp_path)
        assert found.kind == "gzip" and found.members + found.verbatim == 1


def test_truncated_and_lying_archives_stay_verbatim(tmp_path: Path) -> None:
    good = write_wheel(tmp_path / "good.zip", wheel_tree(0, members=6))
    members = round_trip(good, tmp_path).members
    raw = good.read_bytes()
    eocd = raw.rfind(b"PK\x05\x06")
    cases: dict[str, bytes] = {
        "truncated.zip": raw[: len(raw) // 2],
        "cd-past-eof.zip": raw[: eocd + 16] + struct.pack("<I", len(raw) * 4) + raw[eocd + 20 :],
        "truncated.gz": gzip.compress(text_member(5), mtime=0)[:-100],
        "not-deflate.gz": b"\x1f\x8b\x08\x00" + bytes(6) + os.urandom(2000),
    }
    first_cd = raw.find(b"PK\x01\x02")
    for label, delta in (("size-too-big.zip", 5), ("size-too-small.zip", -5)):
        (csize,) = struct.unpack_from("<I", raw, first_cd + 20)
        cases[label] = (
            raw[: first_cd + 20] + struct.pack("<I", csize + delta) + raw[first_cd + 24 :]
        )
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        found = round_trip(path, tmp_path)
        if name.startswith("size-"):
            assert (found.members, found.verbatim) == (members - 1, 1), name
        else:
            assert found.members == 0, name


def test_a_damaged_expanded_form_is_refused(tmp_path: Path) -> None:
    path = write_wheel(tmp_path / "a.whl", wheel_tree(0, members=3))
    expanded = tmp_path / "a.exp"
    with expanded.open("wb") as f:
        archive.expand(path, f)
    data = bytearray(expanded.read_bytes())
    at = data.find(text_member(1)[:50])
    data[at + 10] ^= 0x01  # one plain byte: the member's CRC-32 no longer matches
    with pytest.raises(IntegrityError, match="CRC-32"), io.BytesIO() as out:
        archive.rebuild(io.BytesIO(bytes(data)), out)
    with pytest.raises(IntegrityError), io.BytesIO() as out:
        archive.rebuild(io.BytesIO(bytes(data[: len(data) // 2])), out)


def test_codec_setting_from_env() -> None:
    assert from_env({}).codec == "compat"
    assert from_env({"DG_CODEC": "archive"}).codec == "archive"
    with pytest.raises(ValueError, match="DG_CODEC"):
        from_env({"DG_CODEC": "zip"})


# ------------------------------------------------------------------ the store


def archive_store(store: DeltaStore) -> DeltaStore:
    """The same storage and cache, with the archive codec as the default."""
    settings = EngineSettings(cache_dir=store.settings.cache_dir, codec="archive")
    return DeltaStore(store.storage, settings=settings, cache=store.cache)


Maker = Callable[[Path, dict[str, bytes]], Path]
FAMILIES: dict[str, tuple[str, Maker]] = {
    "whl": (".whl", write_wheel),
    "jar": (".jar", artifacts.write_jar),
    "tgz": (".tgz", artifacts.write_npm_tgz),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_archive_series_round_trips(store: DeltaStore, tmp_path: Path, family: str) -> None:
    suffix, maker = FAMILIES[family]
    ours = archive_store(store)
    (tmp_path / "src").mkdir()
    files = [maker(tmp_path / "src" / f"app-1.{v}{suffix}", wheel_tree(v)) for v in range(3)]
    results = [ours.put(f, f"rel/{f.name}") for f in files]
    assert all(r.kind is Kind.DELTA for r in results)
    # a gzip reference can only be decoded by the archive codec, a zip one stays compat
    assert results[0].codec == (archive.CODEC if family == "tgz" else "compat")
    assert [r.codec for r in results[1:]] == [archive.CODEC] * 2
    fresh = DeltaStore(store.storage, settings=EngineSettings(cache_dir=tmp_path / "c2"))
    for f, result in zip(files, results, strict=True):
        out = tmp_path / "out" / f.name
        out.parent.mkdir(exist_ok=True)
        for reader in (store, fresh):  # the writer's warm caches, and cold ones
            assert reader.get(f"rel/{f.name}", out).sha256 == sha(f) == result.sha256
    head = store.storage.head(f"rel/{files[2].name}.delta")
    assert head is not None and head.metadata is not None
    assert head.metadata[CODEC_KEY] == archive.CODEC
    assert parse_metadata(head.key, head.metadata).codec == archive.CODEC
    listed = {
        e.key: e.codec for e in store.list_files("rel/", recursive=True) if isinstance(e, Entry)
    }
    assert listed[f"rel/{files[2].name}"] == archive.CODEC


def test_archive_delta_against_a_compat_reference(store: DeltaStore, tmp_path: Path) -> None:
    first = write_wheel(tmp_path / "app-1.0.whl", wheel_tree(0))
    second = write_wheel(tmp_path / "app-1.1.whl", wheel_tree(1))
    assert store.put(first, "rel/app-1.0.whl").codec == "compat"
    result = store.put(second, "rel/app-1.1.whl", codec="archive")
    assert result.codec == archive.CODEC and result.reference_size == 0
    out = tmp_path / "out.whl"
    assert store.get("rel/app-1.1.whl", out).sha256 == sha(second)
    assert store.verify("rel/app-1.1.whl").sha256 == sha(second)


def test_archive_stores_clearly_less_than_compat_on_a_wheel_series(
    store: DeltaStore, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    files = [write_wheel(tmp_path / "src" / f"pkg-1.{v}.whl", wheel_tree(v)) for v in range(5)]
    totals = {}
    for codec in ("compat", "archive"):
        results = [store.put(f, f"{codec}/{f.name}", codec=codec) for f in files]
        assert all(r.kind is Kind.DELTA for r in results)
        totals[codec] = sum(r.stored_size for r in results[1:])
    assert totals["archive"] * 5 < totals["compat"], totals


def test_nothing_reproducible_falls_back_to_compat(
    store: DeltaStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = archive_store(store)
    files = [
        artifacts.write_tar(tmp_path / f"app-1.{v}.tar", artifacts.source_tree(v)) for v in range(2)
    ]
    assert [ours.put(f, f"rel/{f.name}").codec for f in files] == ["compat", "compat"]
    # a zip whose directory points past the end: nothing is expanded, compat is used
    zips = [write_wheel(tmp_path / f"z-1.{v}.zip", wheel_tree(v, members=6)) for v in range(2)]
    raw = zips[1].read_bytes()
    eocd = raw.rfind(b"PK\x05\x06")
    zips[1].write_bytes(raw[: eocd + 16] + struct.pack("<I", len(raw) * 4) + raw[eocd + 20 :])
    results = [ours.put(z, f"zips/{z.name}") for z in zips]
    assert results[1].codec == "compat"
    out = tmp_path / "out.zip"
    assert ours.get(f"zips/{zips[1].name}", out).sha256 == sha(zips[1])


def test_damaged_expanded_cache_is_rebuilt(store: DeltaStore, tmp_path: Path) -> None:
    ours = archive_store(store)
    files = [write_wheel(tmp_path / f"app-1.{v}.whl", wheel_tree(v)) for v in range(2)]
    for f in files:
        ours.put(f, f"rel/{f.name}")
    entries = [p for p in (ours.expanded.cache.root / "refs").rglob("*") if p.is_file()]
    assert len(entries) == 1
    entries[0].write_bytes(b"garbage")
    out = tmp_path / "out.whl"
    assert ours.get(f"rel/{files[1].name}", out).sha256 == sha(files[1])
    for index in (ours.expanded.cache.root / "index").glob("*"):
        index.write_text("0" * 64)  # an index naming content nobody can produce
    assert ours.get(f"rel/{files[1].name}", out).sha256 == sha(files[1])


def test_a_cached_source_form_read_unchecked_is_checked_and_made_again_when_a_read_fails(
    store: DeltaStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Reads skip the SHA-256 pass over the cached inflated form; damaged bytes in it (same
    size, same name) are caught by the file's SHA-256 (or the members' CRC-32), and the form is
    checked, made again and the file read once more."""
    ours = archive_store(store)
    files = [write_wheel(tmp_path / f"app-1.{v}.whl", wheel_tree(v)) for v in range(2)]
    for f in files:
        ours.put(f, f"rel/{f.name}")
    (entry,) = [p for p in (ours.expanded.cache.root / "refs").rglob("*") if p.is_file()]
    data = bytearray(entry.read_bytes())
    for at in range(64, len(data), 512):  # a read uses only some of it: damage it all over
        data[at] ^= 0x01
    entry.write_bytes(bytes(data))
    out = tmp_path / "out.whl"
    with caplog.at_level(logging.INFO, logger="dgagent.engine.expanded"):
        assert ours.get(f"rel/{files[1].name}", out).sha256 == sha(files[1])
    assert "checking it and retrying" in caplog.text
    (again,) = [p for p in (ours.expanded.cache.root / "refs").rglob("*") if p.is_file()]
    assert hashlib.sha256(again.read_bytes()).hexdigest() == again.name  # repaired
    assert ours.get(f"rel/{files[1].name}", out).sha256 == sha(files[1])


def test_unknown_codec_is_refused_without_a_file(store: DeltaStore, tmp_path: Path) -> None:
    ours = archive_store(store)
    files = [write_wheel(tmp_path / f"app-1.{v}.whl", wheel_tree(v)) for v in range(2)]
    for f in files:
        ours.put(f, f"rel/{f.name}")
    key = f"rel/{files[1].name}.delta"
    head = store.storage.head(key)
    assert head is not None and head.metadata is not None
    moved = tmp_path / "delta"
    with moved.open("wb") as sink:
        store.storage.download(key, sink)
    store.storage.upload(key, moved, {**head.metadata, CODEC_KEY: "archive-v9"})
    out = tmp_path / "out.whl"
    with pytest.raises(Exception, match="archive-v9"):
        store.get(f"rel/{files[1].name}", out)
    assert not out.exists()


def test_upstream_refuses_an_archive_delta_and_writes_nothing(
    bucket: str, s3_options: S3Options, s3_endpoint: str, tmp_path: Path
) -> None:
    settings = EngineSettings(cache_dir=tmp_path / "cache" / "references", codec="archive")
    cache = ReferenceCache(settings.cache_dir)
    ours = DeltaStore(S3Storage(bucket, s3_options), settings=settings, cache=cache)
    files = [write_wheel(tmp_path / f"app-1.{v}.zip", wheel_tree(v)) for v in range(2)]
    assert [ours.put(f, f"rel/{f.name}").codec for f in files] == ["compat", archive.CODEC]
    home, tmp = tmp_path / "home", tmp_path / "tmpdir"
    home.mkdir()
    tmp.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "DG_SUPPRESS_DEPRECATION": "1"}
    dest = tmp_path / "down"
    dest.mkdir()

    def upstream_cp(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(UPSTREAM), "cp", f"s3://{bucket}/rel/{name}", str(dest / name)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = upstream_cp(files[1].name)
    assert refused.returncode != 0, refused.stdout
    assert list(dest.iterdir()) == []
    readable = upstream_cp(files[0].name)  # the compat zero-diff stays readable by upstream
    assert readable.returncode == 0, readable.stderr
    assert sha(dest / files[0].name) == sha(files[0])


# ---------------------------------------------------------- commands and config


def test_cp_sync_ls_stats_and_watch_config_carry_the_codec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "dist"
    src.mkdir()
    files = [write_wheel(src / f"app-1.{v}.whl", wheel_tree(v)) for v in range(3)]
    root = tmp_path / "store"
    root.mkdir()
    url = f"file://{root}"

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 0
        return capsys.readouterr().out

    run("cp", "-q", "--codec", "archive", str(files[0]), f"{url}/rel/")
    run("cp", "-q", "--codec", "archive", str(files[1]), f"{url}/rel/")
    run("sync", "-q", "--codec", "archive", str(src), f"{url}/rel/")
    rows = json.loads(run("ls", "--json", f"{url}/rel/"))["files"]
    listed = {Path(f["key"]).name: f["codec"] for f in rows}
    assert listed == {
        "app-1.0.whl": "compat",
        "app-1.1.whl": archive.CODEC,
        "app-1.2.whl": archive.CODEC,
    }
    assert f"[{archive.CODEC}]" in run("ls", f"{url}/rel/")
    stats = json.loads(run("stats", "--json", f"{url}/"))
    assert stats["total"]["archive_files"] == 2
    out = tmp_path / "back"
    run("cp", "-q", "-r", f"{url}/rel/", f"{out}/")
    assert all(sha(out / f.name) == sha(f) for f in files)
    with pytest.raises(SystemExit):
        main(["cp", "--codec", "zip", str(files[0]), f"{url}/rel/"])

    config = tmp_path / "agent.toml"
    config.write_text(f'[[watch]]\ndir = "{src}"\nurl = "{url}/w/"\ncodec = "archive"\n')
    assert config_file.load(config).watches[0].codec == "archive"
    config.write_text(f'[[watch]]\ndir = "{src}"\nurl = "{url}/w/"\ncodec = "zip"\n')
    with pytest.raises(ValueError, match="codec"):
        config_file.load(config)
