"""Where dg-tui saves what the user asks for (downloads, screenshots), and how it says it could
not: never into whatever folder dg-tui was started from, never without the full path."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import platformdirs


def save_folder() -> Path:
    """The platform's downloads folder when it exists, else the home folder.

    A folder is not created on the user's behalf: a fresh server account has no ~/Downloads,
    and a file in the home folder, named in full, is easier to find than a new folder.
    """
    downloads = platformdirs.user_downloads_path()
    if downloads.is_dir():
        return downloads
    try:
        return Path.home()
    except RuntimeError:  # no HOME and no passwd entry: the one place left that exists
        return Path.cwd()


def cannot_write(where: Path, error: OSError, *, fix: str | None = None) -> str:
    """One sentence: what could not be written, why, and what to do about it (``fix``, or one
    that suits the error).

    >>> cannot_write(Path("/x/a.svg"), PermissionError(errno.EACCES, "Permission denied"))
    'cannot write /x/a.svg: permission denied; choose a folder you can write to.'
    >>> cannot_write(Path("/f"), NotADirectoryError(errno.ENOTDIR, "Not a directory"))
    'cannot write /f: a part of that path is a file, not a folder; choose a folder.'
    """
    reason = (error.strerror or str(error)).lower()
    fixes = {
        errno.ENOSPC: "free some space or choose another disk",
        errno.ENOTDIR: "choose a folder",
        errno.ENOENT: "create that folder or choose another",
    }
    if error.errno == errno.ENOTDIR:
        reason = "a part of that path is a file, not a folder"
    fix = fix or fixes.get(error.errno or 0, "choose a folder you can write to")
    return f"cannot write {where}: {reason}; {fix}."


def download_target(typed: str) -> Path:
    """The absolute path for a destination the user typed: ``~`` expanded, and a relative path
    taken inside the save folder (the agent would take it from its own working folder).

    >>> download_target("/tmp/a.zip")
    PosixPath('/tmp/a.zip')
    >>> download_target("a.zip") == save_folder() / "a.zip"
    True
    """
    path = Path(typed).expanduser()
    return path if path.is_absolute() else save_folder() / path


def why_not_writable(dest: Path) -> str | None:
    """Why a download to ``dest`` would fail here, in one sentence with the fix; None if it
    can be written. Checked before asking the agent (same machine, same user), so the user
    hears about the folder rather than a storage error."""
    folder = dest if dest.is_dir() else dest.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return cannot_write(dest, NotADirectoryError(errno.ENOTDIR, "Not a directory"))
    if not os.access(existing, os.W_OK | os.X_OK):
        return cannot_write(dest, PermissionError(errno.EACCES, "Permission denied"))
    return None
