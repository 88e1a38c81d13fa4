"""Experiment configuration: TOML -> validated dataclasses (one run, or a sweep of runs).

A config has a top-level ``seed`` and the sections ``[problem]``, ``[partition]``, ``[algorithm]`` and
``[run]``; an optional array ``[[sweep]]`` turns it into several runs (see :func:`expand`). The keys of
``[problem]`` are those of the chosen kind's own config class and the keys of ``[algorithm]`` those of the
chosen algorithm's ``Params`` (:mod:`distclip.problems.kinds`, :mod:`distclip.algorithms`); this module only
reads, checks and writes them (:mod:`distclip.schema`). Unknown keys, wrong types and out-of-range values
raise :class:`DistclipError` with one line that names the key and what is allowed.
"""

from __future__ import annotations

import copy
import itertools
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import algorithms, schema
from .algorithms.base import validate as validate_algorithm
from .errors import DistclipError
from .problems import kinds
from .schema import dump_toml
from .sections import PartitionConfig, RunConfig, SamplingConfig


@dataclass
class Component:
    """A component chosen by name (an algorithm, a problem kind) with its own validated configuration.

    Attribute access falls through to ``params`` and to its keys by TOML name (``cfg.algorithm.momentum``)."""

    name: str
    params: Any
    selector: str = field(default="name", compare=False, repr=False)  # the key that chose it: name or kind
    entry: Any = field(default=None, compare=False, repr=False)  # the registry entry

    def __getattr__(self, attr: str) -> Any:
        d = self.__dict__
        if attr.startswith("__") or "params" not in d:
            raise AttributeError(attr)
        if attr == d["selector"]:
            return d["name"]
        try:
            return getattr(d["params"], attr)
        except AttributeError:
            k = schema.keys(type(d["params"])).get(attr)
            if k is None:
                raise AttributeError(f"{d['name']} has no key {attr!r}") from None
            return schema.get(d["params"], k)


@dataclass(frozen=True)
class Slot:
    """A section whose keys belong to the component it names: how to find the component and its class."""

    selector: str
    default: str
    find: Callable[[str], Any]  # name -> registry entry
    cls: Callable[[Any], type]  # entry -> its config class
    unknown: Callable[[str], Callable[[str], None]]  # name -> check for a key its class lacks


SLOTS = {
    "problem": Slot("kind", kinds.DEFAULT, kinds.get, lambda e: e.config, kinds.not_applicable),
    "algorithm": Slot("name", algorithms.DEFAULT, algorithms.get, lambda e: e.Params, algorithms.not_applicable),
}
PLAIN = {"partition": PartitionConfig, "sampling": SamplingConfig, "run": RunConfig}
SECTIONS = ("problem", "partition", "algorithm", "sampling", "run")
OPTIONAL = ("sampling",)  # written to config.toml only when given: configs without it read as before


@dataclass
class Config:
    seed: int = 0
    problem: Component | None = None  # None in a sweep config: each of its runs has its own
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    algorithm: Component | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    given: frozenset[str] = field(default_factory=frozenset, repr=False)  # "section.key" set explicitly
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the document it was built from
    origin: Path | None = field(default=None, repr=False, compare=False)  # the config file's folder

    def get(self, dotted: str) -> Any:
        """A resolved value by its TOML name: ``seed``, ``algorithm.name``, ``problem.lambda``, ``run.steps``.

        AttributeError for a key this run's algorithm or problem kind does not have."""
        section, _, name = dotted.partition(".")
        obj = getattr(self, section, None) if section in SECTIONS else None
        if not name or obj is None:
            if dotted == "seed":
                return self.seed
            raise DistclipError(f"unknown config key {dotted!r}; write seed or section.key, e.g. algorithm.tau")
        if isinstance(obj, Component) and name == obj.selector:
            return obj.name
        params = obj.params if isinstance(obj, Component) else obj
        k = schema.keys(type(params)).get(name)
        if k is None:
            raise AttributeError(f"{section} has no key {name!r}")
        return schema.get(params, k)


def _component(section: str, table: dict[str, Any]) -> Component:
    slot = SLOTS[section]
    table = dict(table)
    name = table.pop(slot.selector, slot.default)
    if not isinstance(name, str):
        raise DistclipError(f"{section}.{slot.selector} = {name!r} has the wrong type; expected a string")
    entry = slot.find(name)
    params = schema.build(slot.cls(entry), table, section, unknown=slot.unknown(name))
    return Component(name, params, slot.selector, entry)


def from_dict(raw: dict[str, Any], origin: Path | None = None) -> Config:
    """Build and validate a :class:`Config` from a parsed TOML document (``origin``: the folder relative paths in
    it are read from; default the current directory)."""
    original = copy.deepcopy(raw)
    raw = dict(raw)
    cfg = Config(raw=original, origin=origin)
    given: set[str] = set()
    if "seed" in raw:
        seed = raw.pop("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise DistclipError(f"seed = {seed!r} must be an integer >= 0")
        cfg.seed = seed
        given.add("seed")
    sweep = raw.pop("sweep", [])
    if not isinstance(sweep, list) or not all(isinstance(s, dict) for s in sweep):
        raise DistclipError("sweep must be an array of tables: write [[sweep]] entries with set = {...} / grid = {...}")
    for name, value in raw.items():
        if name not in SECTIONS:
            raise DistclipError(f"unknown section or key {name!r}; allowed: seed, {', '.join(SECTIONS)}, sweep")
        if not isinstance(value, dict):
            raise DistclipError(f"{name} must be a table: write [{name}] and its keys below it")
        given |= {f"{name}.{k}" for k in value}
    for name, cls in PLAIN.items():
        setattr(cfg, name, schema.build(cls, raw.get(name, {}), name))
    cfg.sweep, cfg.given = sweep, frozenset(given)
    for entry in sweep:
        _check_sweep_entry(entry)
    if sweep:  # each run is built and validated on its own (see expand)
        return cfg
    for name in SLOTS:
        setattr(cfg, name, _component(name, raw.get(name, {})))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Range and consistency checks that do not need the data (those live in the builders)."""
    p = cfg.problem
    p.params = p.params.validate(cfg) if hasattr(p.params, "validate") else p.params
    cfg.partition.validate(cfg)
    a = cfg.algorithm
    a.params = validate_algorithm(a.entry, a.params, cfg)
    cfg.sampling.validate(cfg)
    cfg.run.validate(cfg)


def load(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a TOML file, apply ``section.key=value`` overrides, validate."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DistclipError(f"config file {p} not found; give the path of a TOML config") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DistclipError(f"cannot read config file {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise DistclipError(f"config file {p} is not valid TOML: {e}") from None
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise DistclipError(f"--set {item!r} must look like section.key=value (section.key= unsets the key)")
        if text.strip():
            set_key(raw, key.strip(), parse_value(text.strip()))
        else:  # --set section.key= : back to the default (unset)
            section, _, name = key.strip().rpartition(".")
            (raw.get(section, {}) if section else raw).pop(name, None)
    return from_dict(raw, p.resolve().parent)


def parse_value(text: str) -> Any:
    """A TOML value (``0.1``, ``inf``, ``[1, 2]``, ``true``, ``"x"``), or the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_key(raw: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.rpartition(".")
    if not section:
        raw[key] = value
        return
    raw.setdefault(section, {})[key] = value


def expand(cfg: Config) -> list[tuple[str, Config]]:
    """The runs of a sweep: for each ``[[sweep]]`` entry, its ``set`` overrides times its ``grid``.

    ``grid`` maps keys to lists and yields their cartesian product. Each run is validated on its own
    and labelled by the keys it sets (or ``label``, formatted with those keys' values).
    """
    runs = []
    for entry in cfg.sweep:
        grid = entry.get("grid", {})
        for combo in itertools.product(*grid.values()):
            values = dict(entry.get("set", {}))
            values.update(zip(grid, combo, strict=True))
            doc = copy.deepcopy({k: v for k, v in cfg.raw.items() if k != "sweep"})
            for key, value in values.items():
                set_key(doc, key, value)
            label = entry.get("label") or "-".join(f"{_short(v)}" for v in values.values())
            try:
                label = label.format(**{k.rpartition(".")[2]: v for k, v in values.items()})
            except (KeyError, IndexError, ValueError) as e:
                raise DistclipError(f"sweep label {label!r} cannot be formatted ({type(e).__name__}: {e}); write "
                                    "{key} fields only for keys the entry sets, and {{ }} for braces") from None
            try:
                runs.append((_slug(label), from_dict(doc, cfg.origin)))
            except DistclipError as e:
                raise DistclipError(f"sweep run {label!r}: {e}") from None
    labels = [r[0] for r in runs]
    if len(set(labels)) != len(labels):
        raise DistclipError("sweep runs need distinct labels; give each [[sweep]] entry a label with {key} fields")
    return runs


def _short(v: Any) -> str:
    return str(v).replace(" ", "")


def _slug(text: str) -> str:
    """A label as one safe path component (no separators, no '.' or '..')."""
    slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")
    return "run" if slug.strip(".") == "" else slug


def _check_sweep_entry(entry: dict[str, Any]) -> None:
    unknown = set(entry) - {"set", "grid", "label"}
    if unknown:
        raise DistclipError(f"unknown key sweep.{sorted(unknown)[0]}; a [[sweep]] entry has set, grid, label")
    if not isinstance(entry.get("set", {}), dict):
        raise DistclipError('sweep.set must be a table such as { "algorithm.lr" = 0.1 }')
    grid = entry.get("grid", {})
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise DistclipError('sweep.grid must map keys to non-empty lists, e.g. { "algorithm.tau" = [1.0, 0.1] }')
    if not isinstance(entry.get("label", ""), str):
        raise DistclipError("sweep.label must be a string such as \"tau={tau}\"")


# -- writing the resolved config -------------------------------------------------------------------------------
def _active(params: Any, k: schema.Key) -> bool:
    """Whether key ``k`` means anything: keys of a group that says it is inactive (a constant schedule) do not."""
    obj = params
    for name in k.path[:-1]:
        obj = getattr(obj, name)
        if hasattr(obj, "active") and not obj.active():
            return False
    return True


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML: defaults filled in, keys that are unset or mean nothing omitted.

    A sweep config is written as given (its runs are resolved one by one)."""
    if cfg.sweep:
        return dump_toml(cfg.raw)
    doc: dict[str, Any] = {"seed": cfg.seed}
    for name in SECTIONS:
        section = getattr(cfg, name)
        if isinstance(section, Component):
            table = schema.to_table(section.params, lambda k, p=section.params: _active(p, k))
            doc[name] = {section.selector: section.name, **table}
        elif name not in OPTIONAL or section.active:
            doc[name] = schema.to_table(section)
    return dump_toml(doc)
