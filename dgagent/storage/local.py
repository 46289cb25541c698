"""A store in a local directory: the embedded default, usable with no cloud account.

It keeps S3's semantics so the engine cannot tell the difference: keys map to files under the
root, user metadata lives beside the data in ``<dir>/.dg-meta/<name>.json``, writes are atomic
(temp file, fsync, rename), and ``create_only`` is a hard link, which the kernel refuses when the
name exists (the local twin of S3's ``If-None-Match: *``). The sidecar also records the size and
SHA-256 of the stored bytes, so every download is checked end to end and a crash between the two
renames is detected instead of served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dgagent.errors import (
    IntegrityError,
    NotFoundError,
    PreconditionFailedError,
    StorageError,
    UnsafePathError,
)
from dgagent.storage.base import ObjectInfo, Prefix, Progress, check_key

META_DIR = ".dg-meta"
TEMP_PREFIX = ".dg-tmp-"
CHUNK = 1024 * 1024


class LocalStorage:
    """Objects as files under ``root``; see the module docstring for the layout."""

    @property
    def cache_scope(self) -> None:
        return None  # reading a sidecar costs no request

    def honours_create_only(self, size: int) -> bool:
        return True  # a hard link is refused by the kernel when the name exists

    def write_mode(self) -> str:
        return "conditional writes honoured"

    def __init__(self, root: Path, *, keep: Path | None = None) -> None:
        self.root = root.resolve()
        self.keep = (keep or self.root).resolve()
        """A folder the user named: it and its parents are never removed when they empty."""

    @property
    def url(self) -> str:
        # Joined with "/" + key by callers: "file://" + "/srv/x.zip" for the filesystem root.
        return "file://" if self.root == Path("/") else "file://" + str(self.root)

    def _path(self, key: str) -> Path:
        check_key(key)
        parts = key.split("/")
        if META_DIR in parts or parts[-1].startswith(TEMP_PREFIX):
            raise UnsafePathError(
                f"refusing object key {key!r}: names '{META_DIR}' and '{TEMP_PREFIX}*' are "
                "reserved by the local store; rename the file"
            )
        return self.root.joinpath(*parts)

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.parent / META_DIR / (path.name + ".json")

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}",
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
        )

    def _read_sidecar(self, key: str, path: Path, size: int) -> tuple[dict[str, str], str | None]:
        try:
            doc = json.loads(self._sidecar(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except (OSError, ValueError) as exc:
            raise IntegrityError(
                f"metadata of {self.url}/{key} is unreadable ({exc}); upload the file again"
            ) from exc
        if doc.get("size") != size:
            raise IntegrityError(
                f"{self.url}/{key} is {size} bytes but its metadata records {doc.get('size')}: "
                "a write was interrupted; upload the file again"
            )
        return dict(doc.get("metadata", {})), doc.get("sha256")

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        metadata, _ = self._read_sidecar(key, path, st.st_size)
        info = self._info(key, st)
        return ObjectInfo(info.key, info.size, info.etag, info.last_modified, metadata)

    def list_objects(
        self, prefix: str, *, delimiter: str | None = None
    ) -> Iterator[ObjectInfo | Prefix]:
        folder, _, start = prefix.rpartition("/")
        base = self.root.joinpath(*folder.split("/")) if folder else self.root
        lead = folder + "/" if folder else ""
        if delimiter is None:
            found = sorted(self._walk(base, lead), key=lambda item: item.key)
            yield from (item for item in found if item.key.startswith(prefix))
            return
        entries: list[ObjectInfo | Prefix] = []
        for entry in self._scan(base):
            if not entry.name.startswith(start):
                continue
            if entry.is_dir(follow_symlinks=False):
                entries.append(Prefix(lead + entry.name + "/"))
            elif entry.is_file(follow_symlinks=False):
                entries.append(self._info(lead + entry.name, entry.stat()))
        yield from sorted(entries, key=lambda item: item.key)

    def _scan(self, folder: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                return [e for e in it if e.name != META_DIR and not e.name.startswith(TEMP_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _walk(self, folder: Path, lead: str) -> Iterator[ObjectInfo]:
        for entry in self._scan(folder):
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), lead + entry.name + "/")
            elif entry.is_file(follow_symlinks=False):
                yield self._info(lead + entry.name, entry.stat())

    def download(self, key: str, dest: BinaryIO, *, progress: Progress | None = None) -> ObjectInfo:
        path = self._path(key)
        try:
            src = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFoundError(f"{self.url}/{key} does not exist") from exc
        with src:
            st = os.fstat(src.fileno())
            metadata, stored_sha = self._read_sidecar(key, path, st.st_size)
            digest = hashlib.sha256()
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dest.write(chunk)
                if progress:
                    progress(len(chunk))
        if stored_sha is not None and digest.hexdigest() != stored_sha:
            raise IntegrityError(
                f"{self.url}/{key} does not match the checksum recorded when it was stored: the "
                "file was modified or damaged on disk; upload it again"
            )
        info = self._info(key, st)
        return ObjectInfo(info.key, info.size, info.etag, info.last_modified, metadata)

    def upload(
        self,
        key: str,
        source: Path,
        metadata: Mapping[str, str],
        *,
        create_only: bool = False,
        progress: Progress | None = None,
    ) -> None:
        path = self._path(key)
        if path.is_dir():
            raise StorageError(
                f"{self.url}/{key} is a folder in the local store; end the URL with '/' to copy "
                "into it"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / META_DIR).mkdir(exist_ok=True)
            tmp, size, sha = self._copy_to_temp(source, path.parent, progress)
        except FileNotFoundError as exc:
            raise NotFoundError(f"cannot upload {source}: it does not exist") from exc
        except OSError as exc:
            raise StorageError(f"cannot write {self.url}/{key}: {exc.strerror or exc}") from exc
        side_tmp: Path | None = None
        try:
            side = {"metadata": dict(metadata), "size": size, "sha256": sha}
            side_tmp = self._write_temp_json(side, path.parent)
            self._commit(tmp, side_tmp, path, create_only=create_only, key=key)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot write {self.url}/{key}: {exc.strerror or exc}") from exc
        finally:
            for leftover in (tmp, side_tmp):
                if leftover is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)

    def _commit(
        self, tmp: Path, side_tmp: Path, path: Path, *, create_only: bool, key: str
    ) -> None:
        """Put data and sidecar in place in the order that keeps a crash between them harmless.

        Replacing: sidecar first, so a crash leaves either no data (nothing to read) or old data
        whose size or checksum no longer matches (detected), never new bytes read unchecked.
        Creating only-if-absent: the hard link decides the race first; a crash before the sidecar
        leaves complete data without metadata, which readers hash for themselves.
        """
        sidecar = self._sidecar(path)
        if not create_only:
            os.replace(side_tmp, sidecar)
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise PreconditionFailedError(f"{self.url}/{key} already exists") from exc
        os.replace(side_tmp, sidecar)

    @staticmethod
    def _copy_to_temp(
        source: Path, folder: Path, progress: Progress | None
    ) -> tuple[Path, int, str]:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if progress:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            os.unlink(name)
            raise
        return Path(name), size, digest.hexdigest()

    @staticmethod
    def _write_temp_json(doc: object, folder: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder / META_DIR)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out)
            out.flush()
            os.fsync(out.fileno())
        return Path(name)

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        for victim in (path, self._sidecar(path)):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                victim.unlink()
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty below the one the user named, so listings show no ghosts."""
        while folder != self.keep and self.keep in folder.parents:
            with contextlib.suppress(OSError):
                (folder / META_DIR).rmdir()
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent
