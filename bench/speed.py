"""Sync and restore wall times: dg-agent vs deltaglider 6.2.0 vs a plain boto3 upload or copy.

Every sync is cold: an empty bucket (or store folder) and an empty reference cache. Restores fetch
the newest version of a family: cold with an empty cache, warm right after with the same cache.
deltaglider keeps its cache in a per-process temp dir, so its "warm" is a second cold run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from bench.context import Context
from bench.corpus import Family
from bench.measure import median, run, run_cpu, sha256, timed
from bench.servers import BIN

DG = str(BIN / "dg-agent")
UPSTREAM = str(BIN / "deltaglider")


@dataclass
class FamilySpeed:
    """Wall-time samples (seconds) of one family, and where the first run stored it."""

    sync: dict[str, list[float]] = field(default_factory=dict)
    sync_cpu: dict[str, list[float]] = field(default_factory=dict)
    """CPU seconds of the tool's process and its children (xdelta3), not the S3 server's."""
    restore: dict[str, list[float]] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)
    """tool → bucket (or store folder) of the first run, for the size figures."""
    restore_ok: dict[str, bool] = field(default_factory=dict)

    def add(self, table: dict[str, list[float]], tool: str, seconds: float) -> None:
        table.setdefault(tool, []).append(seconds)

    def medians(self) -> dict[str, Any]:
        return {
            "sync": {k: median(v) for k, v in self.sync.items()},
            "sync_cpu": {k: median(v) for k, v in self.sync_cpu.items()},
            "restore": {k: median(v) for k, v in self.restore.items()},
            "samples": {"sync": self.sync, "sync_cpu": self.sync_cpu, "restore": self.restore},
            "restore_ok": self.restore_ok,
        }


def sync_family(ctx: Context, fam: Family, speed: FamilySpeed, first: bool) -> None:
    """One cold sync of ``fam`` with each tool, to S3 and to the local store."""
    src = str(fam.root)
    bucket = ctx.bucket(f"dg-{fam.name}")
    env = ctx.env(ctx.fresh("cache-dg"))
    wall, cpu = run_cpu([DG, "sync", src, f"s3://{bucket}/{fam.name}/", "-q"], env)
    speed.add(speed.sync, "dg-agent s3", wall)
    speed.add(speed.sync_cpu, "dg-agent s3", cpu)

    up = ctx.bucket(f"up-{fam.name}")
    env_up = ctx.env(ctx.fresh("cache-up"))
    wall, cpu = run_cpu([UPSTREAM, "sync", "-q", src + "/", f"s3://{up}/{fam.name}/"], env_up)
    speed.add(speed.sync, "deltaglider s3", wall)
    speed.add(speed.sync_cpu, "deltaglider s3", cpu)

    plain = ctx.bucket(f"plain-{fam.name}")
    client = ctx.s3.client()

    def upload() -> None:
        for p in fam.files:
            client.upload_file(str(p), plain, f"{fam.name}/{p.name}")

    speed.add(speed.sync, "boto3 s3", timed(upload))

    store = ctx.fresh(f"store-{fam.name}")
    env_local = ctx.env(ctx.fresh("cache-dg"), s3=False)
    wall, cpu = run_cpu([DG, "sync", src, f"file://{store}/{fam.name}/", "-q"], env_local)
    speed.add(speed.sync, "dg-agent file", wall)
    speed.add(speed.sync_cpu, "dg-agent file", cpu)

    copy_to = ctx.fresh(f"copy-{fam.name}")

    def copy() -> None:
        for p in fam.files:
            shutil.copyfile(p, copy_to / p.name)

    speed.add(speed.sync, "copy file", timed(copy))
    if first:
        speed.buckets = {"dg-agent": bucket, "deltaglider": up, "plain": plain, "local": str(store)}


def restore_family(ctx: Context, fam: Family, speed: FamilySpeed) -> None:
    """Restore the newest version, cold then warm, with each tool; check it is bit-exact."""
    name = fam.newest.name
    want = sha256(fam.newest)
    b = speed.buckets
    ours_s3 = f"s3://{b['dg-agent']}/{fam.name}/{name}"
    ours_file = f"file://{b['local']}/{fam.name}/{name}"
    theirs = f"s3://{b['deltaglider']}/{fam.name}/{name}"
    plans: list[tuple[str, list[str], bool]] = [
        ("dg-agent s3", [DG, "cp", ours_s3], True),
        ("dg-agent file", [DG, "cp", ours_file], False),
        ("deltaglider s3", [UPSTREAM, "cp", theirs], True),
    ]
    for tool, argv, s3 in plans:
        env = ctx.env(ctx.fresh("cache-restore"), s3=s3)
        for temperature in ("cold", "warm"):
            out = ctx.fresh("restore") / name
            seconds = run([*argv, str(out)], env, check=False)
            ok = out.exists() and sha256(out) == want
            speed.restore_ok[f"{tool} {temperature}"] = (
                speed.restore_ok.get(f"{tool} {temperature}", True) and ok
            )
            if ok:
                speed.add(speed.restore, f"{tool} {temperature}", seconds)

    client = ctx.s3.client()
    out = ctx.fresh("restore") / name
    seconds = timed(lambda: client.download_file(b["plain"], f"{fam.name}/{name}", str(out)))
    speed.add(speed.restore, "boto3 s3", seconds)
    out = ctx.fresh("restore") / name
    speed.add(speed.restore, "copy file", timed(lambda: shutil.copyfile(fam.newest, out)))


def measure(ctx: Context, log: Any) -> dict[str, FamilySpeed]:
    results: dict[str, FamilySpeed] = {f.name: FamilySpeed() for f in ctx.families}
    for i in range(ctx.runs):
        for fam in ctx.families:
            log(f"sync run {i + 1}/{ctx.runs}: {fam.name}")
            sync_family(ctx, fam, results[fam.name], first=i == 0)
    for i in range(ctx.runs):
        for fam in ctx.families:
            log(f"restore run {i + 1}/{ctx.runs}: {fam.name}")
            restore_family(ctx, fam, results[fam.name])
    return results
