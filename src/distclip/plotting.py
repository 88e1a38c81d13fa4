"""Paper-style figures from run directories, as PNG with the non-interactive Agg backend.

- :func:`plot_runs` (Clip21 / EF21 axes): log ‖∇f(x^k)‖² and f(x^k) − f_min against iterations and
  against floats sent per client, f_min being the smallest loss over all runs drawn (so the best
  run's final gap is 0 and is left out of the log scale).
- :func:`plot_training` (CELGC axes) for networks: loss against epochs, rounds and wall clock, test
  accuracy (or validation perplexity) and clipping frequency against epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .errors import DistclipError  # noqa: E402

Run = tuple[str, list[dict[str, Any]]]


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


def _save(fig: Any, legend_axis: Any, title: str, out: Path) -> Path:
    legend_axis.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_training(runs: list[Run], out: Path, title: str = "") -> Path:
    """Network training panels (CELGC Figs. 1-5 axes): training loss against epochs (steps for runs
    logged without epochs), communication rounds and wall clock; test accuracy or validation
    perplexity, clipping frequency and ‖∇f‖² against epochs."""
    runs = [(label, rows) for label, rows in runs if rows]
    if not runs:
        raise DistclipError("no logged steps to plot")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    by_epoch = all("epoch" in r for _, rows in runs for r in rows)
    x, xlabel = ("epoch", "epochs") if by_epoch else ("step", "iteration")
    lm = any("valid_ppl" in r for _, rows in runs for r in rows)
    panels = [
        (axes[0, 0], x, "loss", xlabel, "training loss", True),
        (axes[0, 1], "comm_rounds", "loss", "communication rounds (collectives)", "training loss", True),
        (axes[0, 2], "wall_s", "loss", "wall clock in algorithm steps (s)", "training loss", True),
        (axes[1, 0], x, "valid_ppl" if lm else "test_acc", xlabel,
         "validation perplexity" if lm else "test accuracy", False),
        (axes[1, 1], x, "clip_frac_mean", xlabel, "clipping frequency", False),
        (axes[1, 2], x, "grad_norm_sq", xlabel, r"$\|\nabla f\|^2$", True),
    ]
    for ax, xkey, ykey, xlabel, ylabel, log in panels:
        for label, rows in runs:
            pts = [(r[xkey], r[ykey]) for r in rows if ykey in r and (r[ykey] > 0 or not log)]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=label, linewidth=1.4)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    return _save(fig, axes[0, 0], title, out)


def plot_runs(runs: list[Run], out: Path, title: str = "") -> Path:
    """Draw the four panels for ``runs`` (label, metrics rows) into ``out`` (a .png path)."""
    runs = [(label, rows) for label, rows in runs if rows]
    if not runs:
        raise DistclipError("no logged steps to plot")
    f_min = min(r["loss"] for _, rows in runs for r in rows)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    panels = [
        (axes[0, 0], "step", "grad_norm_sq", "iteration k", r"$\|\nabla f(x^k)\|^2$"),
        (axes[0, 1], "floats_up", "grad_norm_sq", "floats sent per client", r"$\|\nabla f(x^k)\|^2$"),
        (axes[1, 0], "step", "gap", "iteration k", r"$f(x^k) - f_{\min}$"),
        (axes[1, 1], "floats_up", "gap", "floats sent per client", r"$f(x^k) - f_{\min}$"),
    ]
    for ax, xkey, ykey, xlabel, ylabel in panels:
        for label, rows in runs:
            xs, ys = [], []
            for r in rows:
                y = r["loss"] - f_min if ykey == "gap" else r[ykey]
                if y > 0:
                    xs.append(r[xkey])
                    ys.append(y)
            ax.plot(xs, ys, label=label, linewidth=1.4)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    return _save(fig, axes[0, 0], title, out)


def plot_loss_panels(groups: dict[str, list[Run]], out: Path, title: str = "") -> Path:
    """One panel per group (e.g. per heterogeneity level): the objective f(x̄) on a linear scale, so negative
    objectives (the quartic) show as they are, against iterations on a symlog axis (early phase and end)."""
    groups = {name: [(label, rows) for label, rows in runs if rows] for name, runs in groups.items()}
    if not any(groups.values()):
        raise DistclipError("no logged steps to plot")
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), constrained_layout=True, squeeze=False)
    for ax, (name, runs) in zip(axes[0], groups.items(), strict=True):
        for label, rows in runs:
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=label, linewidth=1.4)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title(name)
        ax.set_xlabel("iteration (symlog)")
        ax.set_ylabel("f")
        ax.grid(True, alpha=0.3)
    return _save(fig, axes[0, 0], title, out)


def plot_privacy(curves: dict[str, list[tuple[float, float]]], reference: dict[str, float], out: Path,
                 title: str = "", metric: str = "final training loss") -> Path:
    """Utility against the privacy budget: ``metric`` against ε (log scale) for each method, with the
    method's non-private value as a dashed line of the same colour."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for label, points in curves.items():
        eps, values = zip(*sorted(points), strict=True)
        line = ax.plot(eps, values, "o-", label=label)[0]
        if label in reference:
            ax.axhline(reference[label], color=line.get_color(), ls="--", lw=1, label=f"{label}, no noise")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ε (δ fixed)")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, ax, title, out)
