"""The DG_* and AWS_* environment (flags win over it; bad values fail in one sentence), --version,
and the generated shell completion scripts (checked by the real shells where installed)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dgagent.cli.main import build_parser, main
from dgagent.version import __version__
from tests.cli.conftest import Cli, S3Remote, assert_clean_failure, release, sha256_of
from tests.conftest import free_port

DG_AGENT = Path(sys.executable).parent / "dg-agent"


def dg_agent(*argv: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DG_AGENT), *(str(a) for a in argv)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def top_level_commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


# ------------------------------------------------------------------------- DG_* and AWS_*


def test_dg_cache_dir_holds_the_reference_cache(
    cli: Cli, s3_remote: S3Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "my-cache"
    monkeypatch.setenv("DG_CACHE_DIR", str(cache))
    v1, v2 = release(tmp_path, 1), release(tmp_path, 2)
    cli.ok("put", v1, s3_remote.url("rel/"))
    assert cli.ok("put", v2, s3_remote.url("rel/")).json()["cache_hit"] is True
    sha = sha256_of(v1)
    entry = cache / "refs" / sha[:2] / sha
    assert entry.is_file() and sha256_of(entry) == sha


def test_dg_cache_dir_that_is_a_file_fails_clearly(
    cli: Cli, s3_remote: S3Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = release(tmp_path, 1), release(tmp_path, 2)
    cli.ok("put", v1, s3_remote.url("rel/"))
    cli.ok("put", v2, s3_remote.url("rel/"))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("DG_CACHE_DIR", str(blocker))
    result = cli("get", s3_remote.url("rel/app-1.2.zip"), "-o", tmp_path / "out.zip")
    assert_clean_failure(result, "DG_CACHE_DIR")
    assert len(result.error_lines()) == 1
    assert not (tmp_path / "out.zip").exists()


def test_dg_max_ratio_and_the_flag_that_beats_it(
    cli: Cli, s3_remote: S3Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2, v3 = (release(tmp_path, v) for v in (1, 2, 3))
    cli.ok("put", v1, s3_remote.url("rel/"))
    monkeypatch.setenv("DG_MAX_RATIO", "0")
    assert cli.ok("put", v2, s3_remote.url("rel/")).json()["operation"] == "direct"
    flagged = cli.ok("put", "--max-ratio", "0.9", v3, s3_remote.url("rel/")).json()
    assert flagged["operation"] == "delta"
    assert s3_remote.physical() >= {"rel/app-1.2.zip", "rel/app-1.3.zip.delta"}


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("DG_MAX_RATIO", "lots", "DG_MAX_RATIO must be a number"),
        ("DG_MAX_RATIO", "1.5", "DG_MAX_RATIO must be a number between 0 and 1"),
        ("DG_LOG_LEVEL", "LOUD", "'LOUD'"),
        ("DG_CACHE_MAX_SIZE", "big", "DG_CACHE_MAX_SIZE"),
    ],
)
def test_bad_environment_values_fail_in_one_sentence(
    cli: Cli,
    s3_remote: S3Remote,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    name: str,
    value: str,
    needle: str,
) -> None:
    v1 = release(tmp_path, 1)
    monkeypatch.setenv(name, value)
    result = cli("put", v1, s3_remote.url("rel/"))
    assert result.rc == 2
    assert_clean_failure(result, needle)
    assert len(result.error_lines()) == 1
    assert s3_remote.physical() == set()


def test_bad_flag_values_fail_in_one_sentence(
    cli: Cli, s3_remote: S3Remote, tmp_path: Path
) -> None:
    v1 = release(tmp_path, 1)
    result = cli("put", "--max-ratio", "-1", v1, s3_remote.url("rel/"))
    assert_clean_failure(result, "--max-ratio must be a number between 0 and 1")
    result = cli("--log-level", "CHATTY", "put", v1, s3_remote.url("rel/"))
    assert_clean_failure(result, "'CHATTY'")
    assert s3_remote.physical() == set()


def test_dg_log_level_info_shows_decisions_and_the_flag_beats_it(
    s3_remote: S3Remote, tmp_path: Path
) -> None:
    v1, v2, v3 = (release(tmp_path, v) for v in (1, 2, 3))
    assert dg_agent("put", v1, s3_remote.url("rel/")).returncode == 0
    quiet = dg_agent("put", v2, s3_remote.url("rel/"), DG_MAX_RATIO="0")
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = dg_agent("put", v3, s3_remote.url("rel/"), DG_MAX_RATIO="0", DG_LOG_LEVEL="INFO")
    assert loud.returncode == 0
    assert any(
        line.startswith("INFO ") and "storing direct" in line for line in loud.stderr.splitlines()
    ), loud.stderr
    muted = dg_agent(
        "--log-level", "WARNING", "put", v3, s3_remote.url("rel/"),
        DG_MAX_RATIO="0", DG_LOG_LEVEL="INFO",
    )  # fmt: skip
    assert muted.returncode == 0 and muted.stderr == ""


def test_dg_log_level_debug_shows_debug_lines(s3_remote: S3Remote, tmp_path: Path) -> None:
    v1, v2 = release(tmp_path, 1), release(tmp_path, 2)
    assert dg_agent("put", v1, s3_remote.url("rel/")).returncode == 0
    done = dg_agent("put", v2, s3_remote.url("rel/"), DG_LOG_LEVEL="DEBUG")
    assert done.returncode == 0
    assert any(line.startswith("DEBUG dgagent") for line in done.stderr.splitlines()), done.stderr


def test_endpoint_flag_beats_aws_endpoint_url(
    cli: Cli, s3_remote: S3Remote, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = release(tmp_path, 1)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    failed = cli("put", v1, s3_remote.url("rel/"))
    assert_clean_failure(failed)
    assert s3_remote.physical() == set()
    cli.ok("put", "--endpoint-url", s3_endpoint, v1, s3_remote.url("rel/"))
    assert s3_remote.logical() == {"rel/app-1.1.zip"}


# ---------------------------------------------------------------------- version, completion


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"dg-agent {__version__}"


def test_bash_completion_is_valid_and_completes_commands(cli: Cli, tmp_path: Path) -> None:
    script = cli.ok("completion", "bash").out
    path = tmp_path / "dg-agent.bash"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    commands = top_level_commands()
    assert {"put", "get", "migrate", "completion", "watch", "cp", "sync"} <= set(commands)

    def complete(*words: str) -> list[str]:
        cword = len(words) + 1
        argv = " ".join(f"'{w}'" for w in ("dg-agent", *words))
        probe = (
            f'source {path}; COMP_WORDS=({argv} "$CUR"); COMP_CWORD={cword}; '
            "_dg_agent; printf '%s\\n' \"${COMPREPLY[@]}\""
        )
        done = subprocess.run(
            ["bash", "-c", probe],
            env={**os.environ, "CUR": ""},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return [w for w in done.stdout.splitlines() if w]

    assert complete() == commands
    assert complete("--log-level", "DEBUG", "watch") == ["add", "remove", "list"]
    assert complete("completion") == ["bash", "fish", "zsh"]
    assert complete("put", "x.zip") == []  # paths: left to bash's own file completion


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_name_every_command(cli: Cli, shell: str) -> None:
    script = cli.ok("completion", shell).out
    for command in top_level_commands():
        if shell == "fish":
            assert f"__fish_use_subcommand -a {command} " in script, command
        else:
            assert f"    {command}) " in script, command
    assert "no-preserve-prefix" in script
    for sub in ("add", "remove", "list"):
        assert sub in script


PROBES = {
    # zsh: compadd and _files stubbed, so the function's choices are printed (zsh filters them).
    "zsh": 'compadd() {{ shift; print -l -- "$@"; }}; _files() {{ :; }}; compdef() {{ :; }}; '
    "source {path}; words=(dg-agent --log-level DEBUG watch ''); CURRENT=5; _dg_agent",
    "fish": "source {path}; complete -C 'dg-agent watch '",
}


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_in_the_real_shell(cli: Cli, tmp_path: Path, shell: str) -> None:
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed here (apt-get install {shell}); not checked")
    path = tmp_path / f"dg-agent.{shell}"
    path.write_text(cli.ok("completion", shell).out)
    assert subprocess.run([binary, "-n", str(path)], check=False).returncode == 0
    done = subprocess.run(
        [binary, "-c", PROBES[shell].format(path=path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    offered = sorted(line.split("\t")[0] for line in done.stdout.splitlines() if line)
    assert offered == ["add", "list", "remove"]
