"""Named functions for what the claim vocabulary does not say: referenced from a suite's TOML by name.

``CLAIMS[name](ctx, **params)`` returns claims (``[[claim]] function = NAME`` with the table's other keys as
``params``), ``TABLES[name](ctx)`` extra report lines (``[suite] table = NAME``), ``FIGURES[name](ctx, out)``
extra figures (``[suite] figures = NAME``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ..figures import plot_privacy
from .claims import Claim
from .select import Context, config_value, render, run_value, sci

# --- episode-synthetic: experiments.md §8 target 9 ------------------------------------------------------------

# the reference simulation: final f per method and H, as a range
_TARGET9_F = {("celgc", 0.0): (-6.318, -6.318), ("celgc", 1.0): (-8.86, -8.86), ("celgc", 2.0): (-11.66, -11.66),
              ("celgc", 4.0): (-11.6, -11.5), ("episode", 0.0): (-6.318, -6.318), ("episode", 1.0): (-8.86, -8.86),
              ("episode", 2.0): (-11.66, -11.66), ("episode", 4.0): (-17.95, -17.95)}
# the whole row as printed there: CELGC f, |f'|, clip frequency; EPISODE f, |f'|, clip frequency
_TARGET9_ROW = {0.0: ("−6.318", "≈ 0.08", "≈ 0.003", "−6.318", "≈ 0.08", "< 0.01"),
                1.0: ("−8.86", "0.26", "0.29", "−8.86", "≈ 0.11", "< 0.01"),
                2.0: ("−11.66", "0.33", "0.98", "−11.66", "0.10–0.13", "< 0.01"),
                4.0: ("−11.5 to −11.6", "≈ 12", "0.96", "−17.95", "0.14–0.21", "< 0.01")}


def _quartic_stats(ctx: Context) -> dict[tuple[str, float], tuple[float, float, float, int]]:
    """(algorithm.name, problem.H) -> mean over its seeds of final f, final |f'| and clip frequency; seed count."""
    out = {}
    for result, seeds in zip(ctx.results, ctx.groups, strict=True):
        stats = [(run_value(s, "loss"), run_value(s, "grad_norm"), run_value(s, "clip_frequency")) for s in seeds]
        key = config_value(result.config, "algorithm.name"), config_value(result.config, "problem.H")
        out[key] = (*(sum(col) / len(col) for col in zip(*stats, strict=True)), len(seeds))
    return out


def episode_target9_claims(ctx: Context, stationary: str, gap_text: str, gap: float, same_text: str,
                           same_f: float, rare_text: str, rare: float, reference_text: str,
                           reference_tol: float) -> list[Claim]:
    """EPISODE against CELGC per H, on the mean over seeds of per-seed final values (not the averaged curve)."""
    st = _quartic_stats(ctx)
    hs = sorted(h for name, h in st if name == "celgc")
    n = st["episode", hs[0]][3]
    out = []
    for h in (h for h in hs if h >= 1):
        c, e = st["celgc", h], st["episode", h]
        out.append(Claim(render(stationary, {"H": h, "seeds": n}, prose=True), e[1] < c[1],
                         f"EPISODE {e[1]:.3f}, CELGC {c[1]:.3f}"))
    if 4.0 in hs:
        c, e = st["celgc", 4.0], st["episode", 4.0]
        out.append(Claim(render(gap_text, {"H": 4.0, "gap": gap}, prose=True), e[0] < c[0] - gap,
                         f"EPISODE f = {e[0]:.3f}, CELGC f = {c[0]:.3f}"))
    if 0.0 in hs:
        c, e = st["celgc", 0.0], st["episode", 0.0]
        out.append(Claim(render(same_text, {"same_f": same_f}, prose=True), abs(e[0] - c[0]) < same_f,
                         f"EPISODE {e[0]:.4f}, CELGC {c[0]:.4f}"))
    freq = {h: st["episode", h][2] for h in hs}
    out.append(Claim(render(rare_text, {"rare": rare}, prose=True), max(freq.values()) < rare,
                     ", ".join(f"H = {h:g}: {f:.4f}" for h, f in freq.items())))
    off = {k: min(abs(st[k][0] - lo), abs(st[k][0] - hi)) if not lo <= st[k][0] <= hi else 0.0
           for k, (lo, hi) in _TARGET9_F.items() if k in st}
    out.append(Claim(render(reference_text, {"reference_tol": reference_tol}, prose=True),
                     bool(off) and max(off.values()) <= reference_tol,
                     f"largest distance {max(off.values(), default=math.nan):.3f}"))
    return out


def episode_target9_table(ctx: Context) -> list[str]:
    st = _quartic_stats(ctx)
    hs = sorted(h for name, h in st if name == "celgc")
    lines = [f"## Target 9 (experiments.md §8): mean of {st['celgc', hs[0]][3]} seeds; reference simulation in "
             "parentheses", "",
             "| H | CELGC f | CELGC \\|f'\\| | CELGC clip freq. | EPISODE f | EPISODE \\|f'\\| | EPISODE clip freq. |",
             "|---|---|---|---|---|---|---|"]
    for h in hs:
        ref = _TARGET9_ROW.get(h, ("—",) * 6)
        ours = [*st["celgc", h][:3], *st["episode", h][:3]]
        cells = [f"{v:.4g} ({want})" for v, want in zip(ours, ref, strict=True)]
        lines.append(f"| {h:g} | " + " | ".join(cells) + " |")
    return [*lines, ""]


# --- dp-clip21: utility against ε ------------------------------------------------------------------------------

def dp_utility_figure(ctx: Context, out: Path) -> list[Path]:
    """Final training loss against the ε target, one curve per algorithm; its non-private run (no
    algorithm.target_epsilon) as the reference line."""
    curves: dict[str, list[tuple[float, float]]] = {}
    reference: dict[str, float] = {}
    for r in ctx.results:
        name = ctx.display("algorithm.name", config_value(r.config, "algorithm.name"))
        eps = config_value(r.config, "algorithm.target_epsilon")
        curves.setdefault(name, [])
        if eps is None:
            reference[name] = run_value(r, "loss")
        else:
            curves[name].append((eps, run_value(r, "loss")))
    delta = config_value(ctx.results[0].config, "algorithm.delta")
    return [plot_privacy(curves, reference, out / "plots" / "utility-vs-epsilon.png",
                         f"dp-clip21: final training loss against ε (local DP, δ = {sci(delta)})")]


CLAIMS: dict[str, Callable[..., list[Claim]]] = {"episode_target9": episode_target9_claims}
TABLES: dict[str, Callable[[Context], list[str]]] = {"episode_target9": episode_target9_table}
FIGURES: dict[str, Callable[[Context, Path], list[Path]]] = {"dp_utility": dp_utility_figure}
