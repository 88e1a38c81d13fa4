"""How a suite's claims find their runs and read their numbers: by config values, never by label text.

A *selection* is a table of TOML keys and the values the run's resolved config must hold, e.g.
``{ "algorithm.name" = "clip21", "algorithm.tau" = 1.0 }``. TOML has no null and no "the largest", so a value
may also be a table: ``{ unset = true }`` (the key is unset, None), ``{ max = true }`` / ``{ min = true }``
(the largest / smallest value among the runs that match the rest of the selection) or ``{ in = [...] }``.
A *run view* (:class:`RunView`) exposes a run to the claim templates: ``{a.loss}`` is a final-row metric, a
summary field or a derived quantity (:data:`RUN_QUANTITIES`), ``{a[algorithm.k]}`` a config value.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Callable
from typing import Any

from ..errors import DistclipError
from ..runner import RunResult

SECTIONS = ("problem", "partition", "algorithm", "run")
_OPERATORS = {"unset", "max", "min", "in"}


class ClaimError(Exception):
    """A claim cannot be checked on these runs (no run matches a selection, a metric was not logged, ...)."""


def config_value(cfg: Any, key: str) -> Any:
    """The resolved value of TOML key ``key`` ("section.key" or "seed") in ``cfg``.

    Keys are the TOML names, which differ from the attribute names in two places (``problem.lambda`` is
    ``lam``, ``problem.H`` is ``het``); they are found through the dataclass fields' ``key`` metadata.
    """
    get = getattr(cfg, "get", None)
    if callable(get):
        if not known_key(key) and hasattr(cfg, "given"):
            raise DistclipError(f"unknown config key {key!r}; write seed or section.key, e.g. algorithm.tau")
        try:
            return get(key)
        except AttributeError:  # a key of another algorithm or problem kind: unset for this run
            return None
    if key == "seed":
        return cfg.seed
    section, _, name = key.partition(".")
    obj = getattr(cfg, section, None) if section in SECTIONS else None
    if obj is not None and dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.metadata.get("key", f.name) == name:
                return getattr(obj, f.name)
    raise DistclipError(f"unknown config key {key!r}; write seed or section.key, e.g. algorithm.tau")


def check_selection(selection: Any, where: str) -> None:
    """Raise DistclipError when ``selection`` is not a table of known config keys and valid values."""
    if not isinstance(selection, dict):
        raise DistclipError(f"{where}: a run selection is a table of config keys, got {selection!r}")
    for key in selection:
        if not known_key(key):
            raise DistclipError(f"{where}: unknown config key {key!r}; write seed or section.key, e.g. algorithm.tau")
    for key, want in selection.items():
        if isinstance(want, dict) and (len(want) != 1 or not set(want) <= _OPERATORS):
            raise DistclipError(f"{where}: {key} = {want!r}; a table value is one of {{ unset = true }}, "
                                "{ max = true }, { min = true }, { in = [...] }")


def known_key(key: str) -> bool:
    """Whether some algorithm, problem kind or section has TOML key ``key``."""
    from .. import schema
    from ..algorithms import ALGORITHMS
    from ..problems import kinds
    from ..sections import PartitionConfig, RunConfig

    if key == "seed":
        return True
    section, _, name = key.partition(".")
    if section == "algorithm":
        return name == "name" or any(name in schema.keys(a.Params) for a in ALGORITHMS.values())
    if section == "problem":
        return name == "kind" or any(name in schema.keys(kinds.get(k).config) for k in kinds.MODULES)
    plain = {"partition": PartitionConfig, "run": RunConfig}.get(section)
    return plain is not None and name in schema.keys(plain)


def _matches(value: Any, want: Any) -> bool:
    if isinstance(want, dict):
        if "unset" in want:
            return (value is None) == bool(want["unset"])
        if "in" in want:
            return value in want["in"]
        return value is not None  # max / min: decided among the runs that match the rest
    return value is not None and value == want


def select(results: list[RunResult], selection: dict[str, Any]) -> list[RunResult]:
    """The runs of ``results`` whose configs hold ``selection`` (see the module docstring)."""
    found = [r for r in results if all(_matches(config_value(r.config, k), v) for k, v in selection.items())]
    for key, want in selection.items():
        if isinstance(want, dict) and ("max" in want or "min" in want):
            values = [config_value(r.config, key) for r in found]
            if values:
                best = max(values) if "max" in want else min(values)
                found = [r for r, v in zip(found, values, strict=True) if v == best]
    return found


def describe(selection: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k} = {v!r}" for k, v in selection.items()) + "}"


def distinct(values: list[Any]) -> list[Any]:
    """``values`` without None and repeats, in order of first appearance."""
    out: list[Any] = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


# --- the numbers of a run -----------------------------------------------------------------------------------

def _clip_frequency(result: RunResult) -> float:
    """Fraction of (client, step) pairs clipped over the run (each log's clip_frac_mean weighted by its steps)."""
    rows = result.metrics
    steps = rows[-1]["step"]
    covered = sum(b["clip_frac_mean"] * (b["step"] - a["step"]) for a, b in zip(rows, rows[1:], strict=False))
    return covered / steps if steps else 0.0


def _mean_clip_frac(result: RunResult) -> float:
    """clip_frac_mean averaged over the logged rows after step 0."""
    rows = result.metrics[1:]
    return sum(m["clip_frac_mean"] for m in rows) / max(1, len(rows))


#: quantities of one metrics row beyond its own fields
ROW_QUANTITIES: dict[str, Callable[[dict[str, Any]], float]] = {
    "grad_norm": lambda row: math.sqrt(row["grad_norm_sq"]),  # ‖∇f‖; on the toy (f'(x) = x) it is |x^k|
}
#: quantities of a whole run beyond its final row and its summary
RUN_QUANTITIES: dict[str, Callable[[RunResult], Any]] = {
    "x": lambda r: float(r.model.reshape(-1)[0]),  # first coordinate of the final model
    "clip_frequency": _clip_frequency,
    "mean_clip_frac": _mean_clip_frac,
    "heterogeneity": lambda r: 1 - r.config.partition.similarity,  # H = 1 − s of a similarity split
    "label": lambda r: r.label,
}


def row_value(row: dict[str, Any], metric: str) -> Any:
    if metric in ROW_QUANTITIES:
        return ROW_QUANTITIES[metric](row)
    if metric not in row:
        raise ClaimError(f"metric {metric!r} was not logged")
    return row[metric]


def run_value(result: RunResult, metric: str) -> Any:
    """``metric`` of a finished run: a derived run quantity, a field of its final metrics row, or a summary
    field (a dotted path reads nested summary fields, e.g. ``privacy.noise_multiplier``)."""
    if metric in RUN_QUANTITIES:
        return RUN_QUANTITIES[metric](result)
    final = result.metrics[-1] if result.metrics else {}
    if metric in ROW_QUANTITIES or metric in final:
        return row_value(final, metric)
    value: Any = result.summary
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ClaimError(f"run {result.label}: no metric {metric!r}")
        value = value[part]
    return value


def value_at(result: RunResult, metric: str, step: int) -> float:
    """``metric`` at logged step ``step``; nan when that step was not logged (a run too short)."""
    row = next((r for r in result.metrics if r["step"] == step), None)
    return math.nan if row is None else row_value(row, metric)


class RunView:
    """A run as the templates see it: ``{a.loss}``, ``{a.privacy[noise_multiplier]}``, ``{a[algorithm.k]}``."""

    def __init__(self, result: RunResult):
        self.result = result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return run_value(self.result, name)
        except ClaimError:
            return MISSING  # printed as ?

    def __getitem__(self, key: str) -> Any:
        return config_value(self.result.config, key)

    def __format__(self, spec: str) -> str:
        return format(self.result.label, spec)


class Missing:
    """What a template sees in place of a run or number that could not be found: it prints as ``?``."""

    def __getattr__(self, name: str) -> Missing:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Missing:
        return self

    def __format__(self, spec: str) -> str:
        return "?"


MISSING = Missing()


class Namespace(dict):
    """Template names; one that is not there prints as ``?`` (so a claim that cannot be checked still reads)."""

    def __missing__(self, key: str) -> Missing:
        return MISSING

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]


def sci(v: float) -> str:
    """``v`` as people write thresholds: 2e-5, 1e-12, 1.7e-3."""
    mantissa, _, exponent = f"{v:.15e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


class _Formatter(string.Formatter):
    """str.format plus two specs: ``sci`` (2e-5) and ``pts`` (0.02 as percentage points: 2); in prose (a claim's
    sentence) a negative number is written with the minus sign −."""

    def __init__(self, prose: bool):
        self.prose = prose

    def format_field(self, value: Any, spec: str) -> str:
        if isinstance(value, Missing):
            return "?"
        if value is None:
            return "None"
        if spec == "sci":
            text = sci(value)
        elif spec == "pts":
            text = f"{abs(value) * 100:g}"
        else:
            text = format(value, spec)
        if self.prose and isinstance(value, int | float) and text.startswith("-"):
            text = "−" + text[1:]
        return text


_FORMATTERS = {False: _Formatter(False), True: _Formatter(True)}


def render(template: str, names: dict[str, Any], prose: bool = False) -> str:
    """``template`` formatted with ``names`` (a name that is not there prints as ?); ``prose``: a claim's text."""
    try:
        return _FORMATTERS[prose].vformat(template, (), names if isinstance(names, Namespace) else Namespace(names))
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as e:
        raise DistclipError(f"claim template {template!r}: {type(e).__name__}: {e}") from None


@dataclasses.dataclass
class Context:
    """The runs a suite's claims, tables and figures are checked on."""

    runs: list[RunResult]  # every run (one per seed)
    results: list[RunResult]  # seeds averaged: one per setting
    groups: list[list[RunResult]]  # the runs behind each of results
    names: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # key -> value -> display name

    @classmethod
    def of(cls, runs: list[RunResult], names: dict[str, dict[str, str]] | None = None) -> Context:
        from .seeds import average, seed_groups

        groups = seed_groups(runs)
        return cls(runs, [average(g) for g in groups], groups, names or {})

    def candidates(self, selection: dict[str, Any]) -> list[RunResult]:
        """A selection naming ``seed`` picks single runs, any other picks settings (seeds averaged)."""
        return self.runs if "seed" in selection else self.results

    def select(self, selection: dict[str, Any]) -> list[RunResult]:
        return select(self.candidates(selection), selection)

    def display(self, key: str, value: Any) -> Any:
        """How ``value`` of config key ``key`` is written in claims (the suite's [suite.names], else as is)."""
        return self.names.get(key, {}).get(value if isinstance(value, str) else str(value), value)
