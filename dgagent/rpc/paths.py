"""Where the agent keeps its files, from platformdirs (so the XDG_* variables are honoured).

config: ``config.toml``; state: the SQLite index and the log of a detached agent; runtime: the
socket and the single-instance lock (0700 folder). The reference cache lives in the cache dir
(``DG_CACHE_DIR`` overrides it; see dgagent.settings).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from dgagent.errors import ConfigError

APP = "dg-agent"
MAX_SOCKET_PATH = 104  # macOS limit; Linux allows 108


@dataclass(frozen=True)
class AgentPaths:
    config_file: Path
    state_dir: Path
    runtime_dir: Path

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "agent.sock"

    @property
    def lock(self) -> Path:
        return self.runtime_dir / "agent.lock"

    @property
    def index(self) -> Path:
        return self.state_dir / "index.db"

    @property
    def log(self) -> Path:
        return self.state_dir / "agent.log"

    def check_socket_length(self) -> None:
        if len(os.fsencode(self.socket)) >= MAX_SOCKET_PATH:
            raise ConfigError(
                f"the socket path {self.socket} is too long for a Unix socket "
                f"({MAX_SOCKET_PATH} bytes at most); set XDG_RUNTIME_DIR to a shorter folder"
            )


def agent_paths() -> AgentPaths:
    # With XDG_RUNTIME_DIR set, use it as is: platformdirs would silently fall back to another
    # folder when its mode is not 0700, and the CLI and the agent could then disagree. Our own
    # subfolder is created 0700 and its ownership checked by the agent.
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    runtime = os.environ.get("DG_RUNTIME_DIR") or (str(Path(xdg) / APP) if xdg else None)
    if runtime is None:
        # Without XDG_RUNTIME_DIR (ssh sessions, containers) platformdirs falls back to a folder
        # under /tmp and warns on every call; the fallback is fine (our subfolder is 0700 and
        # checked), so the warning would only be noise on every command.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runtime = platformdirs.user_runtime_dir(APP)
    return AgentPaths(
        config_file=Path(
            os.environ.get("DG_CONFIG") or platformdirs.user_config_path(APP) / "config.toml"
        ),
        state_dir=Path(os.environ.get("DG_STATE_DIR") or platformdirs.user_state_path(APP)),
        runtime_dir=Path(runtime),
    )
