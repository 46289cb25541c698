"""The user service: rendered unit and plist, install/uninstall, manager detection, sd_notify.

Nothing here changes the machine's service manager: commands are recorded through the ``run``
seam, and ``systemctl``/``launchctl`` are replaced by fake programs on a private PATH.
"""

from __future__ import annotations

import configparser
import os
import plistlib
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dgagent.agent import service
from dgagent.agent.notify import sd_notify, watchdog_interval
from dgagent.agent.service import ServiceError
from dgagent.errors import ConfigError, DgError

EXE = "/opt/dg agent/bin/dg-agent"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG_CONFIG_HOME, and a PATH holding only a folder for fake programs."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return home


def fake_program(home: Path, name: str, exit_code: int) -> Path:
    path = home.parent / "bin" / name
    path.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    path.chmod(0o755)
    return path


def parse_unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)  # Environment= repeats
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


# --- rendering -----------------------------------------------------------------------------


def test_systemd_unit_runs_the_executable_in_the_foreground_under_notify() -> None:
    text = service.render("systemd", executable="/usr/local/bin/dg-agent", environment={})
    unit = parse_unit(text)
    assert unit["Service"]["Type"] == "notify"
    assert unit["Service"]["NotifyAccess"] == "main"
    assert unit["Service"]["ExecStart"] == "/usr/local/bin/dg-agent run"
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Service"]["RestartPreventExitStatus"] == "78"
    assert unit["Service"]["WatchdogSec"] == "30"
    assert unit["Service"]["Environment"] == "PYTHONUNBUFFERED=1"
    assert unit["Unit"]["StartLimitBurst"] == "5"
    assert unit["Install"]["WantedBy"] == "default.target"
    assert "RuntimeDirectory" not in unit["Service"]
    assert "{" not in text and "}" not in text


def test_systemd_unit_quotes_spaces_and_escapes_specifiers() -> None:
    text = service.render(
        "systemd",
        executable="/opt/50%/my dir/dg-agent",
        environment={"DG_CACHE_DIR": '/data/a "b"', "DG_LOG_LEVEL": "$HOME%n"},
    )
    lines = text.splitlines()
    assert 'ExecStart="/opt/50%%/my dir/dg-agent" run' in lines
    assert 'Environment="DG_CACHE_DIR=/data/a \\"b\\""' in lines
    assert "Environment=DG_LOG_LEVEL=$HOME%%n" in lines  # Environment= does not expand $


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_rendered_unit(tmp_path: Path) -> None:
    program = tmp_path / "my dir" / "dg-agent"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    unit = tmp_path / "dg-agent.service"
    environment = {"DG_CACHE_DIR": "/tmp/a b%c", "PATH": "/usr/bin:/bin"}
    unit.write_text(service.render("systemd", executable=str(program), environment=environment))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert str(unit) not in done.stdout + done.stderr  # systemd names the file in each warning


def test_launchd_plist_parses_with_arguments_keepalive_and_logs(home: Path) -> None:
    text = service.render("launchd", executable=EXE, environment={"DG_LOG_LEVEL": "debug"})
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == service.LABEL
    assert plist["ProgramArguments"] == [EXE, "run"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False, "Crashed": True}
    assert plist["ExitTimeOut"] == 60
    assert plist["ProcessType"] == "Background"
    assert plist["EnvironmentVariables"] == {"PYTHONUNBUFFERED": "1", "DG_LOG_LEVEL": "debug"}
    logs = home / "Library" / "Logs" / "dg-agent"
    assert plist["StandardOutPath"] == str(logs / "stdout.log")
    assert plist["StandardErrorPath"] == str(logs / "stderr.log")


def test_launchd_plist_escapes_xml_special_characters() -> None:
    executable = "/Users/R&D <team>/bin/dg-agent"
    text = service.render("launchd", executable=executable, environment={"DG_CACHE_DIR": "/a&b"})
    assert "R&amp;D &lt;team&gt;" in text
    plist = plistlib.loads(text.encode())
    assert plist["ProgramArguments"] == [executable, "run"]
    assert plist["EnvironmentVariables"]["DG_CACHE_DIR"] == "/a&b"


def test_render_refuses_a_relative_executable_or_a_newline() -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        service.render("systemd", executable="dg-agent", environment={})
    with pytest.raises(ConfigError, match="DG_LOG_LEVEL"):
        service.render("systemd", executable=EXE, environment={"DG_LOG_LEVEL": "x\nExecStart=/x"})


def test_a_missing_template_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "template_dirs", lambda: [tmp_path])
    with pytest.raises(DgError, match=r"template .*dg-agent\.plist is missing"):
        service.render("launchd", executable=EXE, environment={})


# --- finding the templates -----------------------------------------------------------------


def test_templates_come_from_the_first_folder_that_holds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, empty = tmp_path / "first", tmp_path / "second", tmp_path / "empty"
    for folder, text in ((first, "one"), (second, "two")):
        folder.mkdir()
        (folder / "dg-agent.service").write_text(f"# {text}\n")
    (second / "dg-agent.plist").write_text("<!-- two -->\n")
    monkeypatch.setattr(service, "template_dirs", lambda: [empty, first, second])
    assert service.read_template("dg-agent.service") == "# one\n"
    assert service.read_template("dg-agent.plist") == "<!-- two -->\n"
    monkeypatch.setattr(service, "template_dirs", lambda: [empty, first])
    with pytest.raises(ServiceError) as caught:
        service.read_template("dg-agent.plist")
    message = str(caught.value)
    assert f"missing from every folder searched ({empty}, {first})" in message
    assert message.endswith(
        "reinstall dg-agent (pip install --force-reinstall dg-agent) to put it back"
    )


def test_template_dirs_of_a_checkout_and_of_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interpreter = Path(sysconfig.get_path("data")) / "share" / "dg-agent" / "packaging"
    assert service.template_dirs() == [REPO / "packaging", interpreter]  # this checkout

    prefix = tmp_path / "prefix"
    site = prefix / "lib" / "python3.11" / "site-packages"
    module = site / "dgagent" / "agent" / "service.py"
    module.parent.mkdir(parents=True)
    (site / "packaging").mkdir()  # the `packaging` library, not a checkout's folder
    monkeypatch.setattr(service, "__file__", str(module))
    dirs = service.template_dirs()
    assert site / "packaging" not in dirs
    shares = [site, site.parent, site.parent.parent, prefix]
    assert dirs[:4] == [folder / "share" / "dg-agent" / "packaging" for folder in shares]
    assert dirs[-1] == interpreter


def build_wheel(out: Path) -> Path:
    """The wheel of this checkout, built offline from a copy of what goes into it.

    A copy, because setuptools builds in the source folder: it would leave build/ and an
    egg-info in the checkout, and a module since deleted would stay in build/lib and the wheel.
    """
    source = out / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "packaging", "dgagent", "dgagent_tui"):
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    pip(["wheel", "--no-build-isolation", "--no-deps", "-w", str(out / "dist"), str(source)])
    (wheel,) = (out / "dist").glob("dg_agent-*.whl")
    return wheel


def pip(args: list[str]) -> None:
    """Run pip offline; its output shows only when it fails."""
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    done = subprocess.run(
        [*argv, *args, "--no-index"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}{done.stderr}"


def test_the_wheel_ships_the_templates_and_its_install_finds_them(
    home: Path, tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path / "build")
    data = wheel.name.split("-py3")[0] + ".data/data/share/dg-agent/packaging"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"{data}/dg-agent.service", f"{data}/dg-agent.plist"} <= names
    assert not any(name.startswith("packaging/") for name in names)

    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip first uninstalls the dg-agent of the running venv.
    pip(["install", "--no-deps", "--ignore-installed", "--prefix", str(prefix), str(wheel)])
    (site,) = prefix.glob("lib/python*/site-packages")
    macos = sys.platform == "darwin"
    name = "dg-agent.plist" if macos else "dg-agent.service"
    marker = "<!-- installed -->" if macos else "# installed"
    with (prefix / "share" / "dg-agent" / "packaging" / name).open("a") as template:
        template.write(f"{marker}\n")  # shows which copy was read
    fake_program(home, "systemctl", 0)  # a user manager that answers, on Linux
    fake_program(home, "launchctl", 0)  # what macOS has
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{prefix / 'bin'}:{os.environ['PATH']}"}

    def python(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=tmp_path,  # not the checkout: python -m would import dgagent from there
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = python("-c", "import dgagent.agent.service as s; print(s.__file__)")
    assert Path(where.strip()) == site / "dgagent" / "agent" / "service.py"
    shown = python("-m", "dgagent.cli.main", "service", "install", "--dry-run")
    program = prefix / "bin" / "dg-agent"  # found on PATH, the installed wheel's script
    assert marker in shown.splitlines()
    if macos:
        assert f"<string>{program}</string>" in shown
    else:
        assert f"would write {home.parent / 'xdg-config'}/systemd/user/dg-agent.service" in shown
        assert f"ExecStart={program} run" in shown.splitlines()
    assert not service.unit_path().exists() and not service.plist_path().exists()


def test_secrets_are_never_written_into_the_service(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-value")
    monkeypatch.setenv("AWS_PROFILE", "builds")
    monkeypatch.setenv("DG_LOG_LEVEL", "debug")
    for manager in ("systemd", "launchd"):
        text = service.plan_install(manager, executable=EXE).text
        assert "wJalrXUtnFEMI" not in text
        assert "AWS_SECRET_ACCESS_KEY" not in text
        assert "session-token-value" not in text
        assert "builds" in text and "DG_LOG_LEVEL" in text


# --- paths ---------------------------------------------------------------------------------


def test_unit_path_honours_xdg_config_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"])
    assert service.unit_path() == config / "systemd" / "user" / "dg-agent.service"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")  # invalid per XDG: ignored
    assert service.unit_path() == home / ".config" / "systemd" / "user" / "dg-agent.service"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert service.unit_path() == home / ".config" / "systemd" / "user" / "dg-agent.service"
    assert service.plist_path() == home / "Library" / "LaunchAgents" / "io.dg-agent.agent.plist"


# --- install and uninstall -----------------------------------------------------------------


def test_dry_run_writes_nothing_and_shows_the_unit_and_commands(home: Path) -> None:
    plan = service.plan_install("systemd", executable=EXE)
    calls: list[list[str]] = []
    text = service.install(plan, dry_run=True, run=calls.append)
    assert not plan.path.exists()
    assert calls == []
    assert str(plan.path) in text
    assert plan.text in text
    assert "systemctl --user daemon-reload" in text
    assert "systemctl --user enable --now dg-agent.service" in text


def test_install_writes_the_unit_and_enables_it(home: Path) -> None:
    plan = service.plan_install("systemd", executable=EXE)
    calls: list[list[str]] = []
    summary = service.install(plan, dry_run=False, run=calls.append)
    assert plan.path == service.unit_path()
    assert plan.path.read_text() == plan.text
    assert stat.S_IMODE(plan.path.stat().st_mode) == 0o644
    assert calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "dg-agent.service"],
    ]
    assert "loginctl enable-linger" in summary
    assert [p.name for p in plan.path.parent.iterdir()] == ["dg-agent.service"]  # no temp left

    service.install(plan, dry_run=False, run=calls.append)  # reinstalling replaces the file
    assert plan.path.read_text() == plan.text

    calls.clear()
    assert "would remove" in service.uninstall("systemd", dry_run=True, run=calls.append)
    assert plan.path.exists() and calls == []

    service.uninstall("systemd", dry_run=False, run=calls.append)
    assert not plan.path.exists()
    assert calls == [
        ["systemctl", "--user", "disable", "--now", "dg-agent.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert "nothing to uninstall" in service.uninstall("systemd", dry_run=False, run=calls.append)


def test_install_launchd_writes_the_plist_and_bootstraps_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "_launchd_loaded", lambda: False)
    plan = service.plan_install("launchd", executable=EXE)
    calls: list[list[str]] = []
    service.install(plan, dry_run=False, run=calls.append)
    assert plistlib.loads(plan.path.read_bytes())["ProgramArguments"] == [EXE, "run"]
    assert (home / "Library" / "Logs" / "dg-agent").is_dir()
    domain = f"gui/{os.getuid()}"
    assert calls == [["launchctl", "bootstrap", domain, str(service.plist_path())]]

    monkeypatch.setattr(service, "_launchd_loaded", lambda: True)
    plan = service.plan_install("launchd", executable=EXE)
    assert plan.commands[0] == ["launchctl", "bootout", f"{domain}/{service.LABEL}"]
    calls.clear()
    service.uninstall("launchd", dry_run=False, run=calls.append)
    assert calls == [["launchctl", "bootout", f"{domain}/{service.LABEL}"]]
    assert not plan.path.exists()


def test_start_and_stop_the_installed_service(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    service.start_service("systemd", run=calls.append)
    service.stop_service("systemd", run=calls.append)
    assert calls == [
        ["systemctl", "--user", "start", "dg-agent.service"],
        ["systemctl", "--user", "stop", "dg-agent.service"],
    ]
    target = f"gui/{os.getuid()}/{service.LABEL}"
    calls.clear()
    monkeypatch.setattr(service, "_launchd_loaded", lambda: True)
    service.start_service("launchd", run=calls.append)
    service.stop_service("launchd", run=calls.append)
    monkeypatch.setattr(service, "_launchd_loaded", lambda: False)
    service.start_service("launchd", run=calls.append)
    service.stop_service("launchd", run=calls.append)  # not loaded: nothing to stop
    assert calls == [
        ["launchctl", "kickstart", target],
        ["launchctl", "bootout", target],
        ["launchctl", "bootstrap", f"gui/{os.getuid()}", str(service.plist_path())],
    ]


# --- detection -----------------------------------------------------------------------------


def test_detect_asks_the_user_manager(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert service.detect() is None  # no systemctl at all
    fake_program(home, "systemctl", 1)  # installed, but no user manager answers
    assert service.detect() is None
    fake_program(home, "systemctl", 0)
    assert service.detect() == "systemd"
    monkeypatch.setattr(sys, "platform", "darwin")
    fake_program(home, "launchctl", 0)
    assert service.detect() == "launchd"


def test_installed_needs_the_file_and_a_usable_manager(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    fake_program(home, "systemctl", 0)
    assert service.installed() is None
    service.install(service.plan_install(executable=EXE), dry_run=False, run=lambda argv: None)
    assert service.installed() == "systemd"
    fake_program(home, "systemctl", 1)
    assert service.installed() is None


def test_without_a_service_manager_install_points_to_dg_agent_start(home: Path) -> None:
    if sys.platform == "darwin":
        pytest.skip("launchd is always there on macOS")
    with pytest.raises(ServiceError, match="`dg-agent start` runs the agent as a background"):
        service.plan_install(executable=EXE)
    with pytest.raises(ServiceError, match="no service to uninstall"):
        service.uninstall(dry_run=True)


def test_default_executable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/nonexistent/python-thing"])
    with pytest.raises(ServiceError, match="cannot find the dg-agent program"):
        service.default_executable()
    on_path = fake_program(home, "dg-agent", 0)
    assert service.default_executable() == str(on_path)
    running = home / "venv" / "bin" / "dg-agent"
    running.parent.mkdir(parents=True)
    running.symlink_to(on_path)
    monkeypatch.setattr(sys, "argv", [str(running), "service", "install"])
    assert service.default_executable() == str(running)  # the symlink is kept


def test_a_failing_command_names_itself_and_its_error() -> None:
    script = (
        "import sys; sys.stderr.write('warming up\\nUnit dg-agent.service not found.\\n'); "
        "sys.exit(5)"
    )
    with pytest.raises(ServiceError) as caught:
        service.run_command([sys.executable, "-c", script])
    assert "-c" in str(caught.value)
    assert str(caught.value).endswith("failed: Unit dg-agent.service not found.")
    with pytest.raises(ServiceError, match="could not run `no-such-program-dg"):
        service.run_command(["no-such-program-dg", "--user"])
    service.run_command([sys.executable, "-c", "pass"])


# --- sd_notify -----------------------------------------------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket playing systemd, in a short folder (sun_path is ~108 bytes)."""
    folder = tempfile.mkdtemp(dir="/tmp")
    path = os.path.join(folder, "notify")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(path)
        receiver.settimeout(5)
        yield receiver, path
    finally:
        receiver.close()
        shutil.rmtree(folder)


def test_sd_notify_sends_one_datagram(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sd_notify("READY=1\nSTATUS=watching 3 folders") is True
    assert receiver.recv(4096) == b"READY=1\nSTATUS=watching 3 folders"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux's")
def test_sd_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"dg-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("WATCHDOG=1") is True
        assert receiver.recv(4096) == b"WATCHDOG=1"


def test_sd_notify_outside_systemd_or_to_a_gone_socket_is_false(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
    folder = tempfile.mkdtemp(dir="/tmp")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", os.path.join(folder, "gone"))
        assert sd_notify("STOPPING=1") is False
    finally:
        shutil.rmtree(folder)


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
