"""What can be done to one stored file, shared by the queue, browse and detail screens.

A screen says which file is selected (``target()``); this base class asks the agent to download,
restore, verify or delete it, each in its own worker (failures become the error modal). In
read-only mode, or while the agent is away, the actions show dimmed and do nothing.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.binding import Binding
from textual.screen import Screen

from dgagent.rpc import Method
from dgagent.rpc.records import Deleted, Verified, Written
from dgagent_tui import folders
from dgagent_tui.screens.modals import ConfirmModal, DownloadModal, TypedConfirmModal

if TYPE_CHECKING:
    from dgagent_tui.app import DgApp

DESTRUCTIVE = frozenset({"restore", "delete", "retry", "cancel", "pause", "prune"})
NEEDS_AGENT = frozenset(
    {"download", "restore", "verify", "delete", "retry", "cancel", "pause", "prune"}
)


@dataclass(frozen=True)
class Target:
    """A stored file: its URL and whether deleting it also deletes its DeltaSpace's reference."""

    url: str
    last_in_space: bool = False

    @property
    def name(self) -> str:
        return posixpath.basename(self.url)


class ItemScreen(Screen[None]):
    BINDINGS = [  # noqa: RUF012 (textual reads this class attribute)
        Binding("d", "download", "Download", id="item.download"),
        Binding("R", "restore", "Restore", show=False, id="item.restore"),
        Binding("v", "verify", "Verify", id="item.verify"),
        Binding("delete", "delete", "Delete", id="item.delete"),
    ]

    @property
    def dg(self) -> DgApp:
        return self.app  # type: ignore[return-value]

    def target(self) -> Target | None:
        """The selected stored file, if any (screens override)."""
        return None

    def changed(self) -> None:
        """Called after a verify or restore so the screen can re-read what it shows."""

    def deleted(self) -> None:
        """Called after a delete (the detail screen closes; lists re-read)."""
        self.changed()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DESTRUCTIVE and self.dg.read_only:
            return None
        if action in NEEDS_AGENT and not self.dg.link_up:
            return None
        return True

    def _target_or_tell(self) -> Target | None:
        target = self.target()
        if target is None:
            self.notify(
                "select a stored file first: download, verify, delete and copy act on files "
                "the agent has stored",
                severity="warning",
            )
        return target

    def action_download(self) -> None:
        target = self._target_or_tell()
        if target is None:
            return
        default = str(folders.save_folder() / target.name)

        def chosen(typed: str | None) -> None:
            if not typed:
                return
            dest = folders.download_target(typed)
            problem = folders.why_not_writable(dest)
            if problem:
                self.notify(problem, severity="error", timeout=10)
                return
            self.dg.run_op(self._download(target, str(dest)), f"download {target.name}")

        self.app.push_screen(DownloadModal(target.url, default), chosen)

    async def _download(self, target: Target, dest: str) -> None:
        got = Written.from_json(
            await self.dg.call(Method.DOWNLOAD, {"url": target.url, "dest": dest})
        )
        self.dg.verified[target.url] = got.sha256
        self.notify(f"saved to {got.dest} (SHA-256 {got.sha256[:12]}…)", timeout=8)

    def action_restore(self) -> None:
        target = self._target_or_tell()
        if target is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.dg.run_op(self._restore(target), f"restore {target.name}")

        body = f"{target.url}\nwill be written back into the watched folder it came from."
        self.app.push_screen(ConfirmModal("Restore?", body, yes="Restore"), confirmed)

    async def _restore(self, target: Target) -> None:
        got = Written.from_json(await self.dg.call(Method.RESTORE, {"url": target.url}))
        self.notify(f"restored {got.dest}")
        self.changed()

    def action_verify(self) -> None:
        target = self._target_or_tell()
        if target is not None:
            self.dg.run_op(self._verify(target), f"verify {target.name}")

    async def _verify(self, target: Target) -> None:
        self.notify(f"verifying {target.name}…")
        got = Verified.from_json(await self.dg.call(Method.VERIFY, {"url": target.url}))
        self.dg.verified[target.url] = got.sha256
        self.notify(f"✓ {target.name}: SHA-256 {got.sha256[:16]}… matches")
        self.changed()

    def action_delete(self) -> None:
        target = self._target_or_tell()
        if target is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.dg.run_op(self._delete(target), f"delete {target.name}")

        if target.last_in_space or target.name == "reference.bin":
            body = (
                f"{target.url}\nis the last file of its DeltaSpace: its reference is deleted "
                "with it, and the next upload there starts a new one."
                if target.name != "reference.bin"
                else f"{target.url}\nis a DeltaSpace's reference: every delta needs it."
            )
            modal: Any = TypedConfirmModal("Delete for good?", body, target.name)
        else:
            modal = ConfirmModal("Delete?", f"{target.url}\nis deleted from the store.")
        self.app.push_screen(modal, confirmed)

    async def _delete(self, target: Target) -> None:
        got = Deleted.from_json(await self.dg.call(Method.DELETE, {"url": target.url}))
        warning = got.warning
        self.notify(f"deleted {target.name}" + (f" ({warning})" if warning else ""))
        self.deleted()
