"""Typed configuration sections: a dataclass describes its TOML keys, and this module reads, checks,
writes and documents them.

A section is a dataclass whose fields are its keys. A field made with :func:`key` carries its help
text, and optionally the TOML name when it differs from the Python name (``lambda`` is ``lam``). A
field made with :func:`group` holds another such dataclass whose keys are written *flat* in the same
TOML table (the SGD direction's ``momentum`` sits beside CELGC's ``lr``): components share small
dataclasses instead of one object that knows every key. Nothing here knows any algorithm or problem.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import DistclipError

_MISSING = dataclasses.MISSING


def key(default: Any = _MISSING, help: str = "", *, toml: str | None = None, factory: Any = _MISSING,
        **meta: Any) -> Any:
    """A configuration key with its help text; ``toml`` names it in TOML when that differs from Python.
    Extra metadata (``per_client=True``, ``scales=True``) is read by the components that resolve values."""
    metadata = {"help": help, **meta, **({"key": toml} if toml else {})}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def group(cls: type, help: str = "") -> Any:
    """A field holding dataclass ``cls`` whose keys sit flat in the enclosing section."""
    return dataclasses.field(default_factory=cls, metadata={"group": True, "help": help})


@dataclass(frozen=True)
class Key:
    """One TOML key of a section: where it lives (``path`` of field names) and what it accepts."""

    name: str
    path: tuple[str, ...]
    type: Any
    default: Any
    help: str
    field: dataclasses.Field

    @property
    def meta(self) -> Any:
        return self.field.metadata


@functools.cache
def keys(cls: type) -> dict[str, Key]:
    """The TOML keys of section class ``cls``, groups flattened, in field order (computed once per class: the
    engine asks for them every step; do not change the dict)."""
    out: dict[str, Key] = {}
    for k in _walk(cls, ()):
        if k.name in out:
            raise TypeError(f"{cls.__name__}: key {k.name!r} defined twice (in a group and beside it)")
        out[k.name] = k
    return out


def _walk(cls: type, prefix: tuple[str, ...]) -> Iterator[Key]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.metadata.get("group"):
            yield from _walk(hints[f.name], (*prefix, f.name))
            continue
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else _MISSING)
        yield Key(f.metadata.get("key", f.name), (*prefix, f.name), hints[f.name], default,
                  f.metadata.get("help", ""), f)


def matches(value: Any, tp: Any) -> bool:
    """Whether a TOML value has type ``tp`` (ints are numbers; bools are not)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(matches(v, inner) for v in value)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    return isinstance(tp, type) and isinstance(value, tp)


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def type_name(tp: Any) -> str:
    """``tp`` in words: ``a number or a list of numbers``; None (unset) is not listed, it cannot be written."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(t) for t in typing.get_args(tp) if t is not type(None)]
        return " or ".join(parts)
    if origin is list:
        inner = type_name(typing.get_args(tp)[0])
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings",
                  "true or false": "booleans"}.get(inner, inner)
        return f"a list of {plural.replace('a list of ', 'lists of ')}"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any) -> Any:
    """TOML ints given for float keys become floats (so configs compare and print alike)."""
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def build(cls: type, raw: dict[str, Any], section: str, *, unknown: Any = None) -> Any:
    """An instance of ``cls`` from the TOML table ``raw``; one-line errors name ``section.key``.

    ``unknown(key)`` may raise a better error for a key ``cls`` does not have (e.g. "does not apply")."""
    table = keys(cls)
    values: dict[tuple[str, ...], Any] = {}
    for name, value in raw.items():
        k = table.get(name)
        if k is None:
            if unknown is not None:
                unknown(name)
            raise DistclipError(f"unknown key {section}.{name}; allowed keys: {', '.join(table)}")
        if not matches(value, k.type):
            raise DistclipError(f"{section}.{name} = {value!r} has the wrong type; expected {type_name(k.type)}")
        values[k.path] = _convert(value, k.type)
    return _instantiate(cls, values, ())


def _instantiate(cls: type, values: dict[tuple[str, ...], Any], prefix: tuple[str, ...]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = (*prefix, f.name)
        if f.metadata.get("group"):
            kwargs[f.name] = _instantiate(hints[f.name], values, path)
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


def get(obj: Any, k: Key) -> Any:
    for name in k.path:
        obj = getattr(obj, name)
    return obj


def to_table(obj: Any, include: Any = None) -> dict[str, Any]:
    """The TOML table of section ``obj``: every key whose value is set (not None) and ``include(key)`` allows."""
    return {name: get(obj, k) for name, k in keys(type(obj)).items()
            if get(obj, k) is not None and (include is None or include(k))}


def replace(obj: Any, **changes: Any) -> Any:
    """``obj`` with keys (TOML names, groups included) changed."""
    table = keys(type(obj))
    for name, value in changes.items():
        obj = _replace_path(obj, table[name].path, value)
    return obj


def _replace_path(obj: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(obj, **{path[0]: value})
    return dataclasses.replace(obj, **{path[0]: _replace_path(getattr(obj, path[0]), path[1:], value)})


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every key of ``cls``: ``distclip list NAME`` and docs/config.md."""
    rows = []
    for name, k in keys(cls).items():
        required = k.default is _MISSING or (k.default is None and (k.meta.get("lr") or k.meta.get("required")))
        default = "required" if required else "unset" if k.default is None else format_value(k.default)
        rows.append((name, type_name(k.type), default, k.help))
    return rows


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


# -- value checks shared by every component's validation ---------------------------------------------------------
def choice(name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise DistclipError(f"{name} = {value!r} is not allowed; choose one of: {', '.join(allowed)}")


def positive(name: str, value: float | list[float], allow_inf: bool = True) -> None:
    for v in value if isinstance(value, list) else [value]:
        if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
            raise DistclipError(f"{name} = {value!r} must be > 0" + ("" if allow_inf else " and finite"))


def in_range(name: str, value: float, lo: float, hi: float, *, closed: str = "[)", note: str = "") -> None:
    """``lo <= value < hi`` (``closed`` says which ends are included: "[)", "[]", "(]", "()")."""
    ok_lo = value >= lo if closed[0] == "[" else value > lo
    ok_hi = value <= hi if closed[1] == "]" else value < hi
    if not (ok_lo and ok_hi) or math.isnan(value):
        raise DistclipError(f"{name} = {value} must be in {closed[0]}{lo:g}, {hi:g}{closed[1]}" + note)


# -- writing TOML ----------------------------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "inf" if v == math.inf else "-inf" if v == -math.inf else "nan" if math.isnan(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_toml(doc: dict[str, Any]) -> str:
    """Write a config document (scalars, tables, arrays of tables) as TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict | list) or
             (isinstance(v, list) and not all(isinstance(x, dict) for x in v))]
    for name, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for entry in value:
                lines.append(f"\n[[{name}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"
