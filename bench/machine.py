"""The machine a run happened on, recorded beside its numbers."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _xdelta3() -> str:
    done = subprocess.run(["xdelta3", "-V"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0].split(",")[0].strip()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def describe() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("dg-agent", "deltaglider", "boto3", "moto"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "xdelta3": _xdelta3(),
        "packages": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
