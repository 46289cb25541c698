"""Run dg-agent as a user service: a systemd user unit on Linux, a launchd LaunchAgent on macOS.

The templates live in ``packaging/``; a wheel ships them as data files under
``<prefix>/share/dg-agent/packaging`` (see template_dirs). This module fills them in, writes them
atomically and runs the manager's commands. Each command goes through a ``run`` callable, so
tests can record the commands instead of changing the machine's service manager.

    plan = plan_install()              # what would be written and run
    print(install(plan, dry_run=True)) # show it; install(plan, dry_run=False) does it
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

from dgagent.errors import ConfigError, DgError
from dgagent.fileio import atomic_output

log = logging.getLogger(__name__)

Manager = Literal["systemd", "launchd"]
Runner = Callable[[list[str]], None]
"""Runs one command and raises ServiceError when it fails (see run_command)."""

UNIT = "dg-agent.service"
LABEL = "io.dg-agent.agent"
TEMPLATE_SHARE = Path("share", "dg-agent", "packaging")
"""Where a wheel install puts the templates under its prefix ([tool.setuptools.data-files])."""
SYSTEMCTL = ["systemctl", "--user"]
COMMAND_TIMEOUT = 90.0  # stop/bootout wait for the agent to drain: up to 60 s (TimeoutStopSec)
PROBE_TIMEOUT = 5.0

PASSED_ENVIRONMENT = (
    # dg-agent's own settings and the paths the CLI uses to find the agent's socket and files.
    "DG_CACHE_DIR", "DG_CACHE_MAX_SIZE", "DG_DELTA_EXTENSIONS", "DG_LOG_LEVEL", "DG_MAX_RATIO",
    "DG_WINDOW_BUDGET", "DG_XDELTA_LEVEL", "DG_CONFIG", "DG_STATE_DIR", "DG_RUNTIME_DIR",
    "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
    # xdelta3 must be found: launchd's default PATH lacks Homebrew's bin folder.
    "PATH",
    # Which AWS credentials and endpoint to use, never the credentials themselves.
    "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)  # fmt: skip
"""Variables copied into the unit or plist when set at install time.

An allowlist on purpose: the unit and plist are world-readable files, and ``systemctl show`` and
``launchctl print`` show their environment to any local user, so AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN and the like must never be written there. The agent reads credentials the way
boto3 does, from ~/.aws (mode 0600) or the profile named here.
"""

NO_MANAGER = (
    "no service manager is available (no systemd user instance answers `systemctl --user`, "
    "and this is not macOS with launchd)"
)


class ServiceError(DgError, RuntimeError):
    """No service manager is available, or one of its commands failed."""


@dataclass(frozen=True)
class Plan:
    """What ``install`` would write and run."""

    manager: Manager
    path: Path
    text: str
    commands: list[list[str]]
    directories: list[Path] = field(default_factory=list)
    """Made before the commands run: launchd does not create the folder of its log files."""


def run_command(argv: list[str]) -> None:
    """Run a service-manager command; a failure raises ServiceError with its stderr's last line."""
    command = shlex.join(argv)
    log.info("running %s", command)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{command}` did not finish within {COMMAND_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ServiceError(f"could not run `{command}`: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        detail = lines[-1] if lines else f"exit status {done.returncode}"
        raise ServiceError(f"`{command}` failed: {detail}")


def _succeeds(argv: list[str]) -> bool:
    """True when a read-only query command exits 0; a missing or hanging program is False."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s: %s", shlex.join(argv), exc)
        return False
    return done.returncode == 0


def detect() -> Manager | None:
    """The user service manager of this machine, or None (a container, WSL, a non-systemd Linux)."""
    if sys.platform == "darwin":
        return "launchd" if shutil.which("launchctl") else None
    if shutil.which("systemctl") and _succeeds([*SYSTEMCTL, "show-environment"]):
        return "systemd"
    return None


def unit_path() -> Path:
    """Where systemd looks for user units: ``$XDG_CONFIG_HOME/systemd/user/dg-agent.service``."""
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = (
        Path(config) if os.path.isabs(config) else Path.home() / ".config"
    )  # XDG: relative = unset
    return base / "systemd" / "user" / UNIT


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def log_dir() -> Path:
    """Where launchd writes the agent's stdout and stderr (systemd sends them to the journal)."""
    return Path.home() / "Library" / "Logs" / "dg-agent"


def service_path(manager: Manager) -> Path:
    return unit_path() if manager == "systemd" else plist_path()


def _domain() -> str:
    return f"gui/{os.getuid()}"


def _target() -> str:
    return f"{_domain()}/{LABEL}"


def _launchd_loaded() -> bool:
    return _succeeds(["launchctl", "print", _target()])


def _systemd_quote(value: str, *, command: bool = False) -> str:
    """One word for ExecStart= or Environment=: quoted when needed, specifiers (%) escaped."""
    text = value.replace("%", "%%")
    if command:
        text = text.replace("$", "$$")  # ExecStart= expands $VAR; Environment= does not
    if any(c in text for c in " \t\"'\\;"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _check_value(what: str, value: str) -> None:
    if any(ord(c) < 32 for c in value):
        raise ConfigError(f"{what} contains a control character (such as a newline): {value!r}")


def template_dirs() -> list[Path]:
    """The folders that may hold the service templates, in the order they are tried.

    From a source checkout (an editable install): its ``packaging/``, so edits there take effect
    at once. From an installed package: ``share/dg-agent/packaging`` under the folder holding
    ``dgagent`` and its three parents, nearest first. That finds the prefix of this very install
    (a venv, pipx, ``pip install --user``, or ``--prefix``/``--target`` used through PYTHONPATH)
    before the interpreter's, which may hold another install's copy. Last, the same folder under
    the interpreter's data prefix, for layouts deeper than that.
    """
    root = Path(__file__).resolve().parents[2]  # holds dgagent/: a checkout or site-packages
    interpreter = Path(sysconfig.get_path("data")) / TEMPLATE_SHARE
    if (root / "pyproject.toml").is_file():  # site-packages/packaging is another project's
        return [root / "packaging", interpreter]
    above = [folder / TEMPLATE_SHARE for folder in [root, *root.parents[:3]]]
    return list(dict.fromkeys([*above, interpreter]))  # often the same prefix twice


def read_template(name: str) -> str:
    """The text of the template ``name`` from the first of template_dirs() that holds it."""
    dirs = template_dirs()
    for folder in dirs:
        path = folder / name
        try:
            return path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # there but unreadable: using another copy would hide that
            raise ServiceError(
                f"cannot read the service template {path}: {exc.strerror or exc}"
            ) from exc
    searched = ", ".join(str(folder) for folder in dirs)
    raise ServiceError(
        f"the service template {name} is missing from every folder searched ({searched}); "
        "reinstall dg-agent (pip install --force-reinstall dg-agent) to put it back"
    )


def render(manager: Manager, *, executable: str, environment: Mapping[str, str]) -> str:
    """The unit or plist text for ``executable`` (an absolute path) and extra ``environment``."""
    if not os.path.isabs(executable):
        raise ConfigError(f"the service needs an absolute path to dg-agent, got {executable!r}")
    _check_value("the dg-agent path", executable)
    for name, value in environment.items():
        if not name.isidentifier():
            raise ConfigError(f"{name!r} is not a valid environment variable name")
        _check_value(f"the environment variable {name}", value)
    template = read_template("dg-agent.service" if manager == "systemd" else "dg-agent.plist")
    if manager == "systemd":
        return template.format(
            exec_start=_systemd_quote(executable, command=True),
            environment="".join(
                f"\nEnvironment={_systemd_quote(f'{k}={v}')}" for k, v in environment.items()
            ),
        )
    return template.format(
        label=escape(LABEL),
        executable=escape(executable),
        log_dir=escape(str(log_dir())),
        environment="".join(
            f"\n    <key>{escape(k)}</key>\n    <string>{escape(v)}</string>"
            for k, v in environment.items()
        ),
    )


def default_executable() -> str:
    """The dg-agent program running now, else the one on PATH; symlinks kept, so upgrades
    (pipx, a venv's bin/) keep working without a reinstall."""
    running = sys.argv[0]
    if os.path.basename(running) == "dg-agent" and os.access(running, os.X_OK):
        return os.path.abspath(running)
    found = shutil.which("dg-agent")
    if found is None:
        raise ServiceError("cannot find the dg-agent program on PATH; put it there and retry")
    return os.path.abspath(found)


def passed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The PASSED_ENVIRONMENT variables set (non-empty) in ``environ``."""
    return {name: environ[name] for name in PASSED_ENVIRONMENT if environ.get(name)}


def plan_install(
    manager: Manager | None = None,
    *,
    executable: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """Render the service file and list the commands that enable and start it.

    ``environ`` (default: this process's) supplies the variables passed to the service.
    """
    manager = manager or detect()
    if manager is None:
        raise ServiceError(
            f"{NO_MANAGER}; `dg-agent start` runs the agent as a background process instead"
        )
    text = render(
        manager,
        executable=executable or default_executable(),
        environment=passed_environment(os.environ if environ is None else environ),
    )
    if manager == "systemd":
        commands = [[*SYSTEMCTL, "daemon-reload"], [*SYSTEMCTL, "enable", "--now", UNIT]]
        return Plan(manager, unit_path(), text, commands)
    commands = [["launchctl", "bootstrap", _domain(), str(plist_path())]]
    if _launchd_loaded():  # bootstrap refuses a label that is already loaded
        commands.insert(0, ["launchctl", "bootout", _target()])
    return Plan(manager, plist_path(), text, commands, [log_dir()])


def _show(commands: list[list[str]]) -> str:
    return "".join(f"  {shlex.join(argv)}\n" for argv in commands)


def install(plan: Plan, *, dry_run: bool, run: Runner = run_command) -> str:
    """Write the service file and run the plan's commands; returns what was done, for the user.

    With ``dry_run`` nothing is written or run: the text says what would be.
    """
    if dry_run:
        made = "".join(f"would create {d}\n" for d in plan.directories)
        return f"would write {plan.path}:\n\n{plan.text}\n{made}would run:\n{_show(plan.commands)}"
    try:
        for directory in plan.directories:
            directory.mkdir(parents=True, exist_ok=True)
        plan.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(plan.path) as tmp:
            tmp.write_text(plan.text, encoding="utf-8")
        plan.path.chmod(0o644)  # the convention for unit files, whatever the umask
    except OSError as exc:
        raise ServiceError(f"cannot write {plan.path}: {exc.strerror or exc}") from exc
    for argv in plan.commands:
        run(argv)
    if plan.manager == "systemd":
        return (
            f"installed {plan.path} and started {UNIT}\n"
            "logs: journalctl --user -u dg-agent -f\n"
            "to keep it running while you are logged out: loginctl enable-linger $USER"
        )
    return f"installed {plan.path} and loaded {LABEL}\nlogs: {log_dir()}/stderr.log"


def uninstall(manager: Manager | None = None, *, dry_run: bool, run: Runner = run_command) -> str:
    """Stop and disable the service, then remove its file; returns what was done, for the user."""
    manager = manager or detect()
    if manager is None:
        raise ServiceError(f"{NO_MANAGER}, so there is no service to uninstall")
    path = service_path(manager)
    if not path.exists():
        return f"nothing to uninstall: {path} does not exist"
    if manager == "systemd":
        before = [[*SYSTEMCTL, "disable", "--now", UNIT]]
        after = [[*SYSTEMCTL, "daemon-reload"]]
    else:
        before = [["launchctl", "bootout", _target()]] if _launchd_loaded() else []
        after = []
    if dry_run:
        return f"would run:\n{_show(before)}would remove {path}\nwould run:\n{_show(after)}"
    for argv in before:
        run(argv)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ServiceError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    for argv in after:
        run(argv)
    return f"stopped the agent and removed {path}"


def installed() -> Manager | None:
    """The manager whose service file for dg-agent exists, when that manager is usable."""
    candidate: Manager = "launchd" if sys.platform == "darwin" else "systemd"
    if not service_path(candidate).exists():  # checked first: no subprocess in the common case
        return None
    return candidate if detect() == candidate else None


def start_service(manager: Manager, *, run: Runner = run_command) -> None:
    """Start the installed service; a running agent is left alone."""
    if manager == "systemd":
        run([*SYSTEMCTL, "start", UNIT])
    elif _launchd_loaded():
        run(["launchctl", "kickstart", _target()])  # no -k: that would kill a running agent
    else:
        run(["launchctl", "bootstrap", _domain(), str(plist_path())])  # RunAtLoad starts it


def stop_service(manager: Manager, *, run: Runner = run_command) -> None:
    """Stop the service (SIGTERM: in-flight uploads drain) and wait for it to exit."""
    if manager == "systemd":
        run([*SYSTEMCTL, "stop", UNIT])
    elif _launchd_loaded():
        run(["launchctl", "bootout", _target()])  # unloads it, so KeepAlive does not restart it
