"""What every measurement shares: the work dir, the S3 endpoint, the families and the run count."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from bench.corpus import Family
from bench.servers import S3Server, tool_env


@dataclass
class Context:
    work: Path
    s3: S3Server
    families: list[Family]
    runs: int
    quick: bool
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def fresh(self, label: str) -> Path:
        """A new empty folder under the work dir (a fresh cache makes a run cold)."""
        path = self.work / f"{label}-{next(self._ids)}"
        path.mkdir(parents=True)
        return path

    def bucket(self, label: str) -> str:
        return self.s3.bucket(f"{label}-{next(self._ids)}".lower().replace("_", "-"))

    def env(self, cache: Path, *, s3: bool = True) -> dict[str, str]:
        return tool_env(self.work, self.s3.endpoint if s3 else None, cache)
