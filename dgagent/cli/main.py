"""The ``dg-agent`` command: parse, dispatch, and turn every failure into one clear sentence."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from dgagent.cli import (
    agent_cmds,
    completion,
    cp,
    listing,
    migrate,
    prune,
    putget,
    remove,
    sync,
)
from dgagent.cli.common import Session, add_store_options
from dgagent.errors import ConfigError, DgError
from dgagent.version import __version__

EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Filter(argparse.Action):
    """Collect --exclude/--include in command-line order (the last matching rule wins)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        rules = [*getattr(namespace, "filters", []), (self.dest, str(values))]
        namespace.filters = rules


class Parser(argparse.ArgumentParser):
    """argparse, plus "did you mean" for a mistyped command, choice or option."""

    def error(self, message: str) -> NoReturn:
        guess = _close_match(self, message)
        super().error(f"{message}; did you mean {guess}?" if guess else message)


def _close_match(parser: argparse.ArgumentParser, message: str) -> str | None:
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        given, options = choice[1], re.findall(r"'([^']*)'", choice[2])
    else:
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if not unknown:
            return None
        given, options = unknown[1], _option_strings(parser)
    found = difflib.get_close_matches(given, options, n=1, cutoff=0.6)
    return f"'{found[0]}'" if found else None


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of the parser and of its subcommands (an unknown option is reported by the
    top parser, whatever command it was given to)."""
    found: list[str] = []
    for action in parser._actions:  # argparse has no public walk of its actions
        found += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _option_strings(sub)
    return sorted(set(found))


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="dg-agent",
        description="Store versioned build artifacts as xdelta3 deltas in S3 or a local folder "
        "(DeltaGlider-compatible).",
    )
    parser.add_argument("--version", action="version", version=f"dg-agent {__version__}")
    parser.add_argument(
        "--log-level",
        help="DEBUG, INFO, WARNING or ERROR (default: DG_LOG_LEVEL, else INFO for run and "
        "WARNING for the other commands)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parsers = [cp.register(sub), *listing.register(sub), sync.register(sub)]
    parsers += [*putget.register(sub), migrate.register(sub), prune.register(sub)]
    remove.register(sub)
    agent_cmds.register(sub)
    parsers.extend(sub.choices[name] for name in ("rm", "verify"))
    for p in parsers:
        add_store_options(p)
    for p in (sub.choices[name] for name in ("cp", "sync", "migrate", "rm")):
        p.add_argument(
            "--exclude",
            action=_Filter,
            dest="exclude",
            metavar="PATTERN",
            help="skip paths matching PATTERN (repeatable)",
        )
        p.add_argument(
            "--include",
            action=_Filter,
            dest="include",
            metavar="PATTERN",
            help="keep paths matching PATTERN despite an earlier --exclude",
        )
    completion.register(sub, parser)
    return parser


def _setup_logging(level: str) -> None:
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ConfigError(f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    logging.basicConfig(level=value, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(value, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Session], int] = args.handler
    try:
        default = "INFO" if args.command == "run" else "WARNING"
        _setup_logging(args.log_level or os.environ.get("DG_LOG_LEVEL") or default)
        return handler(args, Session(args))
    except ConfigError as exc:
        print(f"dg-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DgError as exc:
        print(f"dg-agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("dg-agent: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
