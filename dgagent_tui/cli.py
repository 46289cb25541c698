"""The ``dg-tui`` command line: ``--socket``, ``--read-only``, ``--version`` and ``--help``.

Kept apart from the app so ``dg-tui --version`` and a mistyped option answer without starting
a terminal UI, and so they can be tested as plain functions.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import NoReturn

from dgagent.version import __version__

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one sentence that names the fix."""

    def error(self, message: str) -> NoReturn:
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            given = unknown[1].split()[0]
            options = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(given, options, n=1, cutoff=0.6)
            guess = f" (did you mean {close[0]}?)" if close else ""
            message = f"unknown option {given}{guess}"
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dg-tui",
        description="Watch and steer a running dg-agent from the terminal. The agent keeps "
        "running when dg-tui quits; start it with: dg-agent start",
    )
    parser.add_argument("--version", action="version", version=f"dg-tui {__version__}")
    parser.add_argument("--socket", type=Path, help="the agent's socket (default: its usual path)")
    parser.add_argument(
        "--read-only", action="store_true", help="never delete, restore, retry or pause"
    )
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed arguments; exits 0 after --help or --version, 2 after a usage error."""
    return build_parser().parse_args(sys.argv[1:] if argv is None else argv)
