"""The artifact families to measure: the real corpus (``../shared/corpus/fetch.sh``) when given or
fetched, else a built-in generator of synthetic release series.

A family is a folder of successive versions of one artifact. Files are staged into the work dir in
version order with increasing mtimes (as releases are built), so every tool sees the first version
first and makes it the DeltaSpace's reference.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

FETCH_SH = Path(__file__).resolve().parent / "fetch_corpus.sh"
"""The corpus script (a copy of ``../shared/corpus/fetch.sh``: pinned versions, idempotent)."""

ARTIFACT = re.compile(r"\.(whl|zip|jar|tgz|tar|tar\.gz|gz)$")


@dataclass(frozen=True)
class Family:
    name: str
    files: tuple[Path, ...]
    """In version order, oldest first."""

    @property
    def root(self) -> Path:
        return self.files[0].parent

    @property
    def original(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    @property
    def newest(self) -> Path:
        return self.files[-1]


def version_key(path: Path) -> tuple[object, ...]:
    """Natural order: numbers compare as numbers (5.10 after 5.9)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def fetch(cache_dir: Path) -> Path:
    """Run the corpus script into ``cache_dir`` (idempotent; needs the network once)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(FETCH_SH), str(cache_dir)], check=True, stdout=sys.stderr)
    return cache_dir


def stage(source: Path, dest: Path, *, limit: int | None = None) -> list[Family]:
    """Copy every family folder of ``source`` into ``dest`` with increasing mtimes."""
    families = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted((p for p in folder.iterdir() if ARTIFACT.search(p.name)), key=version_key)
        if limit:
            files = files[:limit]
        if len(files) < 2:
            continue
        staged = []
        for i, path in enumerate(files):
            target = dest / folder.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            stamp = 1_700_000_000 + 3600 * i
            os.utime(target, (stamp, stamp))
            staged.append(target)
        families.append(Family(folder.name, tuple(staged)))
    if not families:
        raise SystemExit(f"{source} holds no family folders with 2 or more artifacts")
    return families


# ------------------------------------------------------------------------ synthetic generator

_VOCABULARY = (
    "def class return import from self None True False if else for while in yield with as try "
    "except raise lambda async await value result config client request response error data "
    "buffer stream reader writer index cache delta store upload reference version build"
)
WORDS = tuple(_VOCABULARY.split())


def _text(rng: random.Random, size: int) -> bytes:
    words = rng.choices(WORDS, k=size // 6 + 1)
    lines = [" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
    return "\n".join(lines).encode()[:size]


@dataclass
class _Tree:
    """One release's files: name → content, mutated from version to version."""

    files: dict[str, bytes]

    def evolve(self, rng: random.Random, share: float, version: int) -> _Tree:
        """The next version: ``share`` of the members rewritten, one member added."""
        files = dict(self.files)
        names = sorted(files)
        for name in rng.sample(names, max(1, int(len(names) * share))):
            old = files[name]
            if name.endswith(".bin"):
                files[name] = rng.randbytes(len(old))
            else:
                cut = rng.randrange(len(old))
                files[name] = old[:cut] + _text(rng, rng.randrange(50, 2000)) + old[cut:]
        files[f"pkg/added_{version}.py"] = _text(rng, 20_000)
        files["pkg/VERSION"] = f"1.{version}.0\n".encode()
        return _Tree(files)


def _first_tree(rng: random.Random, size: int) -> _Tree:
    files: dict[str, bytes] = {}
    n = max(8, size // 40_000)
    for i in range(n):
        if i % 8 == 0:
            files[f"pkg/data/blob_{i}.bin"] = rng.randbytes(40_000)
        else:
            files[f"pkg/mod_{i}.py"] = _text(rng, rng.randrange(10_000, 70_000))
    return _Tree(files)


def _tar(tree: _Tree, *, gz: bool) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(tree.files):
            info = tarfile.TarInfo(name)
            info.size = len(tree.files[name])
            info.mtime = 0
            tar.addfile(info, io.BytesIO(tree.files[name]))
    data = out.getvalue()
    if gz:  # a fixed gzip header time, so equal trees give equal bytes
        data = data[:4] + b"\0\0\0\0" + data[8:]
    return data


def _zip(tree: _Tree) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in sorted(tree.files):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            # binary members stored, text deflated: as in jars and wheels
            info.compress_type = (
                zipfile.ZIP_STORED if name.endswith(".bin") else zipfile.ZIP_DEFLATED
            )
            z.writestr(info, tree.files[name])
    return out.getvalue()


SYNTHETIC = {
    # family: file suffix (the drift series rewrites 15% of its members per version, others 2%)
    "synth-zip": ".zip",
    "synth-tar": ".tar",
    "synth-tgz": ".tar.gz",
    "synth-drift": ".tar",
}


def synthesize(dest: Path, *, versions: int, size: int, seed: int = 5) -> list[Family]:
    """Write the synthetic release series into ``dest``; deterministic for a given seed."""
    families = []
    for name, suffix in SYNTHETIC.items():
        rng = random.Random(f"{seed}-{name}")
        tree = _first_tree(rng, size)
        share = 0.15 if name == "synth-drift" else 0.02
        files = []
        for v in range(versions):
            if v:
                tree = tree.evolve(rng, share, v)
            data = _zip(tree) if suffix == ".zip" else _tar(tree, gz=suffix == ".tar.gz")
            path = dest / name / f"app-1.{v}.0{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            stamp = 1_700_000_000 + 3600 * v
            os.utime(path, (stamp, stamp))
            files.append(path)
        families.append(Family(name, tuple(files)))
    return families


def synthetic_series(dest: Path, *, versions: int, size: int, seed: int = 7) -> list[Path]:
    """One tar series of about ``size`` bytes per version (for the agent's artifact figure)."""
    rng = random.Random(f"{seed}-series")
    tree = _first_tree(rng, size)
    out = []
    for v in range(versions):
        if v:
            tree = tree.evolve(rng, 0.02, v)
        path = dest / f"artifact-2.{v}.0.tar"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_tar(tree, gz=False))
        out.append(path)
    return out
