"""The fixed figures of runs, sweeps and suites, composed from :mod:`distclip.plotting`'s panels (same seeds,
colours, order, log-axis and f_min rules):

- :func:`plot_runs` (Clip21 / EF21 axes): ‖∇f(x^k)‖² and f(x^k) − f_min against iterations and floats sent;
- :func:`plot_training` (CELGC axes) for networks: training loss against epochs, rounds and wall clock; the
  headline metric (test accuracy or validation perplexity), clipping frequency and ‖∇f‖² against epochs;
- :func:`plot_loss_panels`: f itself (negative objectives as they are), one panel per group;
- :func:`plot_privacy`: utility against the privacy budget ε.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib import ticker

from .errors import DistclipError
from .metrics import read_metrics
from .plotting import (
    XS,
    Series,
    axis_label,
    draw,
    log_ticks,
    natural_key,
    palette,
    plt,
    prepare,
    save,
    seeds_note,
    strip_seed,
)


def objective(doc: dict[str, Any]) -> str:
    """The objective a config minimises, as a key: its [problem] and [partition] tables (f_min is shared only
    between runs of one objective)."""
    return json.dumps({s: doc.get(s, {}) for s in ("problem", "partition")}, sort_keys=True, default=str)


def load_series(dirs: Sequence[Path], runs: Sequence[Path]) -> list[Series]:
    """Series of the run directories ``runs`` found under the arguments ``dirs`` (see :func:`label_series`);
    a run's legend names its folder too when several folders are given and one of them is a sweep."""
    sweeps = {d.resolve() for d in dirs if not (d / "metrics.jsonl").exists()}
    name_folder = len(dirs) > 1 and bool(sweeps)
    entries = []
    for run in runs:
        summary_path, config_path = run / "summary.json", run / "config.toml"
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
        doc = tomllib.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
        folder = run.parent if run.parent.resolve() in sweeps else run
        label = summary.get("label", run.name)
        entries.append((str(folder), f"{folder.name}: {label}" if name_folder else label, doc,
                        read_metrics(run / "metrics.jsonl")))
    return label_series(entries)


def label_series(entries: Sequence[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]) -> list[Series]:
    """Series of (folder, label, config document, rows): a run whose folder holds runs that differ from it
    only in ``seed`` loses the ``seed=K`` of its label, so that they are drawn as one mean with a band."""
    seeds: dict[tuple[str, str], set[Any]] = {}
    for folder, _, doc, _ in entries:
        seeds.setdefault((folder, _without_seed(doc)), set()).add(doc.get("seed"))
    return [Series(strip_seed(label, doc.get("seed")) if len(seeds[folder, _without_seed(doc)]) > 1 else label,
                   rows, objective(doc)) for folder, label, doc, rows in entries]


def series_of(results: Sequence[Any]) -> list[Series]:
    """Series of in-memory run results (``label``, ``metrics``, ``config.raw``), as :func:`label_series`."""
    return label_series([("", r.label, r.config.raw, r.metrics) for r in results])


def _without_seed(doc: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in doc.items() if k != "seed"}, sort_keys=True, default=str)


def _grid(series: Sequence[Series], panels: list[tuple[str, str]], shape: tuple[int, int], out: Path, title: str,
          colours: dict[str, Any] | None) -> Path:
    curves = prepare(series)
    colours = colours or palette(c.label for c in curves)
    rows, cols = shape
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 2.6, 3.8 * rows), constrained_layout=True,
                             squeeze=False)
    flat = list(axes.flat)
    for ax, (x, metric) in zip(flat, panels, strict=True):
        xkey, xlabel = XS[x]
        if not any(xkey in r for c in curves for r in c.mean):
            xkey, xlabel = XS["steps"]  # runs logged without epochs
        note = draw(ax, curves, xkey, metric, colours)
        ax.set_xlabel(xlabel + (" (log)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel(axis_label(metric, curves) + (note or ""))
    return save(fig, flat, title, out, seeds_note(curves))


def plot_runs(series: Sequence[Series], out: Path, title: str = "", colours: dict[str, Any] | None = None) -> Path:
    """‖∇f(x^k)‖² and f(x^k) − f_min against iterations and against floats sent per client."""
    panels = [("steps", "grad_norm_sq"), ("floats", "grad_norm_sq"), ("steps", "gap"), ("floats", "gap")]
    return _grid(series, panels, (2, 2), out, title, colours)


def plot_training(series: Sequence[Series], out: Path, title: str = "", colours: dict[str, Any] | None = None) -> Path:
    """Network training panels (CELGC Figs. 1-5 axes): training loss against epochs, communication rounds and
    wall clock; the headline metric, clipping frequency and ‖∇f‖² against epochs."""
    headline = "valid_ppl" if any("valid_ppl" in r for s in series for r in s.rows) else "test_acc"
    panels = [("epochs", "loss"), ("rounds", "loss"), ("wall", "loss"),
              ("epochs", headline), ("epochs", "clip_frac_mean"), ("epochs", "grad_norm_sq")]
    return _grid(series, panels, (2, 3), out, title, colours)


def plot_loss_panels(groups: dict[str, Sequence[Series]], out: Path, title: str = "",
                     colours: dict[str, Any] | None = None) -> Path:
    """One panel per group (e.g. per heterogeneity level): the objective f(x̄) on a linear scale, so negative
    objectives (the quartic) show as they are, against iterations on a symlog axis (early phase and end)."""
    groups = {name: prepare(members) for name, members in groups.items()}
    colours = colours or palette(c.label for curves in groups.values() for c in curves)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 2.6, 3.8), constrained_layout=True,
                             squeeze=False)
    for ax, (name, curves) in zip(axes[0], sorted(groups.items(), key=lambda kv: natural_key(kv[0])), strict=True):
        draw(ax, curves, "step", "loss", colours, logx=False, logy=False, zoom=False)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title(name)
        ax.set_xlabel("iteration (symlog)")
        ax.set_ylabel("f(x̄)")
    return save(fig, list(axes[0]), title, out, seeds_note([c for curves in groups.values() for c in curves]))


def plot_privacy(curves: dict[str, list[tuple[float, float]]], reference: dict[str, float], out: Path,
                 title: str = "", metric: str = "final training loss") -> Path:
    """Utility against the privacy budget: ``metric`` against ε (log scale, ticks at the budgets run) for each
    method, with the method's non-private value as a dashed line of the same colour."""
    if not any(curves.values()):
        raise DistclipError("no private runs to plot")
    colours = palette(curves)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    budgets = sorted({e for points in curves.values() for e, _ in points})
    values = [v for points in curves.values() for _, v in points] + list(reference.values())
    for label in sorted(curves, key=natural_key):
        eps, ys = zip(*sorted(curves[label]), strict=True)
        ax.plot(eps, ys, "o-", label=label, color=colours[label]["color"])
        if label in reference:
            ax.axhline(reference[label], color=colours[label]["color"], ls="--", lw=1, label=f"{label}, no noise")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.FixedLocator(budgets))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    if min(values) > 0 and math.log10(max(values) / min(values)) > 1:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel("ε (privacy budget, δ fixed)")
    ax.set_ylabel(metric)
    ax.grid(True, which="major", alpha=0.3)
    return save(fig, [ax], title, out)
