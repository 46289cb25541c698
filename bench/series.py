"""One long real release series (e.g. 40 botocore wheels), in release order: what each reference
policy stores, measured through the real CLI and predicted by the rule alone.

- ``single`` and ``rotate``: a cold ``dg-agent sync --reference-policy P`` of the series folder into
  a local store (``file://``, an empty reference cache), its stored bytes (objects only, not the
  ``.dg-meta`` sidecars), how many versions it stored whole and how many became references (from
  ``sync --json``), and the xdelta3 runs it made (counted by a shim put first on its PATH).
- the simulation of each policy: ``rotation.decide`` fed with xdelta3 encodes made here through the
  engine's own codec class, no store: whole references plus delta sizes. The store should stay
  within ~1.1x of it (issue: measured ≤ ~1.1x predicted); it adds each reference's zero-diff
  delta and nothing else, so a larger gap means the store decided differently.
- the chain: each version as a delta against the previous one. Not readable by DeltaGlider (a
  delta's reference must be stored whole), but the bound a delta store could get near.
- read back: ``dg-agent verify -r`` of the rotate store with an empty cache, each SHA-256 compared
  with the source file's.

An encode needed by several simulations (v1 against v0 is needed by all) is made once; each
strategy's encode count and seconds are what it would need alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.corpus import ARTIFACT
from bench.measure import run_output, sha256
from bench.servers import tool_env
from bench.speed import DG
from dgagent.engine import rotation
from dgagent.engine.codec import Xdelta3
from dgagent.settings import EngineSettings

SERIES_SH = Path(__file__).resolve().parent / "long_series.sh"
"""The series script (a copy of ``../shared/corpus/long-series.sh``; idempotent)."""

POLICIES = ("single", "rotate")
TARGET = 1.1
"""The issue's bound on the store's bytes over the simulation's."""

Log = Callable[[str], None]


def fetch(package: str, count: int, cache_dir: Path) -> Path:
    """Download ``count`` consecutive wheels of ``package`` into ``cache_dir/package`` (once)."""
    dest = cache_dir / package
    argv = ["bash", str(SERIES_SH), package, str(count), str(dest)]
    subprocess.run(argv, check=True, stdout=sys.stderr)
    return dest


def release_order(folder: Path) -> list[Path]:
    """The folder's artifacts in the order ``dg-agent sync`` stores one DeltaSpace: mtime, then
    name (``dgagent.cli.transfer.in_release_order``; not called, its signature is still moving)."""
    files = [p for p in folder.iterdir() if p.is_file() and ARTIFACT.search(p.name)]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def stage(files: list[Path], dest: Path) -> list[Path]:
    """Hard links (else copies, same mtimes) of ``files`` alone in ``dest``: the source folder may
    hold other files, and sync stores a whole folder."""
    dest.mkdir(parents=True)
    out = []
    for path in files:
        target = dest / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        out.append(target)
    return out


@dataclass
class Strategy:
    """What one strategy stored for the series, and what it took."""

    stored: int = 0
    whole: int = 0
    """Versions stored whole as plain files (not as a reference)."""
    references: int = 0
    encodes: int = 0
    decodes: int | None = None
    """xdelta3 decodes (the store's rebuild checks); None for the simulations."""
    seconds: float = 0.0
    cpu_seconds: float | None = None
    reference_versions: list[int] = field(default_factory=list)
    per_file: list[dict[str, Any]] = field(default_factory=list)


class Encodes:
    """Delta sizes of one series by the engine's codec and settings, each pair encoded once."""

    def __init__(self, files: list[Path], work: Path, settings: EngineSettings) -> None:
        self.files = files
        self.out = work / "delta.vcdiff"
        self.codec = Xdelta3(level=settings.xdelta_level, window_budget=settings.window_budget)
        self._done: dict[tuple[int, int], tuple[int | None, float]] = {}

    def delta(self, ref: int, target: int, limit: int | None) -> tuple[int | None, float]:
        """Size of ``target``'s delta against ``ref`` (None: above ``limit``, where the store
        stops its encode too) and the seconds its encode took."""
        known = self._done.get((ref, target))
        if known is None or (known[0] is None and limit is None):
            start = time.perf_counter()
            complete = self.codec.encode(self.files[ref], self.files[target], self.out, limit=limit)
            size = self.out.stat().st_size if complete else None
            known = (size, time.perf_counter() - start)
            self._done[(ref, target)] = known
        size, seconds = known
        if size is not None and limit is not None and size > limit:
            size = None
        return size, seconds


def simulate(policy: str, enc: Encodes, sizes: list[int], max_ratio: float) -> Strategy:
    """The bytes ``policy`` stores by the rule alone: the first version a whole reference, each
    later one a delta against the current reference, a new reference or a whole file as
    ``rotation.decide`` says (zero-diff deltas of references not counted)."""
    out = Strategy(stored=sizes[0], references=1, reference_versions=[0])
    out.per_file.append({"decision": rotation.Decision.NEW_REFERENCE.value, "delta": None})
    ref, cost = 0, rotation.Cost("v0")
    for i in range(1, len(sizes)):
        size = sizes[i]
        delta, seconds = enc.delta(ref, i, int(max_ratio * size))
        out.encodes += 1
        out.seconds += seconds
        decision, _ = rotation.decide(policy, cost, delta, size, max_ratio)
        out.per_file.append({"decision": decision.value, "delta": delta})
        if decision is rotation.Decision.DELTA:
            out.stored += delta or 0
            cost = cost.after(delta or 0)
        elif decision is rotation.Decision.NEW_REFERENCE:
            out.stored += size
            out.references += 1
            out.reference_versions.append(i)
            ref, cost = i, rotation.Cost(f"v{i}")
        else:
            out.stored += size
            out.whole += 1
    return out


def chain(enc: Encodes, sizes: list[int]) -> Strategy:
    """Each version as a delta against the previous one (whole when that is not smaller)."""
    out = Strategy(stored=sizes[0], whole=1)
    for i in range(1, len(sizes)):
        delta, seconds = enc.delta(i - 1, i, None)
        out.encodes += 1
        out.seconds += seconds
        out.stored += min(delta or sizes[i], sizes[i])
        out.per_file.append({"delta": delta})
    return out


def _shim(work: Path) -> tuple[Path, Path]:
    """A dir with an ``xdelta3`` that logs its mode flag (-e / -d) and runs the real one."""
    real = shutil.which("xdelta3")
    if real is None:
        raise SystemExit("xdelta3 is not on PATH")
    folder, log = work / "shim", work / "xdelta3.log"
    folder.mkdir(parents=True)
    script = folder / "xdelta3"
    # exec keeps the pid, so the store's kill of an encode past its limit still reaches xdelta3
    script.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "$1" >> "{log}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return folder, log


def _object_bytes(root: Path) -> int:
    """Bytes of the store's objects; the local store's metadata sidecars are not objects."""
    return sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file() and ".dg-meta" not in p.parts
    )


def sync(policy: str, folder: Path, files: list[Path], work: Path) -> tuple[Strategy, str]:
    """A cold ``dg-agent sync`` of ``folder`` with ``policy``; its figures and the store's URL."""
    store = work / f"store-{policy}"
    store.mkdir()
    shim, log = _shim(work / f"xdelta3-{policy}")
    env = tool_env(work, None, work / f"cache-{policy}")
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    url = f"file://{store}/{folder.name}/"
    argv = [DG, "sync", str(folder), url, "--reference-policy", policy, "--json"]
    wall, cpu, stdout = run_output(argv, env)
    doc = json.loads(stdout)
    if doc.get("errors"):
        raise RuntimeError(f"sync --reference-policy {policy}: {doc['errors']}")
    records = {Path(r["source"]).name: r for r in doc["files"]}
    flags = log.read_text().split() if log.exists() else []
    out = Strategy(
        stored=_object_bytes(store),
        encodes=flags.count("-e"),
        decodes=flags.count("-d"),
        seconds=wall,
        cpu_seconds=cpu,
    )
    for i, path in enumerate(files):
        r = records[path.name]
        out.whole += r["kind"] == "direct"
        if r["reference_size"]:
            out.references += 1
            out.reference_versions.append(i)
        out.per_file.append(
            {"kind": r["kind"], "stored": r["stored_size"], "reference": r["reference_size"]}
        )
    return out, url


def read_back(url: str, files: list[Path], work: Path) -> dict[str, Any]:
    """``dg-agent verify -r`` of the store with an empty cache; every file's SHA-256 against the
    source's. Failures name the files that were missing, invalid or not the source's bytes."""
    env = tool_env(work, None, work / "cache-verify")
    wall, _, stdout = run_output([DG, "verify", "-r", "--json", url], env)
    found = {r["url"].rsplit("/", 1)[-1]: r for r in json.loads(stdout)["results"]}
    failures = []
    for path in files:
        r = found.get(path.name)
        if r is None or not r.get("valid") or r.get("sha256") != sha256(path):
            failures.append(path.name)
    exact = len(files) - len(failures)
    return {"files": len(files), "exact": exact, "failures": failures, "seconds": wall}


def measure(folder: Path, work: Path, log: Log) -> dict[str, Any]:
    """Every figure of the section for the series in ``folder``."""
    settings = EngineSettings()
    work.mkdir(parents=True, exist_ok=True)
    ordered = release_order(folder)
    if len(ordered) < 2:
        raise SystemExit(f"{folder} holds fewer than 2 artifacts: no series to measure")
    files = stage(ordered, work / "files" / folder.name)
    sizes = [p.stat().st_size for p in files]
    log(f"series: {len(files)} files of {folder} ({sum(sizes) / 1e6:,.1f} MB)")
    rows: dict[str, Strategy] = {}
    url = ""
    for policy in POLICIES:
        log(f"series: cold dg-agent sync --reference-policy {policy}")
        rows[policy], url = sync(policy, files[0].parent, files, work)
    log("series: cold read-back of the rotate store")
    back = read_back(url, files, work)
    enc = Encodes(files, work, settings)
    for policy in POLICIES:
        log(f"series: simulating {policy}")
        rows[f"simulated {policy}"] = simulate(policy, enc, sizes, settings.max_ratio)
    log("series: chain")
    rows["chain"] = chain(enc, sizes)
    return {
        "name": folder.name,
        "source": str(folder),
        "files": [p.name for p in files],
        "sizes": sizes,
        "original": sum(sizes),
        "max_ratio": settings.max_ratio,
        "rows": {k: asdict(v) for k, v in rows.items()},
        "read_back": back,
    }


def skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}
