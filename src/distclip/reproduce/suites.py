"""A suite is one file, ``distclip/suites/NAME.toml``: a ``[suite]`` table, the config and its ``[[sweep]]``, and
its ``[[claim]]`` tables.

``[suite]`` keys: ``title``; ``quick``, the overrides of the ``--quick`` version (a table of config keys, or a
list of ``"key=value"`` strings as for ``--set``); ``needs`` (what the full version needs, stated in the
report); ``needs_path`` (what ``problem.path`` must point to, for data that is not bundled); ``training``
(network suite: plot training curves instead of ‖∇f‖² and f − f_min); ``loss_panels`` (also plot f against
rounds, one panel per grid value); ``table`` / ``figures``, names of functions in :mod:`.special` for an
extra report section / extra figures; ``names``, how config values are written in claims
(``[suite.names."algorithm.name"]`` ``clip21 = "Clip21-SGD"``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..config import Config, from_dict, load, parse_value, set_key
from ..errors import DistclipError
from . import claims as _claims

_SUITE_KEYS = {"title", "quick", "needs", "needs_path", "training", "loss_panels", "table", "figures", "names"}


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    path: Path
    document: dict[str, Any] = field(repr=False)  # the config and its [[sweep]], without [suite] and [[claim]]
    quick: tuple[tuple[str, Any], ...] = ()  # (key, value) overrides of the quick version
    claims: tuple[dict[str, Any], ...] = ()  # the [[claim]] tables (see distclip.reproduce.claims)
    training: bool = False
    loss_panels: bool = False
    needs: str = ""
    needs_path: str = ""
    table: str | None = None
    figures: str | None = None
    names: dict[str, dict[str, str]] = field(default_factory=dict)

    def raw(self, quick: bool = False, overrides: list[str] = ()) -> dict[str, Any]:
        """The config document: quick overrides first (with ``quick``), then ``overrides`` (``--set`` strings),
        applied as :func:`distclip.config.load` applies them."""
        import copy

        raw = copy.deepcopy(self.document)
        for key, value in self.quick if quick else ():
            set_key(raw, key, value)
        for key, value in parse_overrides(overrides):
            set_key(raw, key, value)
        return raw

    def config(self, quick: bool = False, overrides: list[str] = ()) -> Config:
        return from_dict(self.raw(quick, overrides))


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``section.key=value`` strings as ``--set`` takes them: (key, parsed TOML value)."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise DistclipError(f"--set {item!r} must look like section.key=value")
        out.append((key.strip(), parse_value(text.strip())))
    return out


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """:func:`distclip.config.load` that also reads a suite file (its full version: [suite] and [[claim]] are
    not config). Any other file goes to :func:`distclip.config.load` itself."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raw = {}  # config.load says what is wrong with the file
    if "suite" not in raw:
        return load(p, overrides)
    raw.pop("suite")
    raw.pop("claim", None)
    for key, value in parse_overrides(overrides):
        set_key(raw, key, value)
    return from_dict(raw)


def load_suite(path: Path) -> Suite:
    """Read and check one suite file (its claims are checked for form here; against runs in reproduce)."""
    name = path.stem
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise DistclipError(f"suite {name} ({path}) is not valid TOML: {e}") from None
    head = raw.pop("suite", None)
    claim_tables = raw.pop("claim", [])
    if not isinstance(head, dict) or not isinstance(head.get("title"), str):
        raise DistclipError(f"suite {name}: needs a [suite] table with title = \"...\"")
    if unknown := set(head) - _SUITE_KEYS:
        raise DistclipError(f"suite {name}: unknown [suite] keys {sorted(unknown)}; allowed: {sorted(_SUITE_KEYS)}")
    quick = head.get("quick", {})
    pairs = list(quick.items()) if isinstance(quick, dict) else parse_overrides(quick)
    from .special import FIGURES, TABLES

    for key, registry in (("table", TABLES), ("figures", FIGURES)):
        if key in head and head[key] not in registry:
            raise DistclipError(f"suite {name}: {key} = {head[key]!r} is not one of {', '.join(registry)}")
    if not isinstance(claim_tables, list):
        raise DistclipError(f"suite {name}: claims are [[claim]] tables")
    for i, spec in enumerate(claim_tables, 1):
        _claims.validate(spec, f"suite {name}, claim {i}")
    return Suite(name, head["title"], path, raw, tuple(pairs), tuple(claim_tables),
                 training=bool(head.get("training", False)), loss_panels=bool(head.get("loss_panels", False)),
                 needs=head.get("needs", ""), needs_path=head.get("needs_path", ""), table=head.get("table"),
                 figures=head.get("figures"), names=head.get("names", {}))


def suite_dir() -> Path:
    return Path(str(files("distclip") / "suites"))


def load_suites() -> dict[str, Suite]:
    return {p.stem: load_suite(p) for p in sorted(suite_dir().glob("*.toml"))}
