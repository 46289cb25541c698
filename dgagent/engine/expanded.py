"""The archive codec's side of the store: references in expanded form, and checked deltas.

An archive delta is made against a form of the reference with its deflate streams undone
(docs/archive-codec.md): the *inflated* form for archive-v3 deltas (made now), the *expanded* form
for archive-v1 and -v2 deltas (still read). Either costs a pass over the whole reference, so it is
kept in a content-addressed cache, found through a small index file named by the reference's
SHA-256 and the form, and checked against its own SHA-256 whenever it is read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from dgagent.engine import archive, archive_v2
from dgagent.engine.cache import ReferenceCache
from dgagent.engine.codec import Xdelta3
from dgagent.engine.metadata import is_sha256
from dgagent.errors import CacheError, CodecError, DgError, IntegrityError
from dgagent.fileio import sha256_file

log = logging.getLogger(__name__)


class ExpandedReferences:
    """Expanded references for the archive codec, cached by content, and its checked encode."""

    def __init__(self, cache: ReferenceCache, codec: Xdelta3) -> None:
        self.cache = cache
        self.codec = codec

    def _index_path(self, ref_sha: str, form: str) -> Path:
        """Where the SHA-256 of a reference's expanded or inflated form is noted (the cache is
        by content)."""
        return self.cache.root / "index" / f"{ref_sha}.{form}"

    def remember(self, ref_sha: str, expanded: Path, form: str) -> None:
        """Cache a reference's expanded (or inflated) form; it only saves work, so failures are
        warnings."""
        try:
            exp_sha, _ = sha256_file(expanded)
            self.cache.add(exp_sha, expanded)
            index = self._index_path(ref_sha, form)
            index.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=index.parent, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                f.write(exp_sha)
            os.replace(tmp, index)
        except (DgError, OSError) as exc:
            log.warning("could not cache the expanded reference: %s", exc)

    @contextlib.contextmanager
    def open(
        self,
        ref: Path,
        ref_sha: str,
        work: Path,
        *,
        form: str = archive.INFLATED,
        checked: bool = True,
    ) -> Iterator[Path]:
        """The reference's inflated form (or with ``form=archive.EXPANSION``, its expanded
        form): the cached copy (checked against its SHA-256 on read, unless ``checked`` is
        False), or a fresh one, which is cached."""
        make = archive.inflate if form == archive.INFLATED else archive.expand_for_delta
        with contextlib.ExitStack() as stack:
            path: Path | None = None
            try:
                noted = self._index_path(ref_sha, form).read_text().strip()
            except OSError:
                noted = ""
            if is_sha256(noted):

                def fill(f: BinaryIO) -> None:
                    make(ref, f)

                try:
                    entry = self.cache.reference(noted, fill, checked=checked)
                    path = stack.enter_context(entry).path
                except (IntegrityError, CacheError) as exc:
                    log.warning("expanded reference cache: %s; expanding again", exc)
            if path is None:
                path = work / f"reference.{form}"
                with path.open("wb") as f:
                    make(ref, f)
                self.remember(ref_sha, path, form)
            yield path

    @staticmethod
    def rebuilds(expanded: Path | None, sha: str, work: Path) -> bool:
        """Whether ``expanded`` rebuilds to the file with SHA-256 ``sha``."""
        if expanded is None:
            return False
        check = work / "check.rebuilt"
        try:
            with expanded.open("rb") as src, check.open("wb") as dest:
                archive.rebuild(src, dest)
            return sha256_file(check)[0] == sha
        except IntegrityError as exc:
            log.info("expanded form does not rebuild (%s)", exc)
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                check.unlink()

    def encode_checked(
        self,
        reference: tuple[Path, Path],
        target: tuple[Path, Path],
        out: Path,
        work: Path,
        sha: str,
        *,
        on_plan: Callable[[], None] | None = None,
        on_encoded: Callable[[int], None] | None = None,
    ) -> bool:
        """Encode an archive-v2 delta of ``target`` against ``reference`` (each: the file and
        its expanded form), then decode and rebuild it as a reader will and compare.
        ``on_plan`` is called when xdelta3 is left alone on the plan, ``on_encoded`` with the
        delta's size before it is checked (to run other work beside them)."""
        check = work / "archive.check"
        for split in (True, False):
            made: archive_v2.Made | None = None
            try:
                made = archive_v2.encode(
                    self.codec, reference, target, out, work, split=split, on_plan=on_plan
                )
                log.debug("%s: %s", target[0].name, made)
                if on_encoded is not None:
                    on_encoded(out.stat().st_size)
                archive_v2.decode(self.codec, reference, out, check, work)
                rebuilt, _ = sha256_file(check)
            except (CodecError, IntegrityError) as exc:
                problem = f"did not rebuild ({exc})"
            else:
                if rebuilt == sha:
                    return True
                problem = "did not rebuild bit-exact"
            finally:
                check.unlink(missing_ok=True)
            if made is None or not made.split:
                break
            # A split point that restarts the compressor exactly on the block after it but not
            # later (never seen on real members) costs the speed-up, not the archive delta.
            log.warning("archive delta with split members %s; making it without", problem)
        log.warning("archive delta %s; trying compat", problem)
        return False

    def rebuild(
        self, ref: Path, ref_sha: str, delta: Path, out: Path, work: Path, *, codec: str, sha: str
    ) -> tuple[str, int]:
        """Apply an archive delta of ``codec`` (archive-v1, -v2 or -v3) to the reference's
        inflated or expanded form, then recompress (each member's CRC-32 is checked by
        archive.rebuild); returns the SHA-256 and size of ``out``, for the caller to check
        against ``sha``.

        The cached form is read without its own SHA-256 pass (a tenth of a numpy read): the
        file's SHA-256 covers it. When the file does not come out as ``sha``, the form is
        checked (made again if damaged) and the file rebuilt once more, so a damaged cache
        costs time, never a read; what the second try makes is the caller's to judge."""
        try:
            self._rebuild(ref, ref_sha, delta, out, work, codec=codec, checked=False)
            made = sha256_file(out)
            if made[0] == sha:
                return made
            problem = "did not rebuild bit-exact"
        except (CodecError, IntegrityError) as exc:
            problem = f"failed ({exc})"
        log.info("archive delta %s from the cached source form; checking it and retrying", problem)
        self._rebuild(ref, ref_sha, delta, out, work, codec=codec, checked=True)
        return sha256_file(out)

    def _rebuild(
        self,
        ref: Path,
        ref_sha: str,
        delta: Path,
        out: Path,
        work: Path,
        *,
        codec: str,
        checked: bool,
    ) -> None:
        form = archive.INFLATED if codec == archive.CODEC else archive.EXPANSION
        with self.open(ref, ref_sha, work, form=form, checked=checked) as ref_expanded:
            if codec in (archive.CODEC, archive.CODEC_V2):
                archive_v2.decode(self.codec, (ref, ref_expanded), delta, out, work)
                return
            expanded = work / "out.expanded"
            self.codec.decode(ref_expanded, delta, expanded)
        with expanded.open("rb") as src, out.open("wb") as dest:
            archive.rebuild(src, dest)
