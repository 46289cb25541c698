"""Timing and statistics helpers: medians of several runs, percentiles, hashing, subprocesses."""

from __future__ import annotations

import hashlib
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return ours / theirs


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: Sequence[str], env: dict[str, str], *, check: bool = True) -> float:
    """Run a command to completion; its wall time in seconds. Output is kept for errors only."""
    return run_cpu(argv, env, check=check)[0]


def run_cpu(argv: Sequence[str], env: dict[str, str], *, check: bool = True) -> tuple[float, float]:
    """Run a command to completion: (wall seconds, CPU seconds of it and its children).

    The S3 server is a child too, but a running one is not counted until it is reaped.
    """
    wall, cpu, _ = run_output(argv, env, check=check)
    return wall, cpu


def run_output(
    argv: Sequence[str], env: dict[str, str], *, check: bool = True
) -> tuple[float, float, str]:
    """``run_cpu``, and the command's standard output."""
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}"
        )
    return seconds, children_cpu() - cpu, done.stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def drop_file(path: Path) -> None:
    """Remove a file if it is there."""
    if path.exists():
        os.unlink(path)
