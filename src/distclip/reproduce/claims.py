"""The claim vocabulary of the suites' ``[[claim]]`` tables, and how a claim is checked and worded.

A claim is a sentence (``text``) and one check (``type`` and its parameters in the claim table) or several
named checks that must all hold (``[claim.check.NAME]`` tables). ``text`` and ``evidence`` are templates
formatted with the claim's own parameters and what the checks computed, so every threshold is written once::

    [[claim]]
    text = "Clip21 reaches ‖∇f‖² < {below:sci}"
    type = "final"
    run = { "algorithm.name" = "clip21" }
    metric = "grad_norm_sq"
    below = 1e-12
    evidence = "‖∇f‖² = {value:.2g}"

Runs are selected by config values (:mod:`.select`): a role (``run``, ``a``, ``b``, ``over``) is a selection
table or the name of one in the claim's ``runs`` table (whose views the templates see by that name).
``each = "algorithm.tau"`` makes one claim per value of that key (the templates see it as ``{tau}``); the value
is added to every selection that does not mention the key. Check types (see :data:`TYPES`): final, at_step,
always, ratio, rounds_to, monotone, clipping_stops, epsilon_spent. ``function = NAME`` instead hands the claim
to a named Python function (:mod:`.special`) with the table's other keys as parameters.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DistclipError
from ..runner import RunResult
from .select import (
    MISSING,
    ClaimError,
    Context,
    Namespace,
    RunView,
    check_selection,
    config_value,
    describe,
    distinct,
    render,
    row_value,
    run_value,
    value_at,
)


@dataclass(frozen=True)
class Claim:
    text: str
    holds: bool
    evidence: str


_CLAIM_KEYS = {"text", "evidence", "each", "runs", "check", "type", "function", "group"}
_OPS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                               ">=": operator.ge}
#: bounds of final / at_step / always: the value compared with the number given
_BOUNDS: dict[str, Callable[[float, Any], bool]] = {
    "below": operator.lt, "above": operator.gt, "at_most": operator.le, "at_least": operator.ge,
    "equals": operator.eq,
}


@dataclass
class _Scope:
    """One claim (for one value of its ``each``): its named runs and the each-value added to selections."""

    ctx: Context
    named: dict[str, dict[str, Any]]
    inject: dict[str, Any]

    def selection(self, ref: str | dict[str, Any]) -> dict[str, Any]:
        if isinstance(ref, str):
            return self.named[ref]
        return {**{k: v for k, v in self.inject.items() if k not in ref}, **ref}

    def many(self, ref: str | dict[str, Any]) -> list[RunResult]:
        selection = self.selection(ref)
        found = self.ctx.select(selection)
        if not found:
            raise ClaimError(f"no run matches {describe(selection)}")
        return found

    def one(self, ref: str | dict[str, Any]) -> RunResult:
        found = self.many(ref)
        if len(found) > 1:
            raise ClaimError(f"{len(found)} runs match {describe(self.selection(ref))}: "
                             f"{', '.join(r.label for r in found)}; add a key that tells them apart")
        return found[0]


def _listing(scope: _Scope, p: dict[str, Any], quantity: Callable[[RunResult], Any]) -> str:
    """``listing = { over = SELECTION, by = KEY, item = TEMPLATE }``: the check's quantity for each run,
    ordered by KEY; TEMPLATE sees ``{key}``, ``{value}`` and ``{run}``."""
    spec = p.get("listing")
    if spec is None:
        return ""
    runs = scope.many(spec.get("over", {}))
    by = spec.get("by")
    if by is not None:
        runs = sorted(runs, key=lambda r: config_value(r.config, by))
    item = spec.get("item", "{run}: {value}")
    return ", ".join(render(item, {"key": config_value(r.config, by) if by else None, "value": quantity(r),
                                   "run": RunView(r), "label": r.label}) for r in runs)


def _bounded(p: dict[str, Any], value: Any) -> bool:
    ok = all(test(value, p[name]) for name, test in _BOUNDS.items() if name in p)
    if "near" in p:
        ok = ok and abs(value - p["near"]) < p["tol"]
    return bool(ok)


def _final(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    run = scope.one(p["run"])
    value = run_value(run, p["metric"])
    return {"holds": _bounded(p, value), "value": value, "step": run.metrics[-1]["step"], "run": RunView(run),
            "listing": _listing(scope, p, lambda r: run_value(r, p["metric"]))}


def _at_step(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    run = scope.one(p["run"])
    value = value_at(run, p["metric"], p["step"])
    return {"holds": _bounded(p, value), "value": value, "run": RunView(run)}


def _always(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    run = scope.one(p["run"])
    values = [row_value(row, p["metric"]) for row in run.metrics]
    return {"holds": bool(values) and all(_bounded(p, v) for v in values), "step": run.metrics[-1]["step"],
            "run": RunView(run), "value": values[-1] if values else math.nan}


def _ratio(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    """a op factor·b + margin (``within = w``: factor 1 + w); with ``every = true`` for every run ``a`` matches."""
    runs = scope.many(p["a"]) if p.get("every") else [scope.one(p["a"])]
    b = scope.one(p["b"])
    factor = 1 + p["within"] if "within" in p else p.get("factor", 1.0)
    b_value = run_value(b, p["metric"])
    bound = factor * b_value + p.get("margin", 0.0)
    a_values = [run_value(r, p["metric"]) for r in runs]
    test = _OPS[p.get("op", "<=")]
    return {"holds": all(bool(test(v, bound)) for v in a_values), "a": RunView(runs[0]) if len(runs) == 1 else
            [RunView(r) for r in runs], "b": RunView(b), "a_value": a_values[0], "b_value": b_value, "bound": bound,
            "listing": _listing(scope, p, lambda r: run_value(r, p["metric"]))}


def _rounds(run: RunResult, metric: str, target: float, reaches: str) -> int | None:
    """Communication rounds at the first logged step whose ``metric`` reaches ``target`` (None: never)."""
    test = operator.le if reaches == "below" else operator.ge
    return next((m["comm_rounds"] for m in run.metrics if test(row_value(m, metric), target)), None)


def _rounds_to(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    """Rounds for run ``a`` to reach ``target`` (or ``relative`` x the final metric of run ``of``, default ``b``);
    compared with ``b``'s rounds (``fewer = n``: n x a's rounds <= b's) or with ``at_most``."""
    a = scope.one(p["a"])
    b = scope.one(p["b"]) if "b" in p else None
    metric, reaches = p.get("metric", "loss"), p.get("reaches", "below")
    if "relative" in p:
        ref = scope.one(p["of"]) if "of" in p else b
        if ref is None:
            raise ClaimError("rounds_to: relative needs a run `of` (or `b`)")
        target = p["relative"] * run_value(ref, metric)
    else:
        target = p["target"]
    a_rounds = _rounds(a, metric, target, reaches)
    b_rounds = None if b is None else _rounds(b, metric, target, reaches)
    holds = a_rounds is not None
    if "fewer" in p:
        holds = holds and bool(b_rounds) and p["fewer"] * a_rounds <= b_rounds
    if "at_most" in p:
        holds = holds and a_rounds <= p["at_most"]
    return {"holds": bool(holds), "target": target, "a_rounds": a_rounds, "b_rounds": b_rounds, "a": RunView(a),
            "b": RunView(b) if b else MISSING,
            "listing": _listing(scope, p, lambda r: _rounds(r, metric, target, reaches))}


def _monotone(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    """``metric`` along the runs of ``over`` ordered by ``param`` (``order`` ascending / descending) ``rises``
    or ``falls`` (``strict``: every step). Runs with ``param`` unset are listed as ``unset`` but not checked."""
    runs = scope.many(p.get("over", {}))
    keyed = [(config_value(r.config, p["param"]), r) for r in runs]
    if "unset" in p:
        keyed = [(p["unset"] if k is None else k, r) for k, r in keyed]
    elif any(k is None for k, _ in keyed):
        raise ClaimError(f"monotone: some runs leave {p['param']} unset (give unset = VALUE to list them)")
    descending = p.get("order", "ascending") == "descending"
    keyed.sort(key=lambda kr: kr[0], reverse=descending)
    keys = [k for k, _ in keyed]
    if len(set(map(repr, keys))) != len(keys):
        raise ClaimError(f"monotone: several runs share a value of {p['param']}")
    values = [run_value(r, p["metric"]) for _, r in keyed]
    checked = [v for (k, r), v in zip(keyed, values, strict=True) if config_value(r.config, p["param"]) is not None]
    steps = list(zip(checked, checked[1:], strict=False))
    rises = p["trend"] == "rises"
    test = (operator.lt if rises else operator.gt) if p.get("strict") else (operator.le if rises else operator.ge)
    item = p.get("item", "{key:g}: {value:.4g}")
    return {"holds": len(checked) >= 2 and all(test(x, y) for x, y in steps),
            "listing": ", ".join(render(item, {"key": k, "value": v, "run": RunView(r)})
                                 for (k, r), v in zip(keyed, values, strict=True)),
            "values": ", ".join(render("{k:g}", {"k": k}) for (k, r) in keyed
                                if config_value(r.config, p["param"]) is not None)}


def _clipping_stops(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    """Clipping switches off for good: last clipped step (summary) before the end, no clipping logged after."""
    run = scope.one(p["run"])
    last, steps = run.summary["last_clip_step"], run.metrics[-1]["step"]
    after = [m["clip_frac"] for m in run.metrics if m["step"] > last]
    return {"holds": 0 <= last < steps and all(f == 0 for f in after), "last": last, "steps": steps,
            "run": RunView(run)}


def _epsilon_spent(scope: _Scope, p: dict[str, Any]) -> dict[str, Any]:
    """Every private run of ``over`` (algorithm.target_epsilon set) ends with ε in [(1 − within)·target, target]."""
    key = "algorithm.target_epsilon"
    runs = [r for r in scope.many(p.get("over", {})) if config_value(r.config, key) is not None]
    if not runs:
        raise ClaimError(f"no run sets {key}")
    spent = [(r, config_value(r.config, key), run_value(r, "epsilon")) for r in runs]
    item = p.get("item", "{label}: {value:.3f}")
    return {"holds": all((1 - p["within"]) * e <= got <= e for _, e, got in spent),
            "listing": ", ".join(render(item, {"label": r.label, "key": e, "value": got, "run": RunView(r)})
                                 for r, e, got in spent)}


@dataclass(frozen=True)
class CheckType:
    fn: Callable[[_Scope, dict[str, Any]], dict[str, Any]]
    roles: tuple[str, ...]  # parameters that name runs
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    evidence: str = ""  # default evidence template
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)


_BOUND_KEYS = (*_BOUNDS, "near", "tol")
TYPES: dict[str, CheckType] = {
    "final": CheckType(_final, ("run",), ("run", "metric"), (*_BOUND_KEYS, "listing"), "{metric} {value:.4g}"),
    "at_step": CheckType(_at_step, ("run",), ("run", "metric", "step"), _BOUND_KEYS,
                         "{metric} at step {step}: {value:.4g}"),
    "always": CheckType(_always, ("run",), ("run", "metric"), _BOUND_KEYS, "{metric} at every logged step"),
    "ratio": CheckType(_ratio, ("a", "b"), ("a", "b", "metric"),
                       ("op", "factor", "margin", "within", "every", "listing"),
                       "{a_value:.4g} vs {b_value:.4g}", {"op": tuple(_OPS)}),
    "rounds_to": CheckType(_rounds_to, ("a", "b", "of"), ("a",),
                           ("b", "of", "metric", "target", "relative", "fewer", "at_most", "reaches", "listing"),
                           "rounds: {a_rounds} vs {b_rounds} (target {target:.4g})",
                           {"reaches": ("below", "above")}),
    "monotone": CheckType(_monotone, ("over",), ("param", "metric", "trend"),
                          ("over", "order", "strict", "unset", "item"), "{listing}",
                          {"trend": ("rises", "falls"), "order": ("ascending", "descending")}),
    "clipping_stops": CheckType(_clipping_stops, ("run",), ("run",), (), "last clipped step {last} of {steps}"),
    "epsilon_spent": CheckType(_epsilon_spent, ("over",), ("within",), ("over", "item"), "{listing}"),
}


def _checks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A claim's checks by name (a single check is named "")."""
    if "check" in spec:
        return spec["check"]
    return {"": {k: v for k, v in spec.items() if k not in _CLAIM_KEYS - {"type"}}}


def _members(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims of a ``[[claim]]`` table: itself, or its ``[[claim.group]]`` tables, each with the table's
    ``each`` and ``runs`` (so that, for each value, the group's claims come together in the report)."""
    if "group" not in spec:
        return [spec]
    shared = {k: v for k, v in spec.items() if k in ("each", "runs")}
    return [{**shared, **member, "runs": {**shared.get("runs", {}), **member.get("runs", {})}}
            for member in spec["group"]]


def validate(spec: dict[str, Any], where: str) -> None:
    """Raise DistclipError unless ``spec`` (one ``[[claim]]`` table) is a well-formed claim."""
    if "group" in spec:
        if set(spec) - {"group", "each", "runs"}:
            raise DistclipError(f"{where}: a claim with [[claim.group]] tables takes only each and runs besides")
        for i, member in enumerate(_members(spec), 1):
            validate(member, f"{where}, group {i}")
        return
    if "function" in spec:
        from .special import CLAIMS

        if spec["function"] not in CLAIMS:
            raise DistclipError(f"{where}: unknown claim function {spec['function']!r}; known: {', '.join(CLAIMS)}")
        return
    if not isinstance(spec.get("text"), str):
        raise DistclipError(f"{where}: a claim needs text = \"...\" (or function = NAME)")
    if ("check" in spec) == ("type" in spec):
        raise DistclipError(f"{where}: give either type = ... (one check) or [claim.check.NAME] tables")
    if "check" in spec and not (isinstance(spec["check"], dict) and all(isinstance(c, dict)
                                                                          for c in spec["check"].values())):
        raise DistclipError(f"{where}: checks are tables: [claim.check.NAME] or check.NAME = {{ type = ... }}")
    if "each" in spec:
        check_selection({spec["each"]: 0}, where)
    named = spec.get("runs", {})
    for name, selection in named.items():
        check_selection(selection, f"{where}, runs.{name}")
    for name, p in _checks(spec).items():
        at = f"{where}, check {name}" if name else where
        kind = TYPES.get(p.get("type"))
        if kind is None:
            raise DistclipError(f"{at}: unknown type {p.get('type')!r}; known: {', '.join(TYPES)}")
        unknown = set(p) - {"type", *kind.required, *kind.optional}
        missing = set(kind.required) - set(p)
        if unknown or missing:
            raise DistclipError(f"{at}: {p['type']} takes {', '.join(kind.required)} "
                                f"(and optionally {', '.join(kind.optional) or 'nothing'}); "
                                f"unknown: {sorted(unknown)}, missing: {sorted(missing)}")
        for role in (r for r in kind.roles if r in p):
            if isinstance(p[role], str):
                if p[role] not in named:
                    raise DistclipError(f"{at}: {role} = {p[role]!r} is not in the claim's runs table")
            else:
                check_selection(p[role], f"{at}, {role}")
        for key, allowed in kind.choices.items():
            if key in p and p[key] not in allowed:
                raise DistclipError(f"{at}: {key} = {p[key]!r}; allowed: {', '.join(map(str, allowed))}")
        if p["type"] in ("final", "at_step", "always") and not set(p) & {*_BOUNDS, "near"}:
            raise DistclipError(f"{at}: give a bound: {', '.join(_BOUNDS)} or near (with tol)")
        if ("near" in p) != ("tol" in p):
            raise DistclipError(f"{at}: near and tol go together")
        if "within" in p and "factor" in p:
            raise DistclipError(f"{at}: give within (factor 1 + within) or factor, not both")
        if p["type"] == "rounds_to" and ("target" in p) == ("relative" in p):
            raise DistclipError(f"{at}: rounds_to takes target = VALUE or relative = FACTOR (of run `of` or `b`)")
        if "listing" in p:
            listing = p["listing"]
            if not isinstance(listing, dict) or set(listing) - {"over", "by", "item"}:
                raise DistclipError(f"{at}: listing = {{ over = SELECTION, by = KEY, item = TEMPLATE }}")
            over = listing.get("over", {})
            if isinstance(over, str) and over not in named:
                raise DistclipError(f"{at}: listing over = {over!r} is not in the claim's runs table")
            check_selection({**({} if isinstance(over, str) else over), **({listing["by"]: 0} if "by" in listing
                                                                           else {})}, f"{at}, listing")


def _each_values(spec: dict[str, Any], ctx: Context) -> list[Any]:
    key = spec["each"]
    pool = ctx.runs if key == "seed" else ctx.results
    return distinct([config_value(r.config, key) for r in pool])


def evaluate(spec: dict[str, Any], ctx: Context) -> list[Claim]:
    """The claims one ``[[claim]]`` table makes on these runs (several with ``each``)."""
    if "function" in spec:
        from .special import CLAIMS

        return CLAIMS[spec["function"]](ctx, **{k: v for k, v in spec.items() if k != "function"})
    members = _members(spec)
    if "each" not in spec:
        return [_one(m, ctx, {}, {}) for m in members]
    key = spec["each"]
    short = key.rpartition(".")[2]
    return [_one(m, ctx, {key: v}, {short: ctx.display(key, v)}) for v in _each_values(spec, ctx) for m in members]


def _one(spec: dict[str, Any], ctx: Context, inject: dict[str, Any], names: dict[str, Any]) -> Claim:
    named = {n: {**{k: v for k, v in inject.items() if k not in s}, **s} for n, s in spec.get("runs", {}).items()}
    scope = _Scope(ctx, named, inject)
    ns = Namespace(names)
    for n, selection in named.items():
        found = ctx.select(selection)
        ns[n] = RunView(found[0]) if len(found) == 1 else MISSING
    holds, problems, locals_ = True, [], []
    for name, p in _checks(spec).items():
        kind = TYPES[p["type"]]
        params = {k: v for k, v in p.items() if k != "type"}
        try:
            out = kind.fn(scope, params)
        except ClaimError as e:
            out = {"holds": False}
            problems.append(str(e))
        holds = holds and out["holds"]
        # the check's parameters and results; a role it could not resolve prints as ?
        local = Namespace({**ns, **{k: v for k, v in params.items() if k not in kind.roles}, **out})
        locals_.append((kind, local))
        if name:
            ns[name] = local
        else:
            ns.update(local)
    text = render(spec["text"], ns, prose=True)
    if problems:
        return Claim(text, False, "cannot check: " + "; ".join(problems))
    if "evidence" in spec:
        return Claim(text, bool(holds), render(spec["evidence"], ns))
    return Claim(text, bool(holds), "; ".join(render(kind.evidence, local) for kind, local in locals_))
