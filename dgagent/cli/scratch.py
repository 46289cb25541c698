"""Temp space for commands that stage whole files on disk (get to stdout, migrate)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dgagent.cli.common import Session


@contextlib.contextmanager
def scratch(session: Session, *, prefix: str) -> Iterator[Path]:
    """A temp folder beside the reference cache, removed afterwards.

    Not /tmp, which may be a small RAM disk: staged files can be as large as any artifact.
    """
    root = session.settings.cache_dir.parent / "work"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = tempfile.TemporaryDirectory(prefix=prefix, dir=root)
    except OSError:
        work = tempfile.TemporaryDirectory(prefix=prefix)
    with work as name:
        yield Path(name)
