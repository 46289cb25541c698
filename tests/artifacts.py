"""Deterministic release artifacts for tests: successive versions that differ by a few percent."""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path


def source_tree(version: int, *, files: int = 24, seed: int = 7) -> dict[str, bytes]:
    """Text files like a source tree; each version edits a few of them and adds one."""
    rng = random.Random(seed)
    words = [f"sym{rng.randrange(10_000)}" for _ in range(400)]
    tree: dict[str, bytes] = {}
    for i in range(files):
        lines = [
            f"def f{i}_{n}({rng.choice(words)}): return {rng.choice(words)} + {n}"
            for n in range(120)
        ]
        tree[f"pkg/mod{i:02d}.py"] = "\n".join(lines).encode()
    blob = random.Random(seed + 1).randbytes(64 * 1024)
    tree["pkg/native.so"] = blob
    edit = random.Random(seed * 1000 + version)
    for v in range(1, version + 1):
        name = f"pkg/mod{(v * 5) % files:02d}.py"
        tree[name] += f"\n# change {v} {edit.random()}".encode()
        tree[f"pkg/new_in_{v}.py"] = f"VERSION = {v}\n".encode() * 20
    tree["VERSION"] = f"1.{version}.0\n".encode()
    return tree


def write_zip(path: Path, tree: dict[str, bytes], *, stored: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in sorted(tree.items()):
            method = zipfile.ZIP_STORED if name.endswith(stored) else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    return path


def write_jar(path: Path, tree: dict[str, bytes]) -> Path:
    tree = {"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\nCreated-By: tests\n", **tree}
    return write_zip(path, {k.replace(".py", ".class"): v for k, v in tree.items()})


def tar_bytes(tree: dict[str, bytes], *, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in sorted(tree.items()):
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_tar(path: Path, tree: dict[str, bytes]) -> Path:
    path.write_bytes(tar_bytes(tree))
    return path


def write_gzip9_tarball(path: Path, tree: dict[str, bytes]) -> Path:
    """``gzip -9`` of a tar file, with gzip's name and mtime header (what broke upstream)."""
    assert path.name.endswith(".tar.gz")
    plain = path.with_name(path.name[: -len(".gz")])
    plain.write_bytes(tar_bytes(tree))
    gzip_bin = shutil.which("gzip")
    assert gzip_bin, "gzip is needed for this test artifact"
    subprocess.run([gzip_bin, "-9", "-f", str(plain)], check=True)
    return path


def write_npm_tgz(path: Path, tree: dict[str, bytes]) -> Path:
    """An npm-pack-style tarball: entries under package/, gzip without a name, mtime 0."""
    raw = tar_bytes(tree, prefix="package/")
    with path.open("wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as g:
        g.write(raw)
    return path


def drifting(version: int, *, size: int = 400_000, seed: int = 11) -> bytes:
    """A binary whose versions drift apart: each one rewrites a few more 2 KB blocks, so the
    delta against an old version keeps growing and reference rotation sets in (about every
    ten versions at this size)."""
    data = bytearray(random.Random(seed).randbytes(size))
    for v in range(1, version + 1):
        edit = random.Random(seed * 1000 + v)
        for _ in range(4):
            at = edit.randrange(size - 2000)
            data[at : at + 2000] = edit.randbytes(2000)
    return bytes(data)


def write_series(folder: Path, count: int, *, name: str = "app", start: int = 0) -> list[Path]:
    """``count`` successive drifting versions ``<name>-1.<v>.tar``, one day apart by mtime."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in range(start, start + count):
        path = folder / f"{name}-1.{v}.tar"
        path.write_bytes(drifting(v))
        os.utime(path, (1_700_000_000 + v * 86_400,) * 2)
        paths.append(path)
    return paths
