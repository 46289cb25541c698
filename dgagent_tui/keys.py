"""User key remapping: ``[keymap]`` in ``tui.toml`` beside the agent's config, by binding id.

    [keymap]
    "item.delete" = "delete,x"
    "mode.browse" = "2,b"

Every binding in dg-tui has an id (the help screen lists them), so a user whose terminal or
multiplexer eats a key can move the action elsewhere.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from dgagent.errors import ConfigError
from dgagent.rpc.paths import agent_paths


def default_keymap_file() -> Path:
    return agent_paths().config_file.parent / "tui.toml"


def load_keymap(path: Path) -> dict[str, str]:
    """The ``[keymap]`` table of ``path`` (empty when the file does not exist)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"cannot read the key map {path} ({exc}); fix that file, or remove it to use the "
            "default keys"
        ) from exc
    keymap = data.get("keymap", {})
    if not isinstance(keymap, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in keymap.items()
    ):
        raise ConfigError(
            f'{path}: [keymap] must map binding ids to keys, e.g. "item.delete" = "x"'
        )
    return dict(keymap)
