"""Retention on a real release series: store the first ``STORED`` versions, prune to the last
``KEEP``, and compare with storing only those ``KEEP`` to begin with.

Everything goes through the real CLI into a bucket of the local S3 server (moto on 127.0.0.1):

- ``dg-agent sync`` of the first ``STORED`` versions (reference policy ``rotate``, the default);
- ``dg-agent prune --keep-last KEEP --dryrun --json`` (what it says would come back), then the
  same without ``--dryrun`` (timed), and the bucket's own byte count after it;
- ``dg-agent sync`` of only the last ``KEEP`` versions into another folder: the bytes to beat
  (the issue: pruned ≤ ~1.1x that);
- the kept versions read back with an empty cache by ``dg-agent verify -r`` and by DeltaGlider
  6.2.0's ``cp``, each SHA-256 compared with the source file's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.measure import run_output, sha256
from bench.series import Log, release_order, stage
from bench.servers import BIN, S3Server, tool_env
from bench.speed import DG

STORED = 30
KEEP = 5
TARGET = 1.1
"""The issue's bound: pruned bytes over the bytes of storing only the kept versions."""
UPSTREAM = str(BIN / "deltaglider")


def _bucket_bytes(s3: S3Server, bucket: str, prefix: str) -> tuple[int, int]:
    """Bytes and objects under ``prefix``, from the server's own listing."""
    total = count = 0
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            total += obj["Size"]
            count += 1
    return total, count


def measure(folder: Path, work: Path, log: Log) -> dict[str, Any]:
    ordered = release_order(folder)[:STORED]
    if len(ordered) < KEEP + 2:
        return {"skipped": f"{folder} holds fewer than {KEEP + 2} versions"}
    files = stage(ordered, work / "all" / folder.name)
    kept = stage(ordered[-KEEP:], work / "kept" / folder.name)
    with S3Server() as s3:
        bucket = s3.bucket("prune")
        env = tool_env(work, s3.endpoint, work / "cache")
        series_url = f"s3://{bucket}/series/"
        log(f"prune: dg-agent sync of {len(files)} versions of {folder.name}")
        run_output([DG, "sync", "-q", str(files[0].parent), series_url], env)
        before, objects_before = _bucket_bytes(s3, bucket, "series/")
        log(f"prune: dg-agent prune --keep-last {KEEP} --dryrun, then for real")
        _, _, out = run_output(
            [DG, "prune", "--keep-last", str(KEEP), "--dryrun", "--json", series_url], env
        )
        dry = json.loads(out)
        started = time.monotonic()
        wall, cpu, out = run_output(
            [DG, "prune", "--keep-last", str(KEEP), "--json", series_url], env
        )
        done = json.loads(out)
        seconds = time.monotonic() - started
        after, objects_after = _bucket_bytes(s3, bucket, "series/")
        log(f"prune: dg-agent sync of only the last {KEEP}")
        run_output([DG, "sync", "-q", str(kept[0].parent), f"s3://{bucket}/alone/"], env)
        alone, _ = _bucket_bytes(s3, bucket, "alone/")
        log("prune: reading the kept versions back (dg-agent verify, DeltaGlider 6.2.0 cp)")
        cold = tool_env(work, s3.endpoint, work / "cache-cold")
        _, _, out = run_output([DG, "verify", "-r", "--json", series_url], cold)
        ours = {r["url"].rsplit("/", 1)[-1]: r.get("sha256") for r in json.loads(out)["results"]}
        theirs: dict[str, str | None] = {}
        for path in kept:
            dest = work / "upstream" / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            run_output([UPSTREAM, "cp", f"{series_url}{path.name}", str(dest)], cold)
            theirs[path.name] = sha256(dest) if dest.exists() else None
    expected = {p.name: sha256(p) for p in kept}
    return {
        "name": folder.name,
        "stored_versions": len(files),
        "kept_versions": KEEP,
        "original_all": sum(p.stat().st_size for p in files),
        "original_kept": sum(p.stat().st_size for p in kept),
        "before": before,
        "objects_before": objects_before,
        "dryrun_after": dry["stored_bytes_after"],
        "after": after,
        "objects_after": objects_after,
        "reported_after": done["stored_bytes_after"],
        "alone": alone,
        "ratio": after / alone if alone else None,
        "target": TARGET,
        "references_deleted": len(done["references_deleted"]),
        "retired": [
            {"files": len(r["files"]), "new_target": r["new_target"]} for r in done["retired"]
        ],
        "seconds": seconds,
        "wall": wall,
        "cpu": cpu,
        "read_back_dg_agent": sum(ours.get(n) == sha for n, sha in expected.items()),
        "read_back_deltaglider": sum(theirs.get(n) == sha for n, sha in expected.items()),
    }


def table(prune: dict[str, Any]) -> list[str]:
    if "skipped" in prune:
        return ["| retention | |", "|---|---|", f"| skipped | {prune['skipped']} |"]

    def mb(n: int) -> str:
        return f"{n / 1e6:,.2f}"

    ratio = prune["ratio"]
    verdict = "met" if ratio is not None and ratio <= prune["target"] else "NOT met"
    n, k = prune["stored_versions"], prune["kept_versions"]
    return [
        f"| {prune['name']}: {n} versions stored, pruned to the last {k} | MB | objects |",
        "|---|---:|---:|",
        f"| stored, all {n} (original {mb(prune['original_all'])} MB) | {mb(prune['before'])} | "
        f"{prune['objects_before']} |",
        f"| `prune --dryrun` said after | {mb(prune['dryrun_after'])} | |",
        f"| after `prune --keep-last {k}` ({prune['seconds']:.1f} s) | {mb(prune['after'])} | "
        f"{prune['objects_after']} |",
        f"| only the last {k} stored (original {mb(prune['original_kept'])} MB) | "
        f"{mb(prune['alone'])} | |",
        f"| pruned / only the last {k} (target ≤ {prune['target']}x: {verdict}) | {ratio:.3f}x | |",
        f"| references deleted / retired | {prune['references_deleted']} / "
        f"{len(prune['retired'])} | |",
        f"| read back bit-exact: dg-agent / DeltaGlider 6.2.0 | {prune['read_back_dg_agent']}/{k}"
        f" / {prune['read_back_deltaglider']}/{k} | |",
    ]
