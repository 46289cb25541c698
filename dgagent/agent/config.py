"""The agent's config file (TOML): which folders to watch, where to, and how the agent behaves.

    [agent]
    reconcile_interval = 300      # seconds between full scans (events are only hints)
    settle_seconds = 2.0          # a file is stored once its size and mtime held this long
    workers = 3                   # parallel uploads
    max_delete_fraction = 0.5     # never mirror a scan that would delete more than this share

    [s3]
    endpoint_url = "http://127.0.0.1:9000"   # optional, as are profile, region,
    checksum_when_required = true            # and this

    [[watch]]
    dir = "/home/me/build/out"
    url = "s3://releases/app/"
    delete = false                # mirror local deletions (guarded)
    exclude = ["*.log"]
    max_ratio = 0.5               # optional, else DG_MAX_RATIO or 0.5
    codec = "archive"             # optional: compat (default, DeltaGlider-readable) or archive
    reference_policy = "single"   # optional: rotate (default) or single (see the README)
    keep_last = 10                # optional retention, applied at each reconcile: keep each
    older_than = "180d"           #   line's newest 10 and those of the last 180 days (either)
    prune_present = false         # whether retention may delete versions still in the folder

Unknown keys and wrong types are errors (exit code 78 for the service), never silently ignored.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dgagent.engine.prune import Retention, parse_duration
from dgagent.errors import ConfigError
from dgagent.settings import check_codec, check_policy
from dgagent.storage import S3Options, is_store_url


@dataclass(frozen=True)
class Watch:
    dir: Path
    url: str
    delete: bool = False
    exclude: tuple[str, ...] = ()
    max_ratio: float | None = None
    codec: str | None = None
    """``compat`` or ``archive``; None: DG_CODEC, else compat."""
    reference_policy: str | None = None
    """``rotate`` or ``single``; None: DG_REFERENCE_POLICY, else rotate."""
    keep_last: int | None = None
    """Retention (engine/prune.py): each release line's newest N versions stay stored."""
    older_than: str | None = None
    """Retention: versions older than this duration (``90d``) go, unless ``keep_last`` keeps
    them. Neither set: the agent never prunes this watch (the default)."""
    prune_present: bool = False
    """Whether retention may delete stored versions whose file is still in the folder."""

    @property
    def name(self) -> str:
        return str(self.dir)

    @property
    def retention(self) -> Retention | None:
        """The watch's retention; None when it has none."""
        if self.keep_last is None and self.older_than is None:
            return None
        seconds = parse_duration(self.older_than) if self.older_than is not None else None
        return Retention(keep_last=self.keep_last, older_than=seconds)


@dataclass(frozen=True)
class S3Section:
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    checksum_when_required: bool = False
    multipart_threshold: int = S3Options.multipart_threshold
    part_size: int = S3Options.part_size

    def options(self) -> S3Options:
        return S3Options(
            endpoint_url=self.endpoint_url,
            profile=self.profile,
            region=self.region,
            checksum_when_required=self.checksum_when_required,
            multipart_threshold=self.multipart_threshold,
            part_size=self.part_size,
        )


@dataclass(frozen=True)
class AgentSection:
    reconcile_interval: float = 300.0
    settle_seconds: float = 2.0
    workers: int = 3
    max_delete_fraction: float = 0.5
    drain_timeout: float = 30.0


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSection = field(default_factory=AgentSection)
    s3: S3Section = field(default_factory=S3Section)
    watches: tuple[Watch, ...] = ()

    def find(self, folder: Path) -> Watch | None:
        target = folder.expanduser().resolve()
        return next((w for w in self.watches if w.dir == target), None)


_TYPES: dict[str, tuple[type, ...]] = {
    "reconcile_interval": (int, float),
    "settle_seconds": (int, float),
    "workers": (int,),
    "max_delete_fraction": (int, float),
    "drain_timeout": (int, float),
    "endpoint_url": (str,),
    "profile": (str,),
    "region": (str,),
    "checksum_when_required": (bool,),
    "multipart_threshold": (int,),
    "part_size": (int,),
    "dir": (str,),
    "url": (str,),
    "codec": (str,),
    "reference_policy": (str,),
    "delete": (bool,),
    "exclude": (list,),
    "max_ratio": (int, float),
    "keep_last": (int,),
    "older_than": (str,),
    "prune_present": (bool,),
}


def _section(path: Path, where: str, raw: Any, cls: type[Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(
                f"{path}: unknown key {key!r} in [{where}]; known keys: {', '.join(sorted(known))}"
            )
        expected = _TYPES[key]
        if not isinstance(value, expected) or (bool in expected) != isinstance(value, bool):
            names = " or ".join(t.__name__ for t in expected)
            raise ConfigError(f"{path}: {where}.{key} must be {names}, got {value!r}")
        values[key] = value
    return values


def _watch(path: Path, raw: Any, number: int) -> Watch:
    values = _section(path, f"watch #{number}", raw, Watch)
    for required in ("dir", "url"):
        if required not in values:
            raise ConfigError(f"{path}: watch #{number} needs a {required!r}")
    if not is_store_url(values["url"]):
        raise ConfigError(
            f"{path}: watch #{number} url {values['url']!r} is not s3://… or file://…"
        )
    exclude = values.get("exclude", [])
    if not all(isinstance(p, str) for p in exclude):
        raise ConfigError(f"{path}: watch #{number} exclude must be a list of strings")
    ratio = values.get("max_ratio")
    if ratio is not None and not 0 <= ratio <= 1:
        raise ConfigError(f"{path}: watch #{number} max_ratio must be between 0 and 1")
    try:
        retention = replace(
            Watch(Path(), ""),
            keep_last=values.get("keep_last"),
            older_than=values.get("older_than"),
        ).retention
    except ConfigError as exc:
        raise ConfigError(f"{path}: watch #{number}: {exc}") from exc
    return Watch(
        dir=Path(values["dir"]).expanduser().resolve(),
        url=values["url"],
        delete=values.get("delete", False),
        exclude=tuple(exclude),
        max_ratio=float(ratio) if ratio is not None else None,
        codec=check_codec(values["codec"], f"{path}: watch #{number} codec")
        if "codec" in values
        else None,
        reference_policy=check_policy(
            values["reference_policy"], f"{path}: watch #{number} reference_policy"
        )
        if "reference_policy" in values
        else None,
        keep_last=retention.keep_last if retention else None,
        older_than=values.get("older_than"),
        prune_present=values.get("prune_present", False),
    )


def load(path: Path) -> AgentConfig:
    """The config at ``path``; defaults when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AgentConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config {path}: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from exc
    unknown = set(doc) - {"agent", "s3", "watch"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    agent = AgentSection(**_section(path, "agent", doc.get("agent", {}), AgentSection))
    if agent.workers < 1 or agent.settle_seconds < 0 or agent.reconcile_interval <= 0:
        raise ConfigError(f"{path}: [agent] workers must be ≥ 1 and intervals positive")
    if not 0 <= agent.max_delete_fraction <= 1:
        raise ConfigError(f"{path}: [agent] max_delete_fraction must be between 0 and 1")
    s3 = S3Section(**_section(path, "s3", doc.get("s3", {}), S3Section))
    if s3.part_size < 5 * 1024 * 1024 or s3.multipart_threshold < s3.part_size:
        raise ConfigError(
            f"{path}: [s3] part_size must be at least 5 MiB (5242880) and multipart_threshold "
            "at least part_size"
        )
    raw_watches = doc.get("watch", [])
    if not isinstance(raw_watches, list):
        raise ConfigError(f"{path}: watches are written [[watch]] (an array of tables)")
    watches = tuple(_watch(path, raw, n) for n, raw in enumerate(raw_watches, 1))
    return AgentConfig(agent=agent, s3=s3, watches=watches)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _table(values: Mapping[str, Any]) -> list[str]:
    return [
        f"{k} = {_toml_value(v)}"
        for k, v in values.items()
        if v is not None and v != () and not (k == "prune_present" and v is False)
    ]


def dumps(config: AgentConfig) -> str:
    lines = ["# dg-agent configuration (dg-agent watch add/remove edit this file)", "", "[agent]"]
    lines += _table({f.name: getattr(config.agent, f.name) for f in fields(AgentSection)})
    defaults = S3Section()
    s3 = _table(
        {
            f.name: getattr(config.s3, f.name)
            for f in fields(S3Section)
            if getattr(config.s3, f.name) != getattr(defaults, f.name)
        }
    )
    if s3:
        lines += ["", "[s3]", *s3]
    for watch in config.watches:
        lines += ["", "[[watch]]"]
        lines += _table({f.name: getattr(watch, f.name) for f in fields(Watch)})
    return "\n".join(lines) + "\n"


def save(path: Path, config: AgentConfig) -> None:
    """Write atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(config))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def with_watch(config: AgentConfig, watch: Watch) -> AgentConfig:
    """Add a watch, or replace the one on the same folder."""
    for other in config.watches:
        if other.dir != watch.dir and (
            other.dir in watch.dir.parents or watch.dir in other.dir.parents
        ):
            raise ConfigError(
                f"{watch.dir} overlaps the watched folder {other.dir}; watch one or the other"
            )
    rest = tuple(w for w in config.watches if w.dir != watch.dir)
    return replace(config, watches=(*rest, watch))


def without_watch(config: AgentConfig, folder: Path) -> AgentConfig:
    watch = config.find(folder)
    if watch is None:
        raise ConfigError(f"{folder} is not watched; see dg-agent watch list")
    return replace(config, watches=tuple(w for w in config.watches if w is not watch))
