"""The dg-tui command line: --version, --help, and a mistyped option in one sentence."""

from __future__ import annotations

import pytest

from dgagent.version import __version__
from dgagent_tui.app import main


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"dg-tui {__version__}\n"


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--socket" in out and "--read-only" in out and "--version" in out


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--bogus"], "dg-tui: unknown option --bogus; see dg-tui --help\n"),
        (["--sockt", "x"], "dg-tui: unknown option --sockt (did you mean --socket?); "),
    ],
)
def test_an_unknown_option_is_one_sentence_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(said) and err.count("\n") == 1, err
