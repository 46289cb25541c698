"""Retention on a real release series: store the first ``STORED`` versions, prune to the last
``KEEP`` (for each of ``KEEPS``), and compare with storing only those to begin with.

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
from pathlib import Path
from typing import Any

from bench.measure import run_output, sha256
from bench.series import Log, release_order, stage
from bench.servers import BIN, S3Server, tool_env
from bench.speed import DG

STORED = 30
KEEPS = (5, 8)
"""How many versions each run keeps (each run stores the series again)."""
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


def measure(folder: Path, work: Path, log: Log, keeps: tuple[int, ...] = KEEPS) -> dict[str, Any]:
    ordered = release_order(folder)[:STORED]
    if len(ordered) < max(keeps) + 2:
        return {"skipped": f"{folder} holds fewer than {max(keeps) + 2} versions"}
    files = stage(ordered, work / "all" / folder.name)
    result: dict[str, Any] = {
        "name": folder.name,
        "stored_versions": len(files),
        "original_all": sum(p.stat().st_size for p in files),
        "target": TARGET,
        "runs": [],
    }
    with S3Server() as s3:
        bucket = s3.bucket("prune")
        for keep in keeps:
            kept = stage(ordered[-keep:], work / f"kept-{keep}" / folder.name)
            run = _one(s3, bucket, files, kept, work=work / f"keep-{keep}", log=log)
            result["before"] = run.pop("before")
            result["objects_before"] = run.pop("objects_before")
            result["runs"].append(run)
    return result


def _one(
    s3: S3Server, bucket: str, files: list[Path], kept: list[Path], *, work: Path, log: Log
) -> dict[str, Any]:
    """Store every version, prune to the last ``len(kept)``, store only those elsewhere, read
    the kept ones back."""
    keep = len(kept)
    env = tool_env(work, s3.endpoint, work / "cache")
    series_url = f"s3://{bucket}/series-{keep}/"
    log(f"prune: dg-agent sync of {len(files)} versions")
    run_output([DG, "sync", "-q", str(files[0].parent), series_url], env)
    before, objects_before = _bucket_bytes(s3, bucket, f"series-{keep}/")
    log(f"prune: dg-agent prune --keep-last {keep} --dryrun, then for real")
    prune = [DG, "prune", "--keep-last", str(keep), "--json", series_url]
    _, _, out = run_output([*prune, "--dryrun"], env)
    dry = json.loads(out)
    wall, cpu, out = run_output(prune, env)
    done = json.loads(out)
    after, objects_after = _bucket_bytes(s3, bucket, f"series-{keep}/")
    log(f"prune: dg-agent sync of only the last {keep}")
    run_output([DG, "sync", "-q", str(kept[0].parent), f"s3://{bucket}/alone-{keep}/"], env)
    alone, _ = _bucket_bytes(s3, bucket, f"alone-{keep}/")
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
        "kept_versions": keep,
        "original_kept": sum(p.stat().st_size for p in kept),
        "before": before,
        "objects_before": objects_before,
        "dryrun_after": dry["stored_bytes_after"],
        "after": after,
        "objects_after": objects_after,
        "reported_after": done["stored_bytes_after"],
        "alone": alone,
        "ratio": after / alone if alone else None,
        "references_deleted": len(done["references_deleted"]),
        "retired": [
            {"files": len(r["files"]), "new_target": r["new_target"]} for r in done["retired"]
        ],
        "seconds": wall,
        "cpu": cpu,
        "read_back_dg_agent": sum(ours.get(n) == sha for n, sha in expected.items()),
        "read_back_deltaglider": sum(theirs.get(n) == sha for n, sha in expected.items()),
    }


def table(prune: dict[str, Any]) -> list[str]:
    if "skipped" in prune:
        return ["| retention | |", "|---|---|", f"| skipped | {prune['skipped']} |"]

    def mb(n: int) -> str:
        return f"{n / 1e6:,.2f}"

    runs = prune["runs"]

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    def verdict(r: dict[str, Any]) -> str:
        met = r["ratio"] is not None and r["ratio"] <= prune["target"]
        return f"{r['ratio']:.3f}x ({'met' if met else 'NOT met'})"

    def retired(r: dict[str, Any]) -> str:
        moved = sum(x["files"] for x in r["retired"])
        return f"{r['references_deleted']} / {len(r['retired'])} ({moved} files re-encoded)"

    n = prune["stored_versions"]
    return [
        f"| {prune['name']}: {n} versions ({mb(prune['original_all'])} MB), stored in "
        f"{mb(prune['before'])} MB, {prune['objects_before']} objects | "
        + " | ".join(f"`--keep-last {r['kept_versions']}`" for r in runs)
        + " |",
        "|---|" + "---:|" * len(runs),
        row("`prune --dryrun` said after, MB", lambda r: mb(r["dryrun_after"])),
        row("after the prune, MB (objects)", lambda r: f"{mb(r['after'])} ({r['objects_after']})"),
        row("prune wall time, s", lambda r: f"{r['seconds']:.1f}"),
        row("only the kept versions stored, MB", lambda r: mb(r["alone"])),
        row(f"pruned / only the kept (target ≤ {prune['target']}x)", verdict),
        row("references deleted / retired", retired),
        row(
            "kept read back bit-exact: dg-agent / DeltaGlider 6.2.0",
            lambda r: (
                f"{r['read_back_dg_agent']}/{r['kept_versions']} / "
                f"{r['read_back_deltaglider']}/{r['kept_versions']}"
            ),
        ),
    ]
