"""Engine overhead: dg-agent's time to store one file vs the sum of its parts measured alone.

Each later version of a family is put through dg-agent's DeltaStore in this process (no CLI start
up), against S3 and the local store, after the first version made the reference. Then the same
work is timed step by step with nothing else around it: SHA-256 of the file (hashlib), the
``xdelta3`` encode, the decode check (decode + SHA-256 of the result), and one upload of what was
stored. ``ours / parts`` near 1.0 means the pipeline adds nothing; the excess is requests, copies
and bookkeeping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.corpus import Family
from bench.measure import median, sha256, timed
from dgagent.client import open_store
from dgagent.engine import keys
from dgagent.engine.codec import looks_compressed
from dgagent.engine.metadata import Kind
from dgagent.engine.store import DeltaStore
from dgagent.settings import EngineSettings
from dgagent.storage import S3Options, parse_location


def _store(ctx: Context, url: str) -> DeltaStore:
    # dgagent's S3 client reads credentials from this process's environment
    for name, value in ctx.env(ctx.work).items():
        if name.startswith("AWS_") and name != "AWS_ENDPOINT_URL":
            os.environ[name] = value
    options = S3Options(endpoint_url=ctx.s3.endpoint, checksum_when_required=True)
    settings = EngineSettings(cache_dir=ctx.fresh("cache-overhead"))
    return open_store(parse_location(url, options).storage, settings=settings)


def _parts(
    store: DeltaStore, ref: Path, target: Path, work: Path, *, encode: bool, stored_delta: bool
) -> dict[str, float]:
    """Each step alone; ``encode``: a delta was tried; ``stored_delta``: it was kept."""
    codec = store.codec
    parts = {"sha256": timed(lambda: sha256(target))}
    name = keys.delta_key(f"scratch/{target.name}") if stored_delta else f"scratch/{target.name}"
    upload = target
    if encode:
        out, check = work / "part.delta", work / "part.check"
        parts["encode"] = timed(lambda: codec.encode(ref, target, out))

        def decode_check() -> None:
            codec.decode(ref, out, check)
            sha256(check)

        parts["decode check"] = timed(decode_check)
        if stored_delta:
            upload = out
    parts["upload"] = timed(lambda: store.storage.upload(name, upload, {}))
    return parts


def family(ctx: Context, fam: Family, url: str) -> dict[str, Any]:
    store = _store(ctx, url)
    prefix = url.rstrip("/") + "/"
    store.put(fam.files[0], f"{fam.name}/{fam.files[0].name}")
    ours: list[float] = []
    sums: list[float] = []
    split: dict[str, list[float]] = {}
    kinds = []
    for target in fam.files[1:]:
        start = time.perf_counter()
        result = store.put(target, f"{fam.name}/{target.name}")
        ours.append(time.perf_counter() - start)
        kinds.append(result.kind.value)
        delta = result.kind is Kind.DELTA
        parts = _parts(
            store,
            fam.files[0],
            target,
            ctx.fresh("parts"),
            encode=delta or not looks_compressed(fam.files[0]),
            stored_delta=delta,
        )
        for k, v in parts.items():
            split.setdefault(k, []).append(v)
        sums.append(sum(parts.values()))
    mine, limit = median(ours), median(sums)
    return {
        "store": prefix.split(":")[0],
        "files": len(ours),
        "kinds": kinds,
        "ours": mine,
        "parts": limit,
        "ratio": mine / limit if mine and limit else None,
        "split": {k: median(v) for k, v in split.items()},
    }


def measure(ctx: Context, log: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fam in ctx.families:
        log(f"engine overhead: {fam.name}")
        bucket = ctx.bucket(f"ovh-{fam.name}")
        out[fam.name] = {
            "s3": family(ctx, fam, f"s3://{bucket}/"),
            "file": family(ctx, fam, f"file://{ctx.fresh('ovh-store')}/"),
        }
    return out
