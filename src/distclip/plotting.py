"""Figures from run metrics, as PNG with the non-interactive Agg backend.

Every figure is built from :class:`Series` (a run's label and its metrics rows) by the same rules:

- **Seeds**: series with the same label are runs of one setting that differ only in their seed; they are drawn
  as their mean with a min–max band (rows matched by step).
- **Colours** are fixed per label: :func:`palette` gives each label of a list its colour by the label's place
  in natural order, so a sweep's figures (all runs, one value of a grid key, ...) all take their colours from
  the sweep's full label list and a run keeps its colour in every figure.
- **Order**: legends list labels in natural order (``I=1, 4, 16``, not ``1, 16, 4``), outside the axes.
- **Log axes**, unless forced: y is logarithmic when its positive values span more than two decades (100x) and
  it is not a fraction (clipping frequency, accuracy: linear, as they are often exactly 0 or near 1),
  x when the curves' extents differ by more than about 12x (I = 16 beside I = 1 against rounds). Points at
  x <= 0 or y <= 0 are not drawn on a log axis. On a linear axis, loss, accuracy and perplexity are zoomed on
  the later half of the curves, where the runs differ (the whole range would flatten 95% against 96%); the
  axis label says so.
- ``gap`` is f − f_min, f_min the smallest f over the runs drawn *that share an objective* (the same problem
  and partition; runs of different objectives, e.g. one per H, each get their own f_min). It is clipped at a
  floor of 1e-15·|f_min| (1e-15 when f_min = 0; about ten float64 rounding units of f): below it the
  difference is rounding noise, and a run that ends exactly at f_min would vanish from the log axis.

:func:`plot_metrics` is ``distclip plot``; :mod:`distclip.figures` composes the fixed panels of the suites.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

from .errors import DistclipError  # noqa: E402

Rows = list[dict[str, Any]]

# --x NAME -> (metrics key, axis label)
XS: dict[str, tuple[str, str]] = {
    "steps": ("step", "iteration k"),
    "rounds": ("comm_rounds", "communication rounds (collectives)"),
    "floats": ("floats_up", "floats sent per client"),
    "bytes": ("bytes_up", "bytes sent per client"),
    "epochs": ("epoch", "epochs (passes over a client's data)"),
    "wall": ("wall_s", "wall clock in algorithm steps (s)"),
}
LABELS: dict[str, str] = {
    "loss": "training loss f(x)", "grad_norm_sq": r"$\|\nabla f(x)\|^2$", "gap": r"$f(x) - f_{\min}$",
    "test_acc": "test accuracy", "test_loss": "test loss", "train_acc": "training accuracy",
    "valid_ppl": "validation perplexity", "valid_loss": "validation loss", "epsilon": "ε spent (δ fixed)",
    "clip_frac": "fraction of clients clipped", "clip_frac_mean": "clipping frequency",
}
FRACTIONS = {"clip_frac", "clip_frac_mean", "test_acc", "train_acc"}  # in [0, 1], often exactly 0: linear unless forced
ZOOMED = {"loss", "test_acc", "train_acc", "test_loss", "valid_ppl", "valid_loss"}  # trends, zoomed when linear
GAP_FLOOR = 1e-15  # relative to |f_min|: f − f_min below it is float64 rounding noise
_DECADES_Y = 2.0
_DECADES_X = 1.1  # 12.6x: I = 16 beside I = 1 (16x) goes log, Top-12 of 123 floats (10x) stays linear


@dataclass
class Series:
    """One run: its legend label, metrics rows and objective (runs with equal ``objective`` share f_min)."""

    label: str
    rows: Rows
    objective: str = ""


@dataclass
class Curve:
    """Series of one label, aggregated: the mean rows and, over several seeds, the min and max rows."""

    label: str
    mean: Rows
    low: Rows
    high: Rows
    objective: str = ""
    seeds: int = 1
    f_min: float = field(default=math.nan)


def natural_key(label: str) -> tuple:
    """Sort key reading the numbers in ``label`` as numbers: I=1 < I=4 < I=16, tau=0.01 < tau=0.1 < tau=1."""
    parts = re.split(r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)", label)
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts) if p)


def natural_sorted(labels: Iterable[str]) -> list[str]:
    return sorted(set(labels), key=natural_key)


def palette(labels: Iterable[str]) -> dict[str, dict[str, Any]]:
    """A line style per label (``color``, ``linestyle``, ``linewidth``), by the label's place in natural order:
    tab10's colours (then tab20b's), four dash patterns in turn and widths from 2.6 down to 1.2, so that a curve
    drawn exactly on top of another (Clip21 with τ = 1 and GD) stays visible as a thin line inside a thick one."""
    order = natural_sorted(labels)
    colours = list(plt.get_cmap("tab10").colors)
    if len(order) > len(colours):
        colours += list(plt.get_cmap("tab20b").colors)
    dashes = ["-", "--", "-.", ":"]
    widths = [2.6 - 1.4 * i / max(len(order) - 1, 1) for i in range(len(order))]  # later, thinner: on top
    return {label: {"color": colours[i % len(colours)], "linestyle": dashes[i % len(dashes)], "linewidth": widths[i]}
            for i, label in enumerate(order)}


def strip_seed(label: str, seed: int) -> str:
    """``label`` without its ``seed=K`` part (``celgc-H=1.0-seed=3`` -> ``celgc-H=1.0``)."""
    return re.sub(rf"-?seed={seed}(?!\d)", "", label).strip("-")


def aggregate(series: Sequence[Series]) -> list[Curve]:
    """One curve per label (natural order): a single run as it is; several (seeds) as the step-wise mean,
    min and max of every numeric key over the steps all of them logged."""
    by_label: dict[str, list[Series]] = {}
    for s in series:
        if s.rows:
            by_label.setdefault(s.label, []).append(s)
    curves = []
    for label in natural_sorted(by_label):
        members = by_label[label]
        if len(members) == 1:
            rows = members[0].rows
            curves.append(Curve(label, rows, rows, rows, members[0].objective))
            continue
        steps = set.intersection(*({r["step"] for r in m.rows} for m in members))
        at = [{r["step"]: r for r in m.rows} for m in members]
        stats = [[_stat(fn, [a[step] for a in at]) for step in sorted(steps)] for fn in (_mean, min, max)]
        curves.append(Curve(label, *stats, members[0].objective, len(members)))
    return curves


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _stat(fn: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = set.intersection(*(set(r) for r in rows))
    return {k: fn([r[k] for r in rows]) for k in keys if all(isinstance(r[k], int | float) for r in rows)}


def set_f_min(curves: list[Curve]) -> None:
    """Each curve's f_min: the smallest logged f (mean or min) over the curves of its objective."""
    lows: dict[str, float] = {}
    for c in curves:
        values = [r["loss"] for r in c.low if "loss" in r and math.isfinite(r["loss"])]
        if values:
            lows[c.objective] = min(lows.get(c.objective, math.inf), *values)
    for c in curves:
        c.f_min = lows.get(c.objective, math.nan)


def _y(row: dict[str, Any], metric: str, f_min: float) -> float | None:
    if metric == "gap":
        return max(row["loss"] - f_min, GAP_FLOOR * (abs(f_min) or 1.0)) if "loss" in row else None
    v = row.get(metric)
    return v if isinstance(v, int | float) and math.isfinite(v) else None


def _points(rows: Rows, xkey: str, metric: str, f_min: float) -> list[tuple[float, float]]:
    pts = []
    for r in rows:
        y = _y(r, metric, f_min)
        if y is not None and xkey in r:
            pts.append((r[xkey], y))
    return pts


def _span(values: list[float]) -> float:
    positive = [v for v in values if v > 0]
    return math.log10(max(positive) / min(positive)) if len(positive) > 1 else 0.0


def auto_log(curves: list[Curve], xkey: str, metric: str) -> tuple[bool, bool]:
    """(log x, log y) by the rules of the module docstring."""
    ends = [max(x for x, _ in pts) for c in curves if (pts := _points(c.mean, xkey, metric, c.f_min))]
    ys = [y for c in curves for rows in (c.low, c.high) for _, y in _points(rows, xkey, metric, c.f_min)]
    return _span(ends) >= _DECADES_X, metric not in FRACTIONS and _span(ys) > _DECADES_Y


def draw(ax: Any, curves: list[Curve], xkey: str, metric: str, colours: dict[str, Any],
         logx: bool | None = None, logy: bool | None = None, zoom: bool = True) -> str | None:
    """Draw ``metric`` against ``xkey`` for ``curves`` on ``ax`` (log axes automatic unless given); return a note
    for the axis label ("" or that it is zoomed), None when no curve has the metric."""
    auto_x, auto_y = auto_log(curves, xkey, metric)
    logx, logy = auto_x if logx is None else logx, auto_y if logy is None else logy
    late: list[float] = []
    drawn = False
    for c in curves:
        keep = [(x, y) for x, y in _points(c.mean, xkey, metric, c.f_min)
                if (x > 0 or not logx) and (y > 0 or not logy)]
        if not keep:
            continue
        drawn = True
        xs, ys = zip(*keep, strict=True)
        style = {"linewidth": 1.5, **colours.get(c.label, {})}
        ax.plot(xs, ys, label=c.label, marker="o" if len(xs) <= 20 else None, markersize=3, **style)
        if c.seeds > 1:  # min and max rows are aligned with the mean rows, step by step
            band = [(m[xkey], lo, hi) for m, low, high in zip(c.mean, c.low, c.high, strict=True)
                    if xkey in m and (lo := _y(low, metric, c.f_min)) is not None
                    and (hi := _y(high, metric, c.f_min)) is not None
                    and (m[xkey] > 0 or not logx) and (lo > 0 or not logy)]
            if band:
                ax.fill_between(*zip(*band, strict=True), color=colours.get(c.label, {}).get("color"), alpha=0.15,
                                linewidth=0)
        late += [y for x, y in keep if x >= xs[-1] / 2]
    zoom = zoom and not logy and metric in ZOOMED
    _axes(ax, logx, logy, late if zoom else [])
    return (" (zoomed: later half)" if zoom else "") if drawn else None


def _axes(ax: Any, logx: bool, logy: bool, late: list[float]) -> None:
    for axis, log in ((ax.xaxis, logx), (ax.yaxis, logy)):
        if log:
            (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
            log_ticks(axis)
    if not logy and late:  # zoom on where the runs differ
        lo, hi = min(late), max(late)
        pad = 0.1 * (hi - lo) or 0.05 * abs(hi) or 0.05
        ax.set_ylim(lo - pad, hi + pad)
    ax.grid(True, which="major", alpha=0.3)


def log_ticks(axis: Any) -> None:
    """Uncluttered log ticks: over 2.5 decades or more the powers of ten (at most about seven labelled); over
    less, 1, 2, 5 per decade, within one decade 1, 2, ..., 9, written plainly (0.2, 0.5, 1, 2e5); no minor labels."""
    lo, hi = axis.get_view_interval()
    span = math.log10(hi / lo) if lo > 0 else math.inf
    if span < 2.5:
        subs = (1.0, 2.0, 5.0) if span > 1 else tuple(float(k) for k in range(1, 10))
        axis.set_major_locator(ticker.LogLocator(subs=subs))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: plain(v)))
    else:
        axis.set_major_locator(ticker.LogLocator(numticks=7))
    axis.set_minor_formatter(ticker.NullFormatter())


def plain(v: float) -> str:
    """A tick value without mathtext: 0.05, 20, 2e5."""
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:g}"
    mantissa, exponent = f"{v:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def axis_label(metric: str, curves: list[Curve]) -> str:
    """The y label; for ``gap`` it defines f_min and the floor."""
    if metric != "gap":
        return LABELS.get(metric, metric)
    objectives = {c.objective for c in curves}
    if len(objectives) > 1:
        return "$f(x) - f_{\\min}$, f_min per objective\n(smallest f over its runs; floor 1e-15·|f_min|)"
    f_min = next((c.f_min for c in curves), math.nan)
    return f"$f(x) - f_{{\\min}}$, f_min = {f_min:.6g}\n(smallest f over these runs; floor 1e-15·|f_min|)"


def seeds_note(curves: Sequence[Curve]) -> str:
    """The legend's title when curves are seed means: 'mean of 5 seeds, band: min–max'."""
    counts = sorted({c.seeds for c in curves if c.seeds > 1})
    return f"mean of {'/'.join(map(str, counts))} seeds, band: min–max" if counts else ""


def save(fig: Any, axes: Sequence[Any], title: str, out: Path, note: str = "") -> Path:
    """One legend (labels in natural order, ``note`` its title) outside the axes on the right, the title, the
    PNG."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    order = sorted(handles, key=natural_key)
    if order:
        fig.legend([handles[k] for k in order], order, loc="outside right center", fontsize=8, title=note or None,
                   title_fontsize=8)
    if title:
        fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def prepare(series: Sequence[Series]) -> list[Curve]:
    curves = aggregate(series)
    if not curves:
        raise DistclipError("no logged steps to plot")
    set_f_min(curves)
    return curves


def plot_metrics(series: Sequence[Series], metrics: Sequence[str], x: str, out: Path, title: str = "",
                 logx: bool | None = None, logy: bool | None = None, colours: dict[str, Any] | None = None) -> Path:
    """One panel per metric against ``x`` (a key of :data:`XS`), the rules of the module docstring."""
    if x not in XS:
        raise DistclipError(f"--x {x!r} is not one of {', '.join(XS)}")
    curves = prepare(series)
    xkey, xlabel = XS[x]
    colours = colours or palette(c.label for c in curves)
    cols = min(len(metrics), 3)
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols + 2.5, 4 * rows), constrained_layout=True,
                             squeeze=False)
    flat = list(axes.flat)
    for ax, metric in zip(flat, metrics, strict=False):
        note = draw(ax, curves, xkey, metric, colours, logx, logy)
        if note is None:
            known = sorted({k for c in curves for r in c.mean for k in r} | {"gap"})
            raise DistclipError(f"no run logged metric {metric!r} against {xkey!r}; logged: {', '.join(known)}")
        ax.set_xlabel(xlabel + (" (log)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel(axis_label(metric, curves) + (note or ""))
    for ax in flat[len(metrics):]:
        ax.set_visible(False)
    return save(fig, flat, title, out, seeds_note(curves))


def find_runs(dirs: list[Path]) -> list[Path]:
    """Run directories in ``dirs``: each one itself, or its sub-directories for a sweep."""
    found = []
    for d in dirs:
        if not d.is_dir():
            raise DistclipError(f"{d} is not a directory; give run or sweep directories written by `distclip run`")
        if (d / "metrics.jsonl").exists():
            found.append(d)
        else:
            subs = sorted(p.parent for p in d.glob("*/metrics.jsonl"))
            if not subs:
                raise DistclipError(f"{d} holds no metrics.jsonl (nor do its sub-directories); is it a run directory?")
            found += subs
    return found
