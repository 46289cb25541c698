"""The base of every protocol record: a frozen dataclass that is one JSON object on the wire,
with one encoder (``to_json``) and one decoder (``from_json``) that checks each field's type.

Decoding checks the JSON against the record's fields and their types. ``strict`` (the tests')
also refuses fields the record does not know; a client reading a newer agent leaves it off, so
an added field does not cut it off, while a missing or mistyped one still fails.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Self, Union

from dgagent.rpc.protocol import ProtocolError

__all__ = ["Record", "check", "ratio"]


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def check(value: Any, hint: Any, where: str, *, strict: bool) -> Any:  # noqa: PLR0911, PLR0912 (one branch a JSON type)
    """``value`` decoded as ``hint`` (records become records); ProtocolError when it is not."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return check(value, option, where, strict=strict)
            except ProtocolError:
                continue
        raise ProtocolError(f"{where} is {value!r}, not {hint}")
    if hint is type(None):
        if value is None:
            return None
    elif isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, strict=strict, where=where)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint in (str, bool):
        if isinstance(value, hint):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(hint)
            return [check(v, item, f"{where}[{n}]", strict=strict) for n, v in enumerate(value)]
    elif origin is dict and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        item = typing.get_args(hint)[1]
        return {k: check(v, item, f"{where}.{k}", strict=strict) for k, v in value.items()}
    raise ProtocolError(f"{where} is {value!r}, not {hint}")


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Record:
    """A frozen dataclass that is one JSON object on the wire, its fields the object's members."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Any, *, strict: bool = False, where: str = "") -> Self:
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise ProtocolError(f"{where} must be a JSON object, not {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if strict and unknown:
            raise ProtocolError(f"{where} has fields {cls.__name__} does not know: {unknown}")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if name in data:
                values[name] = check(data[name], hints[name], f"{where}.{name}", strict=strict)
            elif strict or (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ):
                raise ProtocolError(f"{where} lacks the field {name!r}")
        return cls(**values)


def ratio(stored: int | None, original: int | None) -> float | None:
    """stored / original, the number every record's ``ratio`` holds.

    >>> ratio(25, 100), ratio(None, 100), ratio(3, 0)
    (0.25, None, None)
    """
    return stored / original if original and stored is not None else None
