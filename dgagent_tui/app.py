"""dg-tui: the terminal UI beside a running agent. It talks only to the agent's socket.

The App owns the link (one long-lived worker following ``agent.link.follow``) and the data every
screen draws from (the queue model, the event log). Screens read that data on their own
timers, so a burst of events costs a few model updates, not a redraw each. Each user action
runs in its own worker; a failure there becomes an error modal, never a traceback.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.scrollbar import ScrollBar
from textual.worker import Worker, WorkerState

from dgagent.errors import DgError
from dgagent.rpc import AgentConnectionError, Method
from dgagent.rpc.paths import agent_paths
from dgagent.rpc.records import Hello, Status
from dgagent_tui import cli, folders, keys
from dgagent_tui.agent.client import AsyncAgentClient
from dgagent_tui.agent.link import (
    AgentEvent,
    Backoff,
    LinkDown,
    LinkUp,
    Snapshot,
    StatusTick,
    follow,
)
from dgagent_tui.agent.model import QueueModel
from dgagent_tui.screens.activity import ActivityScreen
from dgagent_tui.screens.browse import BrowseScreen
from dgagent_tui.screens.help import HelpModal, HelpRow
from dgagent_tui.screens.modals import ErrorModal
from dgagent_tui.screens.offline import OfflineScreen
from dgagent_tui.screens.queue import QueueScreen
from dgagent_tui.widgets import WholeCellScrollBarRender

MAX_EVENTS = 5000


class DgApp(App[None]):
    TITLE = "dg-tui"
    MODES = {  # noqa: RUF012 (textual reads this class attribute)
        "queue": QueueScreen,
        "browse": BrowseScreen,
        "activity": ActivityScreen,
        "offline": OfflineScreen,
    }
    DEFAULT_MODE = "queue"
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("1", "mode('queue')", "Queue", id="mode.queue"),
        Binding("2", "mode('browse')", "Browse", id="mode.browse"),
        Binding("3", "mode('activity')", "Activity", id="mode.activity"),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="app.help"),
        Binding("P", "pause", "Pause/resume", show=False, id="agent.pause"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]
    link_text: reactive[str] = reactive("connecting…")
    # "connecting" (the first try), "up", "stale" (reconnected, reloading) or "down"
    link_state: reactive[str] = reactive("connecting")

    def __init__(
        self,
        socket_path: Path,
        *,
        read_only: bool = False,
        label: str | None = None,
        clock: Callable[[], float] = time.time,
        keymap_file: Path | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__()
        # Textual's documented hook for scrollbars: whole-cell thumbs, no stray ▁▂ glyphs.
        ScrollBar.renderer = WholeCellScrollBarRender
        self.socket_path = Path(socket_path)
        self.read_only = read_only
        self.label = label or str(self.socket_path)  # what the link bar names the agent by
        self.clock = clock
        self.keymap_file = keymap_file
        self.backoff = backoff
        self.model = QueueModel(clock)
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.events_seen = 0  # events ever appended (screens compare it to know what is new)
        self.verified: dict[str, str] = {}  # url → SHA-256 the agent confirmed this session
        self.client: AsyncAgentClient | None = None
        self.link_up = False
        self.stale = False
        self.hello: Hello | None = None
        self.last_error = ""
        self.retry_in = 0.0
        self._last_mode = "queue"

    # -- start ----------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.keymap_file is not None:
            try:
                self.set_keymap(keys.load_keymap(self.keymap_file))
            except DgError as exc:
                self.notify(str(exc), severity="error", timeout=10)
        self.follow_agent()

    @work(exclusive=True, group="link", exit_on_error=False)
    async def follow_agent(self) -> None:
        async for update in follow(self.socket_path, backoff=self.backoff):
            if isinstance(update, LinkUp):
                self._link_up(update)
            elif isinstance(update, Snapshot):
                self.model.load(update.status, update.items, update.transfers)
                self.stale = False
                self._show_link()
            elif isinstance(update, StatusTick):
                self.model.set_status(update.status)
            elif isinstance(update, AgentEvent):
                self._event(update.event, update.replay)
            else:
                self._link_down(update)

    def _link_up(self, update: LinkUp) -> None:
        self.client, self.hello = update.client, update.hello
        self.link_up = True
        self._show_link()
        if self.current_mode == "offline":
            self.switch_mode(self._last_mode)
        self.refresh_bindings()

    def _link_down(self, update: LinkDown) -> None:
        self.client = None
        was_up, self.link_up = self.link_up, False
        self.stale = update.was_up
        self.last_error, self.retry_in = update.reason, update.retry_in
        self._show_link()
        # A brief restart only greys the data; from the second failed try, say so plainly.
        if self.current_mode != "offline" and (not update.was_up or update.attempt == 2):
            self._last_mode = self.current_mode
            self.switch_mode("offline")
        if was_up:  # footers redraw on this: only on a change, not at every retry
            self.refresh_bindings()

    def _event(self, event: dict[str, Any], replay: bool) -> None:
        if event.get("type") != "file.progress":  # a moving figure, not news for the activity log
            self.events.append(event)
            self.events_seen += 1
        if not replay:  # the snapshot already holds what replayed events did
            self.model.apply(event)

    def _show_link(self) -> None:
        if self.link_up:
            version = self.hello.agent if self.hello else "?"
            mode = "  [b]read-only[/b]" if self.read_only else ""
            reloading = "  reloading…" if self.stale else ""
            self.link_text = f"● connected  agent {version}  {self.label}{mode}{reloading}"
            self.link_state = "stale" if self.stale else "up"
        else:
            state = "data is stale; " if self.stale else ""
            self.link_text = (
                f"○ agent not reachable: {state}retrying in {self.retry_in:.1f} s  {self.label}"
            )
            self.link_state = "down"

    # -- actions and workers -------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call the agent now; AgentConnectionError while it is away."""
        if self.client is None:
            raise AgentConnectionError(f"the agent is not connected ({self.last_error})")
        return await self.client.call(method, params)

    def run_op(self, op: Coroutine[Any, Any, Any], name: str) -> None:
        self.run_worker(op, name=name, group="ops", exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if event.worker.group == "link":
            # A bug while drawing an update must not end the link: report it, follow again.
            self.push_screen(ErrorModal("The agent link failed", _describe(error)))
            self.set_timer(1.0, self.follow_agent)
            return
        self.push_screen(ErrorModal(f"{event.worker.name} failed", _describe(error)))

    def action_mode(self, mode: str) -> None:
        self.switch_mode(mode)

    def action_help(self) -> None:
        rows: list[HelpRow] = []
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if binding.id is None and key != "ctrl+p":
                continue  # textual's own (tab, ctrl+c …): not ours to explain or remap
            what = binding.description or binding.action
            rows.append((binding.key_display or key, what, binding.id or "-"))
        where = str(self.keymap_file or keys.default_keymap_file())
        self.push_screen(HelpModal(rows, where))

    def action_pause(self) -> None:
        paused = self.model.paused
        method = "resume" if paused else "pause"
        self.run_op(self._pause(method), method)

    async def _pause(self, method: str) -> None:
        await self.call(method)
        self.model.set_status(Status.from_json(await self.call(Method.STATUS)))
        self.notify("syncing resumed" if method == "resume" else "syncing paused")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pause" and (self.read_only or not self.link_up):
            return None
        return True

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Textual's own "Keys" (its key panel) would be listed beside ours, and its
        # "Screenshot" writes into ~/Downloads even when that folder does not exist.
        replaced = {"Keys", "Screenshot"}
        yield from (c for c in super().get_system_commands(screen) if c.title not in replaced)
        yield SystemCommand(
            "Screenshot",
            f"Save an SVG of this screen in {folders.save_folder()}",
            lambda: self.set_timer(0.1, self.action_screenshot),  # after the palette closes
        )
        yield SystemCommand("Queue", "The live upload queue (1)", lambda: self.action_mode("queue"))
        yield SystemCommand("Browse", "Stored files (2)", lambda: self.action_mode("browse"))
        yield SystemCommand(
            "Activity", "The agent's events (3)", lambda: self.action_mode("activity")
        )
        if not self.read_only:
            yield SystemCommand("Pause or resume syncing", "P", self.action_pause)
            yield SystemCommand("Rescan all watched folders", "", self._rescan)
        yield SystemCommand("Keys", "Every key and its id (?)", self.action_help)

    def _rescan(self) -> None:
        self.run_op(self.call("rescan"), "rescan")

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG of the screen and say where; on failure say why and what to do."""
        folder = Path(path).expanduser() if path else folders.save_folder()
        try:
            written = Path(self.save_screenshot(filename, str(folder))).resolve()
        except OSError as exc:
            # Nothing to choose here: the folder is the platform's downloads folder or home.
            fix = f"make sure {folder} is a folder you can write to"
            self.notify(folders.cannot_write(folder, exc, fix=fix), severity="error", timeout=10)
            return
        self.notify(f"screenshot saved to {written}", timeout=8)


def _describe(error: BaseException | None) -> str:
    if isinstance(error, DgError | ConnectionError | TimeoutError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(argv)
    socket_path = args.socket or agent_paths().socket
    DgApp(socket_path, read_only=args.read_only, keymap_file=keys.default_keymap_file()).run()


if __name__ == "__main__":
    main()
