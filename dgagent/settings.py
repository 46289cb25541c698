"""Engine settings: defaults, the DG_* environment, and validation with one clear sentence.

Command-line flags override these; the agent's config file (later) overrides the defaults too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

from dgagent.errors import ConfigError

MIB = 1024 * 1024

UPSTREAM_EXTENSIONS = (
    ".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z",
    ".rar", ".dmg", ".iso", ".pkg", ".deb", ".rpm", ".apk", ".jar", ".war", ".ear",
)  # fmt: skip
"""What deltaglider 6.2.0 deltas; kept so behaviour is familiar."""

EXTRA_EXTENSIONS = (
    ".whl", ".nupkg", ".aar", ".egg", ".gem", ".crate", ".img", ".qcow2", ".vmdk",
    ".sql", ".dump", ".bak", ".backup",
)  # fmt: skip
"""Artifacts upstream misses (it stores every wheel whole); dumps as the proxy does."""


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("dg-agent")) / "references"


@dataclass(frozen=True)
class EngineSettings:
    max_ratio: float = 0.5
    """A delta larger than this fraction of the file is not worth it: store the file direct."""
    delta_extensions: tuple[str, ...] = UPSTREAM_EXTENSIONS + EXTRA_EXTENSIONS
    xdelta_level: int = 9
    window_budget: int = 512 * MIB
    """Upper bound of xdelta3's source window (-B): memory use grows with it."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    cache_max_bytes: int = 4 * 1024 * MIB
    codec: str = "compat"
    """``compat`` (DeltaGlider-readable deltas) or ``archive`` (deltas of expanded zip/gzip)."""
    reference_policy: str = "rotate"
    """``rotate`` (a new reference when the deltas have drifted, engine/rotation.py) or
    ``single`` (one reference per DeltaSpace, all deltaglider_proxy can read)."""

    def with_codec(self, value: str | None) -> EngineSettings:
        return self if value is None else replace(self, codec=check_codec(value, "--codec"))

    def with_reference_policy(self, value: str | None) -> EngineSettings:
        if value is None:
            return self
        return replace(self, reference_policy=check_policy(value, "--reference-policy"))

    def with_max_ratio(self, value: float | None) -> EngineSettings:
        return self if value is None else replace(self, max_ratio=check_ratio(value, "--max-ratio"))


CODECS = ("compat", "archive")
POLICIES = ("rotate", "single")


def check_policy(value: str, source: str) -> str:
    if value not in POLICIES:
        raise ConfigError(f"{source} must be one of {', '.join(POLICIES)}, got {value!r}")
    return value


def check_codec(value: str, source: str) -> str:
    if value not in CODECS:
        raise ConfigError(f"{source} must be one of {', '.join(CODECS)}, got {value!r}")
    return value


def check_ratio(value: float, source: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{source} must be a number between 0 and 1, got {value!r}")
    return value


def _float(env: Mapping[str, str], name: str) -> float | None:
    text = env.get(name)
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None


def _size(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name)
    if not text:
        return None
    units = {"k": 1024, "m": MIB, "g": 1024 * MIB}
    number, unit = text[:-1], text[-1].lower()
    if unit not in units:
        number, unit = text, ""
    try:
        value = int(number) * units.get(unit, 1)
    except ValueError:
        raise ConfigError(f"{name} must be a size like 512M or 2G, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {text!r}")
    return value


def parse_extensions(text: str, source: str) -> tuple[str, ...]:
    """A comma-separated extension list, e.g. ``.zip,.jar,whl``.

    >>> parse_extensions(".zip, JAR", "DG_DELTA_EXTENSIONS")
    ('.zip', '.jar')
    """
    items = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not items:
        raise ConfigError(f"{source} must list at least one extension, e.g. '.zip,.jar'")
    return tuple(item if item.startswith(".") else "." + item for item in items)


def from_env(env: Mapping[str, str] | None = None) -> EngineSettings:
    """Defaults overridden by DG_MAX_RATIO, DG_DELTA_EXTENSIONS, DG_XDELTA_LEVEL,
    DG_WINDOW_BUDGET, DG_CACHE_DIR, DG_CACHE_MAX_SIZE, DG_CODEC and DG_REFERENCE_POLICY."""
    env = os.environ if env is None else env
    settings = EngineSettings()
    ratio = _float(env, "DG_MAX_RATIO")
    if ratio is not None:
        settings = replace(settings, max_ratio=check_ratio(ratio, "DG_MAX_RATIO"))
    if env.get("DG_DELTA_EXTENSIONS"):
        exts = parse_extensions(env["DG_DELTA_EXTENSIONS"], "DG_DELTA_EXTENSIONS")
        settings = replace(settings, delta_extensions=exts)
    level = env.get("DG_XDELTA_LEVEL")
    if level:
        if level not in tuple("0123456789"):
            raise ConfigError(f"DG_XDELTA_LEVEL must be a digit 0-9, got {level!r}")
        settings = replace(settings, xdelta_level=int(level))
    budget = _size(env, "DG_WINDOW_BUDGET")
    if budget is not None:
        settings = replace(settings, window_budget=budget)
    if env.get("DG_CACHE_DIR"):
        settings = replace(settings, cache_dir=Path(env["DG_CACHE_DIR"]).expanduser())
    cap = _size(env, "DG_CACHE_MAX_SIZE")
    if cap is not None:
        settings = replace(settings, cache_max_bytes=cap)
    if env.get("DG_CODEC"):
        settings = replace(settings, codec=check_codec(env["DG_CODEC"], "DG_CODEC"))
    if env.get("DG_REFERENCE_POLICY"):
        policy = check_policy(env["DG_REFERENCE_POLICY"], "DG_REFERENCE_POLICY")
        settings = replace(settings, reference_policy=policy)
    return settings
