"""xdelta3, the system binary, driven by subprocess on files (it streams; we never load files).

Encoding always passes ``-D -R``: without them xdelta3 decompresses gzip/bzip2/xz inputs and
recompresses on decode, which does not reproduce the bytes (upstream's data loss). ``-B`` widens the
source window to the reference size (within a memory budget), or the ratio collapses past 64 MiB.
Decoding passes no ``-D`` first, exactly as DeltaGlider 6.x does, so legacy deltas made with
external compression still decode; a delta that fails that way is retried with ``-D`` (the proxy's
way). Plain decoding sniffs the *reference*: one that starts like gzip, bzip2, xz or compress data
is decompressed first, so no ``-D`` delta against it can be read by upstream. ``looks_compressed``
lets the store avoid that case (it stores such files direct instead).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dgagent.errors import CodecError, ToolMissingError

# Magic numbers xdelta3 sniffs to decide on external decompression (gzip, compress, bzip2, xz).
COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x1f\x9d", b"BZh", b"\xfd7zXZ\x00")
MIN_WINDOW = 512 * 1024
SMALL_WINDOW = 8 * 1024**2
MAX_WINDOW = 2 * 1024**3
CHUNK = 256 * 1024
INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install xdelta3; macOS: brew install xdelta)"


class Xdelta3:
    """Encode and decode VCDIFF deltas with the xdelta3 command."""

    def __init__(self, *, level: int = 9, window_budget: int = 512 * 1024**2) -> None:
        self.level = level
        self.window_budget = window_budget
        self._binary: str | None = None

    @property
    def binary(self) -> str:
        if self._binary is None:
            found = shutil.which("xdelta3")
            if found is None:
                raise ToolMissingError(f"xdelta3 is not on PATH: {INSTALL_HINT}")
            self._binary = found
        return self._binary

    def window_for(self, reference_size: int) -> int:
        """The -B value: room for the whole reference when the budget allows.

        The next power of two at or above twice the reference, at least 8 MiB: a window of
        exactly the reference's size matched worse (a 1.1 MB tar: 37,902 B against 5,577 B),
        and xdelta3's 64 MiB default costs 5x the memory on small references for the same delta.
        """
        wanted = max(SMALL_WINDOW, 1 << max(0, 2 * reference_size - 1).bit_length())
        return max(MIN_WINDOW, min(wanted, self.window_budget, MAX_WINDOW))

    def encode(self, reference: Path, target: Path, out: Path, *, limit: int | None = None) -> bool:
        """Encode ``target`` against ``reference`` into ``out``. With ``limit``, stop as soon as
        the delta passes that many bytes and return False (``out`` is then incomplete): a delta
        that large is thrown away anyway, and finishing it can take a CPU minute."""
        if limit is None:
            self._run([*self._encoder(reference), str(target), str(out)], "encode", target)
            return True
        argv = [*self._encoder(reference, "-c"), str(target)]
        with out.open("wb") as f, tempfile.TemporaryFile() as errors:
            proc = _popen(argv, stdout=subprocess.PIPE, stderr=errors)
            assert proc.stdout is not None
            written = 0
            with proc.stdout:
                while chunk := proc.stdout.read(CHUNK):
                    written += len(chunk)
                    if written > limit:
                        proc.kill()
                        proc.wait()
                        return False
                    f.write(chunk)
            code = proc.wait()
            if code != 0:
                errors.seek(0)
                raise self._failure("encode", target, code, errors.read())
        return True

    def start_encode(self, reference: Path, target: Path, out: Path) -> Running:
        """Begin encoding ``target`` against ``reference`` into ``out`` in the background (a
        child process); ``Running.wait`` finishes it, ``Running.stop`` throws it away."""
        return self._start([*self._encoder(reference), str(target), str(out)], "encode", target)

    @contextlib.contextmanager
    def encoding(self, reference: Path, out: Path, subject: Path) -> Iterator[IO[bytes]]:
        """Encode what the block writes into the yielded pipe, against ``reference``, into
        ``out``, as it comes: making the input overlaps xdelta3's work on it. Leaving the block
        ends the input and waits; a failure raises what ``encode`` would (``subject`` names the
        input), and an exception in the block stops xdelta3."""
        argv = self._encoder(reference, "-c")
        with out.open("wb") as sink, tempfile.TemporaryFile() as errors:
            proc = _popen(argv, stdin=subprocess.PIPE, stdout=sink, stderr=errors)
            assert proc.stdin is not None
            stopped_reading = False
            try:
                try:
                    yield proc.stdin
                finally:
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.close()
            except BrokenPipeError:
                stopped_reading = True  # its exit code and message say why
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
            if code != 0 or stopped_reading:
                errors.seek(0)
                raise self._failure("encode", subject, code or 1, errors.read())

    def start_decode(self, reference: Path, delta: Path, out: Path) -> Running:
        """Begin ``decode`` (DeltaGlider's way, no ``-D``) in the background, so that other
        work overlaps it."""
        return self._start(self._decoder(reference, delta, out), "decode", delta)

    def _start(self, argv: list[str], verb: str, subject: Path) -> Running:
        errors = tempfile.TemporaryFile()  # noqa: SIM115 (Running closes it when done)
        try:
            proc = _popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        except ToolMissingError:
            errors.close()
            raise
        return Running(proc, errors, verb, subject)

    def _encoder(self, reference: Path, *flags: str) -> list[str]:
        """The encode command against ``reference`` (``-D -R``: see the module docstring), up
        to its input and output."""
        window = self.window_for(reference.stat().st_size)
        options = ["-e", f"-{self.level}", "-D", "-R", "-f", "-B", str(window), *flags]
        return [self.binary, *options, "-s", str(reference)]

    def _decoder(self, reference: Path, delta: Path, out: Path, *, raw: bool = False) -> list[str]:
        flags = ["-D"] if raw else []
        return [self.binary, "-d", *flags, "-f", "-s", str(reference), str(delta), str(out)]

    def decode(self, reference: Path, delta: Path, out: Path, *, raw: bool = False) -> None:
        """Decode as DeltaGlider 6.x does, or with ``raw`` (``-D``) as the proxy does."""
        self._run(self._decoder(reference, delta, out, raw=raw), "decode", delta)

    def rebuild(self, reference: Path, delta: Path, out: Path) -> None:
        """Decode a delta of any provenance: upstream's way first, then with ``-D``."""
        try:
            self.decode(reference, delta, out)
        except CodecError:
            if not looks_compressed(reference):
                raise
            self.decode(reference, delta, out, raw=True)

    def _run(self, argv: list[str], verb: str, subject: Path) -> None:
        try:
            done = subprocess.run(argv, capture_output=True, check=False)
        except FileNotFoundError as exc:
            raise ToolMissingError(f"xdelta3 could not be started: {INSTALL_HINT}") from exc
        if done.returncode != 0:
            raise self._failure(verb, subject, done.returncode, done.stderr)

    @staticmethod
    def _failure(verb: str, subject: Path, code: int, stderr: bytes) -> CodecError:
        # xdelta3 ends with generic hints ("please verify the source file"); the cause is the
        # first line that is not one of them.
        lines = stderr.decode(errors="replace").strip().splitlines()
        causes = [ln for ln in lines if "normally this" not in ln and "please verify" not in ln]
        last = (causes or lines or [f"exit code {code}"])[-1].strip()
        if "No space left" in last:
            return CodecError(f"xdelta3 could not {verb} {subject.name}: the disk is full")
        if verb == "encode":
            return CodecError(f"xdelta3 could not encode {subject.name} ({last})")
        return CodecError(
            f"xdelta3 could not decode {subject.name} ({last}); the delta or its reference "
            "is damaged or was made against a different reference"
        )


class Running:
    """An xdelta3 encode or decode running in the background (``Xdelta3.start_encode``,
    ``Xdelta3.start_decode``)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], errors: IO[bytes], verb: str, subject: Path
    ) -> None:
        self._proc, self._errors, self._verb, self._subject = proc, errors, verb, subject

    def wait(self) -> None:
        """Wait for it; a failure raises the CodecError the same call in the foreground would."""
        try:
            code = self._proc.wait()
            if code != 0:
                self._errors.seek(0)
                raise Xdelta3._failure(self._verb, self._subject, code, self._errors.read())
        finally:
            self._errors.close()

    def stop(self) -> None:
        """Kill it (its output file is left incomplete for the caller to discard)."""
        self._proc.kill()
        self._proc.wait()
        self._errors.close()


def _popen(argv: list[str], **streams: Any) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv, **streams)
    except FileNotFoundError as exc:
        raise ToolMissingError(f"xdelta3 could not be started: {INSTALL_HINT}") from exc


def looks_compressed(path: Path) -> bool:
    """Whether xdelta3 without ``-D`` would treat this file as compressed and unpack it."""
    with path.open("rb") as f:
        head = f.read(6)
    return head.startswith(COMPRESSED_MAGIC)
