"""The footer of every screen: key hints that always fit on its one line."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel  # not exported; the footer's parts


class DgFooter(Footer):
    """The key hints, always within one line of the terminal.

    Textual's footer scrolls what does not fit under the command-palette hint, which then ends
    in the cut-off word of a key behind it ("palettei" at 80 columns). This one drops hints
    until the rest fits: first the mode names (the keys 1 2 3 stay), then the palette hint,
    then the screen's own actions from the last; help and quit always stay.
    """

    DEFAULT_CSS = """
    DgFooter FooterLabel.-modes { margin: 0 1 0 0; }
    DgFooter FooterKey.-mode { margin: 0 1 0 0; }
    """
    KEEP: ClassVar[frozenset[str]] = frozenset({"app.help", "app.quit"})
    _width = 0  # the terminal width the hints were chosen for

    def on_mount(self) -> None:
        self.compact = self.app.size.width < 100
        self._width = self.app.size.width

    def on_resize(self) -> None:
        self.compact = self.app.size.width < 100
        if self.app.size.width != self._width:
            self._width = self.app.size.width
            self.call_after_refresh(self.recompose)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        shown: dict[str, tuple[Binding, bool, str]] = {}  # action → its first shown binding
        for _, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show:
                shown.setdefault(binding.action, (binding, enabled, tooltip))
        hints = list(shown.values())
        modes = [h for h in hints if self._is_mode(h)]
        palette = self._palette_hint()
        width = self.app.size.width
        collapse = False
        if self._width_of(hints, collapse, palette) > width and len(modes) > 1:
            collapse = True
        if self._width_of(hints, collapse, palette) > width:
            palette = None
        droppable = [h for h in hints if h not in modes and h[0].id not in self.KEEP]
        while self._width_of(hints, collapse, palette) > width and droppable:
            hints.remove(droppable.pop())
        yield from self._keys(hints, collapse)
        if palette is not None:
            yield palette

    def _keys(self, hints: list[tuple[Binding, bool, str]], collapse: bool) -> ComposeResult:
        last_mode = max((i for i, h in enumerate(hints) if self._is_mode(h)), default=-1)
        for index, (binding, enabled, tooltip) in enumerate(hints):
            mode = collapse and self._is_mode((binding, enabled, tooltip))
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                "" if mode else binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip or (binding.description if mode else ""),
                classes="-mode" if mode else "",
            ).data_bind(compact=Footer.compact)
            if mode and index == last_mode:
                yield FooterLabel("views", classes="-modes")

    def _palette_hint(self) -> FooterKey | None:
        if not (self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE):
            return None
        found = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
        if found is None:
            return None
        _, binding, enabled, tooltip = found
        return FooterKey(
            binding.key,
            self.app.get_key_display(binding),
            binding.description,
            binding.action,
            classes="-command-palette",
            disabled=not enabled,
            tooltip=tooltip or binding.tooltip or binding.description,
        )

    @staticmethod
    def _is_mode(hint: tuple[Binding, bool, str]) -> bool:
        return (hint[0].id or "").startswith("mode.")

    def _width_of(
        self, hints: list[tuple[Binding, bool, str]], collapse: bool, palette: FooterKey | None
    ) -> int:
        """Cells the hints take, by the footer's own CSS: compact, a key and its description
        are one space apart with one cell after; otherwise each is padded by a cell a side."""
        extra = 2 if self.compact else 3
        total = 0
        for hint in hints:
            key = cell_len(self.app.get_key_display(hint[0]))
            if collapse and self._is_mode(hint):
                total += key + 1
            else:
                total += key + cell_len(hint[0].description) + extra
        if collapse and any(self._is_mode(h) for h in hints):
            total += cell_len("views") + 1
        if palette is not None:  # a bar on its left, and a cell on its right unless compact
            total += 1 + cell_len(palette.key_display) + 1 + cell_len(palette.description)
            total += 0 if self.compact else 3
        return total
