"""Stored bytes and encode/decode time per file family: compat codec, archive codec with
xdelta3 only, and archive codec with HDiffPatch for native members (what ``archive`` does).

    .venv/bin/python bench/codec_compare.py /tmp/corpus/botocore /tmp/wheels/numpy ...

Each argument is a folder holding successive versions of one artifact (sorted by name, oldest
first). For each codec the files are stored in order into a fresh local store (``file://``, so the
numbers are the engine's, not the network's), then read back with a cold cache and checked
bit-exact. Stored bytes include ``reference.bin``; "later" is what the files after the first
cost, the bytes stored beyond the reference. Prints one markdown table; not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from dgagent.client import open_store
from dgagent.engine import archive, archive_hdiff
from dgagent.fileio import sha256_file
from dgagent.settings import EngineSettings
from dgagent.storage import LocalStorage


@dataclass(frozen=True)
class Run:
    stored: int
    later_stored: int
    """Bytes stored for every file but the first (which makes the reference)."""
    encode: float
    decode: float
    encode_cpu: float
    """CPU seconds (ours and xdelta3's): steadier than wall time on a shared machine."""
    decode_cpu: float
    exact: bool
    later: str
    """How the files after the first were stored, e.g. "4 archive-v1"."""


VARIANTS = {
    "compat": ("compat", archive_hdiff.MAX_MEMBER),
    "archive, xdelta3 only": ("archive", 0),
    "archive": ("archive", archive_hdiff.MAX_MEMBER),
}
"""Name: (codec, largest member HDiffPatch may diff); 0 keeps every member with xdelta3."""


def measure(files: list[Path], variant: str, work: Path) -> Run:
    codec, archive_hdiff.MAX_MEMBER = VARIANTS[variant]
    archive.CHOICES.seen.clear()  # each variant starts as a fresh process would
    work = work / variant.replace(" ", "-").replace(",", "")
    root = work / codec / "store"
    root.mkdir(parents=True)
    settings = EngineSettings(cache_dir=work / codec / "cache" / "references", codec=codec)
    store = open_store(LocalStorage(root), settings=settings)
    stored = 0
    sizes: list[int] = []
    codecs: list[str] = []
    start, cpu = time.perf_counter(), _cpu()
    for f in files:
        result = store.put(f, f"fam/{f.name}")
        stored += result.stored_size + result.reference_size
        sizes.append(result.stored_size + result.reference_size)
        codecs.append(result.codec or "direct")
    encode, encode_cpu = time.perf_counter() - start, _cpu() - cpu
    cold = open_store(
        LocalStorage(root),
        settings=EngineSettings(cache_dir=work / codec / "cold" / "references"),
    )
    exact = True
    archive.CHOICES.seen.clear()  # a reader is another process: nothing remembered
    start, cpu = time.perf_counter(), _cpu()
    for f in files:
        out = work / codec / "out"
        cold.get(f"fam/{f.name}", out)
        exact &= sha256_file(out) == sha256_file(f)
    decode, decode_cpu = time.perf_counter() - start, _cpu() - cpu
    later = codecs[1:]
    kinds = ", ".join(f"{later.count(c)} {c}" for c in sorted(set(later)))
    return Run(stored, sum(sizes[1:]), encode, decode, encode_cpu, decode_cpu, exact, kinds)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="+", type=Path, help="folders of successive versions")
    parser.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="measure only these (repeatable; default: all; compat and archive give the ratio)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each variant N times and keep its fastest encode and decode (a shared "
        "machine's noise only ever adds time)",
    )
    args = parser.parse_args(argv)
    variants = args.variant or list(VARIANTS)
    print(
        "| family | files | original MB | codec | stored MB | stored / original | "
        "later versions: stored MB | later versions stored as | encode s (CPU s) | "
        "decode s, cold cache (CPU s) | bit-exact |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---|---:|---:|---|")
    for folder in args.families:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        original = sum(f.stat().st_size for f in files)
        results = {}
        with tempfile.TemporaryDirectory(prefix="codec-bench-") as tmp:
            every: dict[str, list[Run]] = {v: [] for v in variants}
            for i in range(max(1, args.repeat)):  # interleaved, so drift hits every variant
                for variant in variants:
                    every[variant].append(measure(files, variant, Path(tmp) / str(i)))
            for variant, runs in every.items():
                results[variant] = replace(
                    runs[0],
                    encode=min(r.encode for r in runs),
                    decode=min(r.decode for r in runs),
                    encode_cpu=min(r.encode_cpu for r in runs),
                    decode_cpu=min(r.decode_cpu for r in runs),
                    exact=all(r.exact for r in runs),
                )
        for codec, r in results.items():
            print(
                f"| {folder.name} | {len(files)} | {original / 1e6:.1f} | {codec} | "
                f"{r.stored / 1e6:.2f} | {r.stored / original:.3f} | "
                f"{r.later_stored / 1e6:.2f} | {r.later} | "
                f"{r.encode:.1f} ({r.encode_cpu:.1f}) | {r.decode:.1f} ({r.decode_cpu:.1f}) | "
                f"{'yes' if r.exact else 'NO'} |",
                flush=True,
            )
        if "compat" not in results or "archive" not in results:
            continue
        c, a = results["compat"], results["archive"]
        print(
            f"| {folder.name} | | | archive / compat | {a.stored / c.stored:.3f} | | "
            f"{a.later_stored / max(c.later_stored, 1):.3f} | | "
            f"{a.encode / c.encode:.2f}x ({a.encode_cpu / c.encode_cpu:.2f}x) | "
            f"{a.decode / max(c.decode, 1e-3):.2f}x "
            f"({a.decode_cpu / max(c.decode_cpu, 1e-3):.2f}x) | |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
