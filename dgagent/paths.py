"""AWS CLI path semantics: where a source lands given a destination, and local tree walks.

A trailing '/' names a folder; otherwise the last path part is the file name. ``cp f s3://b/p/``
stores ``p/f`` (upstream put it at the bucket root), and ``cp s3://b/p/f dir/`` writes ``dir/f``.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path

from dgagent.engine import keys
from dgagent.errors import UnsafePathError
from dgagent.storage import Location, check_key


def upload_key(source: Path, dest: Location) -> str:
    """Key for one local file copied to ``dest``.

    A folder destination (trailing '/') receives the file under its own name.
    """
    return dest.key + source.name if dest.is_folder else dest.key


def folder_prefix(key: str) -> str:
    """A key prefix for recursive operations: '' or ending with '/' (``p`` means ``p/``)."""
    return key if key == "" or key.endswith("/") else key + "/"


def download_path(key: str, dest: str) -> Path:
    """Where ``cp URL DEST`` writes: into DEST if it is a folder, else DEST itself."""
    name = posixpath.basename(keys.logical_key(key))
    path = Path(dest)
    if dest.endswith(("/", os.sep)) or path.is_dir():
        return path / name
    return path


def local_path_for(root: Path, relative: str) -> Path:
    """The local file for a relative key under ``root``; refuses keys that would escape it."""
    check_key(relative)
    path = root.joinpath(*relative.split("/"))
    resolved_root = root.resolve()
    if resolved_root not in path.resolve().parents:
        raise UnsafePathError(f"object key {relative!r} would write outside {root}; skipped")
    return path


class Filters:
    """``--exclude``/``--include`` as the AWS CLI applies them: in order, the last match wins."""

    def __init__(self, rules: Sequence[tuple[str, str]]) -> None:
        self.rules = list(rules)

    def wants(self, relative: str) -> bool:
        keep = True
        for verb, pattern in self.rules:
            if fnmatch.fnmatchcase(relative, pattern):
                keep = verb == "include"
        return keep


def walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative '/'-path, path) of every regular file under ``root``, symlinked dirs skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not Path(folder, d).is_symlink())
        for name in sorted(files):
            path = Path(folder, name)
            if path.is_file():
                yield path.relative_to(root).as_posix(), path
