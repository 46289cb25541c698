"""xdelta3, the system binary, driven by subprocess on files (it streams; we never load files).

Encoding always passes ``-D -R``: without them xdelta3 decompresses gzip/bzip2/xz inputs and
recompresses on decode, which does not reproduce the bytes (upstream's data loss). ``-B`` widens the
source window to the reference size (within a memory budget), or the ratio collapses past 64 MiB.
Decoding passes no ``-D`` so that legacy deltas made with external compression still decode.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dgagent.errors import CodecError, ToolMissingError

MIN_WINDOW = 512 * 1024
MAX_WINDOW = 2 * 1024**3
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
        """The -B value: the whole reference when the budget allows, within xdelta3's limits."""
        return max(MIN_WINDOW, min(reference_size, self.window_budget, MAX_WINDOW))

    def encode(self, reference: Path, target: Path, out: Path) -> None:
        window = self.window_for(reference.stat().st_size)
        argv = [self.binary, "-e", f"-{self.level}", "-D", "-R", "-f", "-B", str(window)]
        self._run([*argv, "-s", str(reference), str(target), str(out)], "encode", target)

    def decode(self, reference: Path, delta: Path, out: Path) -> None:
        self._run([self.binary, "-d", "-f", "-s", str(reference), str(delta), str(out)],
                  "decode", delta)  # fmt: skip

    def _run(self, argv: list[str], verb: str, subject: Path) -> None:
        try:
            done = subprocess.run(argv, capture_output=True, check=False)
        except FileNotFoundError as exc:
            raise ToolMissingError(f"xdelta3 could not be started: {INSTALL_HINT}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            last = detail[-1] if detail else f"exit code {done.returncode}"
            if "No space left" in last:
                raise CodecError(f"xdelta3 could not {verb} {subject.name}: the disk is full")
            raise CodecError(
                f"xdelta3 could not {verb} {subject.name} ({last}); the delta or its reference "
                "is damaged or was made against a different reference"
            )
