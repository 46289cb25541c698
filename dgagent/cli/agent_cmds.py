"""``dg-agent run|start|stop|status``, ``watch add|remove|list``, ``service install|uninstall``."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dgagent.agent import config as config_file
from dgagent.agent import lock, service
from dgagent.agent.config import Watch
from dgagent.cli.common import Session, add_reference_policy, human, percent, print_json
from dgagent.errors import ConfigError, DgError
from dgagent.rpc import AgentClient, AgentConnectionError, AgentNotRunning, Method
from dgagent.rpc.paths import agent_paths
from dgagent.rpc.records import Paused, Retried, Status
from dgagent.storage import Location, parse_location

EXIT_CONFIG = 78
EXIT_NOT_RUNNING = 3
CHECK_TIMEOUT = 15.0
"""How long ``start`` waits for the agent's first check of the stores, to show problems."""
START_TIMEOUT = 30.0


def _client(timeout: float = 30.0) -> AgentClient:
    client = AgentClient(agent_paths().socket, timeout=timeout)
    client.connect()
    return client


def _ask(method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    with _client(timeout) as client:
        return client.call(method, params or {})


def run_agent(args: argparse.Namespace, session: Session) -> int:
    # Imported here: watchdog and apscheduler are only needed by the agent process itself.
    from dgagent.agent.daemon import Agent, AlreadyRunningError  # noqa: PLC0415
    from dgagent.agent.rpc import serve  # noqa: PLC0415

    paths = agent_paths()
    try:
        agent = Agent(paths)
    except ConfigError as exc:
        print(f"dg-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return serve(agent)
    except AlreadyRunningError as exc:
        print(f"dg-agent: {exc}", file=sys.stderr)
        return 1


def _status(timeout: float) -> Status:
    return Status.from_json(_ask(Method.STATUS, timeout=timeout))


def _running_pid() -> int | None:
    try:
        return _status(5).pid
    except AgentNotRunning:
        return None


def run_start(args: argparse.Namespace, session: Session) -> int:
    paths = agent_paths()
    config_file.load(paths.config_file)  # a bad config is reported here, not in a log
    pid = _running_pid()
    if pid is not None:
        print(f"dg-agent is already running (pid {pid})")
        return 0
    manager = None if args.no_service else service.installed()
    process = None
    if manager is not None:
        service.start_service(manager)
    else:
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        with paths.log.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "dgagent.cli.main", "run"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: survives this terminal
                close_fds=True,
            )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = _running_pid()
        if pid is not None:
            how = (
                f"as the {manager} service" if manager else f"in the background (log: {paths.log})"
            )
            print(f"dg-agent started {how}, pid {pid}")
            _print_problems(_first_checks())
            return 0
        if process is not None and process.poll() is not None:
            tail = paths.log.read_text(errors="replace").strip().splitlines()[-3:]
            print(f"dg-agent: the agent exited at start: {' '.join(tail)}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(
        f"dg-agent: the agent did not answer within {START_TIMEOUT:.0f} s; see {paths.log}",
        file=sys.stderr,
    )
    return 1


def _first_checks() -> Status | None:
    """The status once the agent has checked each watch's store (a few seconds at most)."""
    deadline = time.monotonic() + CHECK_TIMEOUT
    status = None
    with contextlib.suppress(DgError):
        while time.monotonic() < deadline:
            status = _status(5)
            if status.checked:
                break
            time.sleep(0.2)
    return status


def _ask_shutdown() -> bool | None:
    """Ask the agent to stop: True when it answered, None when nothing listens, False when
    the connection was lost before the answer (the agent may be stopping already)."""
    try:
        _ask(Method.SHUTDOWN, timeout=10)
    except AgentNotRunning:
        return None
    except AgentConnectionError:
        return False
    return True


def run_stop(args: argparse.Namespace, session: Session) -> int:
    paths = agent_paths()
    manager = service.installed()
    asked = _ask_shutdown()
    if asked is None and not lock.held(paths):
        print("dg-agent is not running")
        return 0
    if manager is not None:
        service.stop_service(manager)  # or the service manager restarts it
    # Done means the agent let go of its lock, its last act: the socket goes before that, and
    # a lost connection says nothing either way. Until then the request is repeated, in case
    # it never arrived (the agent was still starting, or the connection broke first).
    deadline = time.monotonic() + args.timeout
    while lock.held(paths):
        if time.monotonic() >= deadline:
            print(
                f"dg-agent: the agent is still running after {args.timeout:.0f} s; "
                f"see {paths.log} or the service's log, then run dg-agent stop again",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.05)
        if not asked:
            asked = _ask_shutdown()
    print("dg-agent stopped")
    return 0


def run_status(args: argparse.Namespace, session: Session) -> int:
    try:
        answer = _ask(Method.STATUS, timeout=10)
    except AgentNotRunning as exc:
        if args.json:
            print_json({"running": False, "error": str(exc)})
        else:
            print(str(exc))
        return EXIT_NOT_RUNNING
    if args.json:
        print_json({"running": True, **answer})
        return 0
    status = Status.from_json(answer)
    state = "idle" if status.idle else "busy"
    if status.paused:
        state = "paused"
    print(f"dg-agent {status.version}, pid {status.pid}: {state}")
    print(
        f"  queued {status.queued}, uploading {status.uploading}, settling "
        f"{status.settling}, done {status.done}, failed {status.failed}"
    )
    saved = status.bytes
    print(
        f"  stored {human(saved.stored)} for {human(saved.original)} "
        f"(saved {percent(saved.saved, saved.original)}); reference cache "
        f"{status.cache.hits} hits, {status.cache.misses} misses"
    )
    for watch in status.watches:
        note = f" — {watch.note}" if watch.note else ""
        print(f"  {watch.dir} → {watch.url} [{watch.state}] {watch.files} files{note}")
        how = ", ".join(f"{n} {what}" for what, n in sorted(watch.decisions.items()))
        mode = watch.write_mode or "bucket not written yet"
        policy = watch.reference_policy
        print(f"    stored as: {how or 'nothing yet'}; references: {policy}; {mode}")
    if not status.watches:
        print("  no folders watched: add one with dg-agent watch add DIR URL")
    _print_problems(status)
    return 0


def _print_problems(status: Status | None) -> None:
    """Each state the user must act on, and the command that fixes it."""
    for found in status.problems if status else []:
        print(f"problem: {found.problem}\n  fix: {found.fix}")


def run_control(args: argparse.Namespace, session: Session) -> int:
    """``pause``, ``resume`` and ``retry``, for one watched folder or all."""
    params: dict[str, Any] = {}
    if args.dir is not None:
        params["watch"] = str(Path(args.dir).expanduser().resolve())
    try:
        answer = _ask(args.command, params, timeout=10)
    except AgentNotRunning as exc:
        print(f"dg-agent: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    what = params.get("watch", "every watched folder")
    if args.command == "retry":
        n = Retried.from_json(answer).retried
        print(f"{n} failed file{'s' * (n != 1)} of {what} queued again")
    else:
        Paused.from_json(answer)  # an answer of another shape fails here, not silently
        print(f"{args.command}d: {what}")
    return 0


def _notify_agent() -> str:
    try:
        _ask(Method.CONFIG_RELOAD, timeout=5)
    except AgentNotRunning:
        return " (the agent is not running; it applies this when started)"
    return " (applied to the running agent)"


def run_watch(args: argparse.Namespace, session: Session) -> int:
    path = agent_paths().config_file
    current = config_file.load(path)
    if args.watch_command == "list":
        watches = [_watch_record(w) for w in current.watches]
        if args.json:
            print_json({"config": str(path), "watches": watches})
        for w in [] if args.json else current.watches:
            flags = (" --delete" if w.delete else "") + "".join(
                f" --exclude {p}" for p in w.exclude
            )
            if w.retention is not None:
                flags += f" ({w.retention.describe()}"
                flags += ", files still in the folder too)" if w.prune_present else ")"
            print(f"{w.dir} → {w.url}{flags}")
        if not args.json and not current.watches:
            print(f"no folders watched (config: {path})")
        return 0
    folder = Path(args.dir).expanduser().resolve()
    if args.watch_command == "remove":
        config_file.save(path, config_file.without_watch(current, folder))
        print(f"no longer watching {folder}{_notify_agent()}")
        return 0
    # The agent's own S3 settings: the check must see the store as the agent will.
    location = parse_location(args.url, current.s3.options())  # also checks the URL's form
    if not args.no_check:
        _check_store(location)
    if args.max_ratio is not None and not 0 <= args.max_ratio <= 1:
        raise ConfigError(f"--max-ratio must be between 0 and 1, got {args.max_ratio}")
    watch = Watch(
        folder,
        args.url,
        args.delete,
        tuple(args.exclude or ()),
        args.max_ratio,
        args.codec,
        args.reference_policy,
        keep_last=args.keep_last,
        older_than=args.older_than,
        prune_present=args.prune_present,
    )
    _ = watch.retention  # a bad --keep-last or --older-than is refused before the config changes
    config_file.save(path, config_file.with_watch(current, watch))
    note = "" if folder.is_dir() else f" ({folder} does not exist yet; it is watched once it does)"
    print(f"watching {folder} → {args.url}{note}{_notify_agent()}")
    return 0


def _check_store(location: Location) -> None:
    """A watch whose store cannot be read would fail every file: say so now (one LIST)."""
    try:
        next(iter(location.storage.list_objects(location.key, delimiter="/")), None)
    except DgError as exc:
        raise type(exc)(
            f"{exc}; the watch was not added (fix the store or credentials, or add it anyway "
            "with --no-check)"
        ) from exc


def _watch_record(w: Watch) -> dict[str, Any]:
    return {
        "dir": str(w.dir),
        "url": w.url,
        "delete": w.delete,
        "exclude": list(w.exclude),
        "max_ratio": w.max_ratio,
        "codec": w.codec,
        "reference_policy": w.reference_policy,
        "keep_last": w.keep_last,
        "older_than": w.older_than,
        "prune_present": w.prune_present,
    }


def run_service(args: argparse.Namespace, session: Session) -> int:
    if args.service_command == "install":
        manager = service.detect()
        if manager is None and args.dry_run:
            # Show what would be written on a machine that has one (this one has none).
            manager = "launchd" if sys.platform == "darwin" else "systemd"
            print(f"note: {service.NO_MANAGER}; with {manager}, install would do this:\n")
        plan = service.plan_install(manager)
        print(service.install(plan, dry_run=args.dry_run))
    else:
        print(service.uninstall(dry_run=args.dry_run))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "run",
        help="run the agent in the foreground (what service managers call)",
    ).set_defaults(handler=run_agent)
    start = sub.add_parser(
        "start",
        help="start the agent (the installed service, else in the "
        "background) and wait until it answers",
    )
    start.add_argument(
        "--no-service",
        action="store_true",
        help="start a background process even if a service is installed",
    )
    start.set_defaults(handler=run_start)
    stop = sub.add_parser("stop", help="ask the agent to finish in-flight uploads and exit")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    stop.set_defaults(handler=run_stop)
    status = sub.add_parser("status", help="what the agent is doing (exit code 3: not running)")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=run_status)
    for verb, what in (
        ("pause", "stop storing files (of DIR, or of every watched folder) until resume"),
        ("resume", "store files again after pause"),
        ("retry", "queue the failed files again (of DIR, or of every watched folder)"),
    ):
        control = sub.add_parser(verb, help=what)
        control.add_argument("dir", nargs="?", help="a watched folder (default: all)")
        control.set_defaults(handler=run_control)

    watch = sub.add_parser(
        "watch",
        help="add, remove or list watched folders",
        epilog="examples:\n  dg-agent watch add ~/build/out s3://releases/app/\n"
        "  dg-agent watch add ./dist file:///srv/artifacts/ --delete "
        "--exclude '*.log'\n  dg-agent watch list --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = watch.add_subparsers(dest="watch_command", metavar="ACTION", required=True)
    add = verbs.add_parser("add", help="watch DIR and keep it synced into URL")
    add.add_argument("dir")
    add.add_argument("url")
    add.add_argument("--delete", action="store_true", help="mirror local deletions (guarded)")
    add.add_argument("--exclude", action="append", metavar="PATTERN", help="skip matching paths")
    add.add_argument("--max-ratio", type=float, help="largest delta/file ratio worth keeping")
    add.add_argument(
        "--codec",
        choices=("compat", "archive"),
        help="compat (default; DeltaGlider-readable) or archive (smaller zip/gzip deltas, "
        "read only by dg-agent)",
    )
    add_reference_policy(add)
    add.add_argument(
        "--keep-last",
        type=int,
        metavar="N",
        help="retention: the agent deletes stored versions beyond each line's newest N (see "
        "dg-agent prune)",
    )
    add.add_argument(
        "--older-than",
        metavar="DURATION",
        help="retention: and versions older than this (e.g. 180d); with --keep-last, a version "
        "goes only when neither keeps it",
    )
    add.add_argument(
        "--prune-present",
        action="store_true",
        help="let retention delete versions whose file is still in the folder",
    )
    add.add_argument(
        "--no-check",
        action="store_true",
        help="add it even if its store cannot be read now (a bucket made later)",
    )
    remove = verbs.add_parser("remove", help="stop watching DIR (stored files stay)")
    remove.add_argument("dir")
    listing = verbs.add_parser("list", help="the watched folders")
    listing.add_argument("--json", action="store_true")
    watch.set_defaults(handler=run_watch)

    svc = sub.add_parser("service", help="install or remove the systemd user unit / LaunchAgent")
    svc_verbs = svc.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    for verb in ("install", "uninstall"):
        p = svc_verbs.add_parser(verb)
        p.add_argument("--dry-run", action="store_true", help="print what would be done")
    svc.set_defaults(handler=run_service)
