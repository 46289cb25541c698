"""Stored bytes per family: dg-agent, deltaglider 6.2.0, raw xdelta3, plain uploads; and how many
files deltaglider reads back bit-exact (from its own bucket, and from dg-agent's), and how many
of deltaglider's dg-agent reads back.

The raw xdelta3 figure is the engine's limit for a store with one reference per family: the first
version whole, every later one as ``xdelta3 -e -9 -D -R`` against it, or whole when the delta is
not smaller (``-D -R`` only matters on gzip data, where without it the delta does not rebuild the
file; ``-B`` covers references above xdelta3's 64 MiB default window).
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.corpus import Family
from bench.measure import sha256
from bench.speed import DG, UPSTREAM, FamilySpeed

MIB64 = 64 * 1024 * 1024


@dataclass
class FamilySize:
    files: int
    original: int
    dg_agent: int
    deltaglider: int
    xdelta3: int
    plain: int
    deltaglider_reads_own: int
    deltaglider_reads_ours: int
    dg_agent_reads_theirs: int


def raw_xdelta3(fam: Family, work: Path) -> int:
    ref = fam.files[0]
    total = ref.stat().st_size
    window = str(max(MIB64, ref.stat().st_size))
    for target in fam.files[1:]:
        out = work / (target.name + ".vcdiff")
        check = work / (target.name + ".check")
        argv = ["xdelta3", "-e", "-9", "-D", "-R", "-f", "-B", window, "-s", str(ref)]
        subprocess.run([*argv, str(target), str(out)], check=True)
        subprocess.run(
            ["xdelta3", "-d", "-D", "-f", "-s", str(ref), str(out), str(check)], check=True
        )
        rebuilt = sha256(check) == sha256(target)
        size = target.stat().st_size
        total += min(out.stat().st_size, size) if rebuilt else size
        out.unlink()
        check.unlink()
    return total


def reads_back(ctx: Context, fam: Family, bucket: str, tool: str = UPSTREAM) -> int:
    """How many files of ``fam`` the ``tool``'s ``cp`` rebuilds bit-exact from ``bucket``."""
    env = ctx.env(ctx.fresh("cache-read"))
    good = 0
    for path in fam.files:
        out = ctx.fresh("read") / path.name
        argv = [tool, "cp", f"s3://{bucket}/{fam.name}/{path.name}", str(out)]
        subprocess.run(argv, env=env, capture_output=True, check=False)
        good += out.exists() and sha256(out) == sha256(path)
    return good


def measure(ctx: Context, speeds: dict[str, FamilySpeed], log: Any) -> dict[str, FamilySize]:
    sizes = {}
    for fam in ctx.families:
        log(f"sizes: {fam.name}")
        b = speeds[fam.name].buckets
        sizes[fam.name] = FamilySize(
            files=len(fam.files),
            original=fam.original,
            dg_agent=ctx.s3.bucket_bytes(b["dg-agent"], fam.name + "/"),
            deltaglider=ctx.s3.bucket_bytes(b["deltaglider"], fam.name + "/"),
            xdelta3=raw_xdelta3(fam, ctx.fresh("xdelta3")),
            plain=ctx.s3.bucket_bytes(b["plain"], fam.name + "/"),
            deltaglider_reads_own=reads_back(ctx, fam, b["deltaglider"]),
            deltaglider_reads_ours=reads_back(ctx, fam, b["dg-agent"]),
            dg_agent_reads_theirs=reads_back(ctx, fam, b["deltaglider"], DG),
        )
    return sizes


def as_json(sizes: dict[str, FamilySize]) -> dict[str, Any]:
    return {name: asdict(s) for name, s in sizes.items()}
