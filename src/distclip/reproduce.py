"""``distclip reproduce NAME``: run every setting of a paper figure, then write figures and a report.

A suite is a ``[[sweep]]`` config shipped in ``distclip/suites/NAME.toml``, the overrides that make
its ``--quick`` version, and the paper's claims checked against the numbers the runs produced. The
report (``report.md``) gives the command, the machine, the results table, the figures and, for each
claim, whether it was reproduced and the numbers that say so.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

from .config import load
from .data.cifar10 import DOWNLOAD, FOLDER
from .errors import DistclipError
from .plotting import plot_loss_panels, plot_privacy, plot_runs, plot_training
from .report import format_table, grid_groups
from .runner import RunResult, run_sweep
from .version import __version__


@dataclass(frozen=True)
class Claim:
    text: str
    holds: bool
    evidence: str


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    quick: tuple[str, ...]  # --set overrides of the quick version
    claims: Callable[[dict[str, RunResult]], list[Claim]]
    training: bool = False  # network suite: plot training curves instead of ‖∇f‖² and f − f_min
    table: Callable[[dict[str, RunResult]], list[str]] | None = None  # extra report section (markdown lines)
    loss_panels: bool = False  # also plot f against rounds, one panel per grid value
    needs_path: str = ""  # what problem.path must point to, for data that is not bundled
    needs: str = ""  # what the full version needs (hardware, time), stated in the report
    figures: Callable[[list[RunResult], Path], list[Path]] | None = None  # suite-specific extra figures


def _x(result: RunResult, step: int) -> float:
    """|x^k| on the toy, where f'(x) = x, so ‖∇f(x^k)‖² = x² (nan when step k was not run)."""
    row = next((r for r in result.metrics if r["step"] == step), None)
    return math.nan if row is None else math.sqrt(row["grad_norm_sq"])


def _toy_claims(r: dict[str, RunResult]) -> list[Claim]:
    steps = r["clip-gd"].metrics[-1]["step"]
    stuck = all(m["grad_norm_sq"] == 1.0 for m in r["clip-gd"].metrics)
    out = [Claim(f"Clip-GD never moves from x = 1 although f'(1) = 1 (k ≤ {steps})", stuck,
                 f"x^{steps} = {float(r['clip-gd'].model[0]):.17g}")]
    for init in ("clip_grad", "zero"):
        run = r[f"clip21-init={init}"]
        x20, x50 = _x(run, 20), _x(run, 50)
        out.append(Claim(f"Clip21 ({init} init) converges to 0 at the GD rate: |x^20| < 2e-5, |x^50| < 1e-12, "
                         "no clipping after k = 5", x20 < 2e-5 and x50 < 1e-12 and run.summary["last_clip_step"] <= 5,
                         f"|x^20| = {x20:.2g}, |x^50| = {x50:.2g}, last clipped step {run.summary['last_clip_step']}"))
    per = float(r["clip-gd-per-client-tau"].model[0])
    out.append(Claim("Clip-GD with per-client τ = (1, 2) converges to the wrong point x = −2", abs(per + 2) < 1e-10,
                     f"x^{steps} = {per:.12g}"))
    soft = _x(r["clip-gd-soft"], 200)
    out.append(Claim("soft clipping reaches 0, slowly (|x^200| ≈ 1.7e-3)", abs(soft - 1.7e-3) < 1e-4,
                     f"|x^200| = {soft:.3g}"))
    server = _x(r["clip-gd-server"], 10)
    out.append(Claim("clipping on the server after averaging converges (|x^10| ≈ 9.8e-4)",
                     abs(server - 9.8e-4) < 1e-5, f"|x^10| = {server:.3g}"))
    return out


def _logreg_claims(r: dict[str, RunResult]) -> list[Claim]:
    out = []
    taus = sorted({float(k.split("=")[1]) for k in r if k.startswith("clip21-tau=")}, reverse=True)
    for tau in taus:
        c21, cgd = r[f"clip21-tau={tau}"], r[f"clip-gd-tau={tau}"]
        a, b = c21.metrics[-1]["grad_norm_sq"], cgd.metrics[-1]["grad_norm_sq"]
        k = c21.metrics[-1]["step"]
        out.append(Claim(f"τ = {tau:g}: Clip21 reaches ‖∇f‖² < 1e-12 where Clip-GD stalls above 1e-2 (k = {k})",
                         a < 1e-12 and b > 1e-2, f"Clip21 {a:.2g}, Clip-GD {b:.2g}"))
        last = c21.summary["last_clip_step"]
        after = [m["clip_frac"] for m in c21.metrics if m["step"] > last]
        out.append(Claim(f"τ = {tau:g}: Clip21's clipping switches off for good after finitely many steps",
                         0 <= last < k and all(f == 0 for f in after), f"last clipped step {last} of {k}"))
    lasts = [r[f"clip21-tau={t}"].summary["last_clip_step"] for t in taus]
    out.append(Claim("the smaller τ, the later clipping switches off", lasts == sorted(lasts),
                     ", ".join(f"τ = {t:g}: {s}" for t, s in zip(taus, lasts, strict=True))))
    gd = r["gd"].metrics[-1]["grad_norm_sq"]
    ef = r["ef21-top12"]
    out.append(Claim("EF21 (Top-12 of 123) converges like GD with ~10x fewer floats sent",
                     ef.metrics[-1]["grad_norm_sq"] < 1e-12 and gd < 1e-12,
                     f"EF21 {ef.metrics[-1]['grad_norm_sq']:.2g} with {ef.metrics[-1]['floats_up']} floats, "
                     f"GD {gd:.2g} with {r['gd'].metrics[-1]['floats_up']}"))
    return out


def _rounds_to(result: RunResult, target: float) -> int | None:
    """Communication rounds at the first logged step whose training loss is <= target."""
    return next((m["comm_rounds"] for m in result.metrics if m["loss"] <= target), None)


def _celgc_claims(r: dict[str, RunResult]) -> list[Claim]:
    base = r["naive-parallel-clip"]
    celgc = {int(k.split("=")[1]): v for k, v in r.items() if k.startswith("celgc-I=")}
    top = max(celgc)
    b_loss, t_loss = base.metrics[-1]["loss"], celgc[top].metrics[-1]["loss"]
    steps = base.metrics[-1]["step"]
    target = 1.1 * b_loss
    reach = {i: _rounds_to(res, target) for i, res in sorted(celgc.items())}
    base_rounds = _rounds_to(base, target)
    lm = "valid_ppl" in base.metrics[-1]
    quality = "valid_ppl" if lm else "test_acc"
    accs = {i: res.metrics[-1][quality] for i, res in sorted(celgc.items())}
    b_q = base.metrics[-1][quality]
    close = (lambda q: q <= 1.1 * b_q) if lm else (lambda q: q >= b_q - 0.02)
    freq = {label: sum(m["clip_frac_mean"] for m in res.metrics[1:]) / max(1, len(res.metrics) - 1)
            for label, res in r.items()}
    return [
        Claim(f"per iteration CELGC with I = {top} matches the naive parallel baseline: final training loss "
              f"within 15% after {steps} steps (Fig. 1, 4)", t_loss <= 1.15 * b_loss,
              f"I = {top}: {t_loss:.4f}, baseline: {b_loss:.4f}"),
        Claim(f"larger I reaches the same loss with far fewer communication rounds: I = {top} needs at least 4x "
              f"fewer rounds than the baseline to reach 1.1 x its final loss ({target:.4f})",
              reach[top] is not None and bool(base_rounds) and 4 * reach[top] <= base_rounds,
              f"rounds: baseline {base_rounds}, " + ", ".join(f"I = {i}: {n}" for i, n in reach.items())),
        Claim("larger I does not hurt generalisation: every I within "
              + ("10% of the baseline's validation perplexity" if lm else "2 points of the baseline's test accuracy"),
              all(close(q) for q in accs.values()),
              f"{quality}: baseline {b_q:.4g}, " + ", ".join(f"I = {i}: {q:.4g}" for i, q in accs.items())),
        Claim("clipping triggers at least as often with local norms (CELGC, I = 1) as with the averaged "
              "gradient's norm (baseline) (Fig. 5)", freq["celgc-I=1"] >= freq["naive-parallel-clip"],
              f"mean clipping frequency: CELGC I = 1 {freq['celgc-I=1']:.3f}, "
              f"baseline {freq['naive-parallel-clip']:.3f}"),
    ]


def _clip21_sgd_claims(r: dict[str, RunResult]) -> list[Claim]:
    c21, cs, sgd = (r[k].metrics[-1] for k in ("clip21-sgd", "clip-sgd", "sgd"))
    return [
        Claim(f"with the same τ and step, Clip21-SGD trains where Clip-SGD barely moves on heterogeneous shards "
              f"(training loss at least halved relative to Clip-SGD after {c21['step']} steps)",
              c21["loss"] <= 0.5 * cs["loss"],
              f"Clip21-SGD {c21['loss']:.4f}, Clip-SGD {cs['loss']:.4f}, SGD {sgd['loss']:.4f}"),
        Claim("Clip21-SGD's test accuracy is at least 10 points above Clip-SGD's",
              c21["test_acc"] >= cs["test_acc"] + 0.10,
              f"Clip21-SGD {c21['test_acc']:.4f}, Clip-SGD {cs['test_acc']:.4f}, SGD {sgd['test_acc']:.4f}"),
    ]


def _clip_frequency(result: RunResult) -> float:
    """Fraction of (client, step) pairs clipped over the run (each log's clip_frac_mean weighted by its steps)."""
    rows = result.metrics
    steps = rows[-1]["step"]
    covered = sum(b["clip_frac_mean"] * (b["step"] - a["step"]) for a, b in zip(rows, rows[1:], strict=False))
    return covered / steps if steps else 0.0


# experiments.md §8 target 9 (reference simulation): final f per method and H, as a range
_TARGET9_F = {("celgc", 0.0): (-6.318, -6.318), ("celgc", 1.0): (-8.86, -8.86), ("celgc", 2.0): (-11.66, -11.66),
              ("celgc", 4.0): (-11.6, -11.5), ("episode", 0.0): (-6.318, -6.318), ("episode", 1.0): (-8.86, -8.86),
              ("episode", 2.0): (-11.66, -11.66), ("episode", 4.0): (-17.95, -17.95)}
# the whole row as printed there: CELGC f, |f'|, clip frequency; EPISODE f, |f'|, clip frequency
_TARGET9_ROW = {0.0: ("−6.318", "≈ 0.08", "≈ 0.003", "−6.318", "≈ 0.08", "< 0.01"),
                1.0: ("−8.86", "0.26", "0.29", "−8.86", "≈ 0.11", "< 0.01"),
                2.0: ("−11.66", "0.33", "0.98", "−11.66", "0.10–0.13", "< 0.01"),
                4.0: ("−11.5 to −11.6", "≈ 12", "0.96", "−17.95", "0.14–0.21", "< 0.01")}


def _quartic_stats(r: dict[str, RunResult]) -> dict[tuple[str, float], tuple[float, float, float, int]]:
    """(method, H) -> mean over seeds of final f, final |f'|, clip frequency; and the number of seeds."""
    out = {}
    for label, res in r.items():
        if "seed=" in label:
            continue
        name, _, h = label.partition("-H=")
        seeds = [v for k, v in r.items() if k.startswith(f"{label}-seed=")] or [res]
        stats = [(s.metrics[-1]["loss"], math.sqrt(s.metrics[-1]["grad_norm_sq"]), _clip_frequency(s)) for s in seeds]
        out[name, float(h)] = (*(sum(col) / len(col) for col in zip(*stats, strict=True)), len(seeds))
    return out


def _quartic_claims(r: dict[str, RunResult]) -> list[Claim]:
    st = _quartic_stats(r)
    hs = sorted(h for name, h in st if name == "celgc")
    n = st["episode", hs[0]][3]
    out = []
    for h in (h for h in hs if h >= 1):
        c, e = st["celgc", h], st["episode", h]
        out.append(Claim(f"H = {h:g}: EPISODE ends nearer a stationary point than CELGC (final |f'|, mean of {n} "
                         "seeds)", e[1] < c[1], f"EPISODE {e[1]:.3f}, CELGC {c[1]:.3f}"))
    if 4.0 in hs:
        c, e = st["celgc", 4.0], st["episode", 4.0]
        out.append(Claim("H = 4: EPISODE reaches a clearly lower objective (by more than 1)", e[0] < c[0] - 1,
                         f"EPISODE f = {e[0]:.3f}, CELGC f = {c[0]:.3f}"))
    if 0.0 in hs:
        c, e = st["celgc", 0.0], st["episode", 0.0]
        out.append(Claim("H = 0 (identical clients): both reach the same f (within 0.01)", abs(e[0] - c[0]) < 0.01,
                         f"EPISODE {e[0]:.4f}, CELGC {c[0]:.4f}"))
    freq = {h: st["episode", h][2] for h in hs}
    out.append(Claim("EPISODE clips in fewer than 1% of its rounds at every H", max(freq.values()) < 0.01,
                     ", ".join(f"H = {h:g}: {f:.4f}" for h, f in freq.items())))
    off = {k: min(abs(st[k][0] - lo), abs(st[k][0] - hi)) if not lo <= st[k][0] <= hi else 0.0
           for k, (lo, hi) in _TARGET9_F.items() if k in st}
    out.append(Claim("final f within 0.1 of the reference simulation (experiments.md §8 target 9) for every method "
                     "and H", bool(off) and max(off.values()) <= 0.1,
                     f"largest distance {max(off.values(), default=math.nan):.3f}"))
    return out


def _quartic_table(r: dict[str, RunResult]) -> list[str]:
    st = _quartic_stats(r)
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


def _hetero_claims(r: dict[str, RunResult]) -> list[Claim]:
    ce, ep, nv = (r[k].metrics[-1] for k in ("celgc", "episode", "naive-parallel-clip"))
    s = r["episode"].config.partition.similarity
    fc, fe = _clip_frequency(r["celgc"]), _clip_frequency(r["episode"])
    return [
        Claim(f"with similarity s = {s:g} (H = {1 - s:g}) EPISODE's final training loss is at most CELGC's "
              f"(same I, η, γ; {ep['step']} steps)", ep["loss"] <= ce["loss"],
              f"EPISODE {ep['loss']:.4f}, CELGC {ce['loss']:.4f}, naive parallel clip {nv['loss']:.4f}"),
        Claim("EPISODE's final ‖∇f‖² is at most CELGC's", ep["grad_norm_sq"] <= ce["grad_norm_sq"],
              f"EPISODE {ep['grad_norm_sq']:.3g}, CELGC {ce['grad_norm_sq']:.3g}, "
              f"naive parallel clip {nv['grad_norm_sq']:.3g}"),
        Claim("EPISODE's test accuracy is at least CELGC's", ep["test_acc"] >= ce["test_acc"],
              f"EPISODE {ep['test_acc']:.4f}, CELGC {ce['test_acc']:.4f}, naive parallel clip {nv['test_acc']:.4f}"),
        Claim("EPISODE (one decision per round on the averaged resampled gradient) clips less often than CELGC "
              "(local norms)", fe <= fc, f"clip frequency: EPISODE {fe:.3f}, CELGC {fc:.3f}"),
    ]

#: --quick of the language-model suites: the CPU stand-in for the full AWD-LSTM (a 1-layer LSTM of width 64)
_SMALL_LSTM = ("run.steps=300", "problem.model=small", "problem.hidden=[64]", "problem.bptt=20",
               "problem.rotate=false", "algorithm.lr=20.0", "run.batch_size=8", "run.log_every=100", "run.device=cpu")
_AWD_NEEDS = (
    "The full version (3-layer AWD-LSTM, 8 clients, {steps} steps per run, 6 runs) needs a CUDA GPU. Estimates, "
    "not measurements of full runs: one step of all 8 clients took {cpu} on one (shared) CPU thread here "
    "(`benchmarks/awd_lstm_step.py`), i.e. ~{hours} h per run on a CPU. On one H100-class GPU the 70-step "
    "recurrence is bound by kernel launches (~6,000 per step, 30-60 ms), i.e. about 1 to 2.5 h per run and "
    "half a day for the suite (8 clients batched on one GPU; the paper used one V100 per client)."
)

_DP_METHODS = {"clip-sgd": "Clip-SGD", "clip21-sgd": "Clip21-SGD", "clip21-sgd2m": "Clip21-SGD2M"}


def _dp_runs(r: dict[str, RunResult]) -> dict[str, dict[float, RunResult]]:
    """method -> {ε target: run}, the non-private run under ε = inf."""
    out: dict[str, dict[float, RunResult]] = {m: {} for m in _DP_METHODS}
    for label, res in r.items():
        method, _, tail = label.rpartition("-eps=")
        if method in out:
            out[method][float(tail)] = res
        elif label.endswith("-nonprivate") and label.removesuffix("-nonprivate") in out:
            out[label.removesuffix("-nonprivate")][math.inf] = res
    return out


def _dp_claims(r: dict[str, RunResult]) -> list[Claim]:
    runs = _dp_runs(r)
    loss = {m: {e: res.metrics[-1]["loss"] for e, res in by.items()} for m, by in runs.items()}
    budgets = sorted(e for e in runs["clip-sgd"] if e < math.inf)
    top = budgets[-1]
    spent = {(m, e): res.metrics[-1]["epsilon"] for m, by in runs.items() for e, res in by.items() if e < math.inf}
    z = {m: by[top].summary["privacy"]["noise_multiplier"] for m, by in runs.items()}
    out = [Claim("every private run spends its budget: final ε within 1% below the target (noise calibrated by "
                 "Opacus' accountant)", all(0.99 * e <= got <= e for (_, e), got in spent.items()),
                 ", ".join(f"{m} ε={e:g}: {got:.3f}" for (m, e), got in spent.items()))]
    for m, name in _DP_METHODS.items():
        ordered = [loss[m][e] for e in budgets]
        out.append(Claim(f"{name}: the smaller the budget, the worse the utility (final loss falls as ε grows "
                         f"through {', '.join(f'{e:g}' for e in budgets)})", ordered == sorted(ordered, reverse=True),
                         ", ".join(f"ε={e:g}: {v:.4f}" for e, v in sorted(loss[m].items()))))
    sgd2m, clip, c21 = loss["clip21-sgd2m"][top], loss["clip-sgd"][top], loss["clip21-sgd"][top]
    clip0, c210 = loss["clip-sgd"][math.inf], loss["clip21-sgd"][math.inf]
    noise = ", ".join(f"{m} {v:.2f}" for m, v in z.items())
    out.append(Claim(f"under the same budget (ε = {top:g}) Clip21-SGD2M reaches a lower training loss than Clip-SGD "
                     "and Clip21-SGD (the paper's DP claim)", sgd2m < min(clip, c21),
                     f"Clip21-SGD2M {sgd2m:.4f}, Clip-SGD {clip:.4f}, Clip21-SGD {c21:.4f}; noise multipliers {noise}"))
    out.append(Claim(f"undamped error feedback accumulates the noise: Clip21-SGD (β2 = 1) beats Clip-SGD without noise "
                     f"but not at ε = {top:g}", c210 < clip0 and c21 > clip,
                     f"no noise: Clip21-SGD {c210:.4f}, Clip-SGD {clip0:.4f}; ε = {top:g}: {c21:.4f} vs {clip:.4f}"))
    return out


def _dp_figures(results: list[RunResult], out: Path) -> list[Path]:
    runs = _dp_runs({r.label: r for r in results})
    curves = {_DP_METHODS[m]: [(e, res.metrics[-1]["loss"]) for e, res in by.items() if e < math.inf]
              for m, by in runs.items()}
    reference = {_DP_METHODS[m]: by[math.inf].metrics[-1]["loss"] for m, by in runs.items() if math.inf in by}
    return [plot_privacy(curves, reference, out / "plots" / "utility-vs-epsilon.png",
                         "dp-clip21: final training loss against ε (local DP, δ = 1e-3)")]


SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        Suite("clip21-toy", "Clip21 Example 1.1: Clip-GD stalls, Clip21 converges; the reviewers' variants",
              ("run.steps=200",), _toy_claims),
        Suite("clip21-logreg", "Clip21-GD vs Clip-GD vs EF21 vs GD, nonconvex logistic regression on a9a",
              ("run.steps=300",), _logreg_claims),
        Suite("celgc-mnist", "CELGC with I in {1, 2, 4, 8, 16} vs naive parallel clipping, CNN on MNIST (CPU stand-in)",
              ("run.steps=400",), _celgc_claims, training=True),
        Suite("celgc-ptb", "CELGC with I in {1, 2, 4, 8, 16} vs naive parallel clipping, LSTM on Penn Treebank",
              _SMALL_LSTM, _celgc_claims, training=True, needs=_AWD_NEEDS.format(
                  steps="138,250", cpu="45 s", hours="1,700")),
        Suite("celgc-wt2", "CELGC with I in {1, 2, 4, 8, 16} vs naive parallel clipping, LSTM on WikiText-2",
              # WikiText-2's 33k-word decoder costs 3.3x PTB's per token: fewer, smaller steps keep --quick ~8 min
              (*_SMALL_LSTM, "problem.dropouth=0.0", "run.steps=200", "run.batch_size=4"), _celgc_claims,
              training=True, needs=_AWD_NEEDS.format(
                  steps="111,600", cpu="78 s", hours="2,400"),
              needs_path="a WikiText-2 folder with train/valid/test.txt(.gz), e.g. ../shared/data/wikitext2"),
        Suite("clip21-sgd-cnn", "Clip21-SGD vs Clip-SGD (and SGD) on a CNN, heterogeneous MNIST shards",
              ("run.steps=400",), _clip21_sgd_claims, training=True),
        Suite("episode-synthetic", "EPISODE vs CELGC on the synthetic quartic, H in {0, 1, 2, 4}, 5 seeds",
              (), _quartic_claims, table=_quartic_table, loss_panels=True),
        Suite("episode-hetero", "EPISODE vs CELGC vs naive parallel clipping, MLP on digits, similarity 30% (H = 0.7)",
              ("run.steps=400",), _hetero_claims, training=True),
        Suite("celgc-cifar10", "CELGC with I in {1, 2, 4, 8, 16} vs naive parallel clipping, ResNet-56 on CIFAR-10",
              ('problem.kind="resnet20"', "problem.eval_rows=1000", "run.batch_size=16", "run.steps=100",
               "run.log_every=50", "algorithm.milestones=[50, 75]"), _celgc_claims, training=True,
              needs_path=f"the {FOLDER} folder ({DOWNLOAD})",
              needs="The full version (ResNet-56, 8 clients, 15,680 steps per run, 6 runs) needs a CUDA GPU. "
                    "Estimates, not measurements of full runs: one step of all 8 clients took 26-39 s on 2 shared "
                    "CPU cores here, out of reach on CPU; about 2-3 h per run on one V100/A100-class GPU (about half "
                    "of it the per-epoch evaluation), 12-18 h for the suite."),
        Suite("dp-clip21", "Clip-SGD vs Clip21-SGD vs Clip21-SGD2M with local DP noise: utility against ε",
              ("run.steps=200", "partition.clients=500"), _dp_claims, figures=_dp_figures),
    ]
}


_SEED = re.compile(r"-?seed=\d+")


def _mean(values: list) -> object:
    if all(v == values[0] for v in values) or not all(isinstance(v, int | float) for v in values):
        return values[0]
    return sum(values) / len(values)


def average_seeds(results: list[RunResult]) -> list[RunResult]:
    """Merge runs whose labels differ only in a ``seed=K`` part: metrics averaged step by step (the
    seeds' f, ‖∇f‖², clip fractions, ...), model averaged, label without the seed. Other runs pass through."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(_SEED.sub("", r.label), []).append(r)
    out = []
    for label, members in groups.items():
        if len(members) == 1 and members[0].label == label:
            out.append(members[0])
            continue
        rows = [{k: _mean([m[k] for m in ms]) for k in ms[0]} for ms in zip(*(r.metrics for r in members), strict=True)]
        summary = {**members[0].summary, "label": label, "seeds": [r.config.seed for r in members],
                   "last_clip_step": max(r.summary.get("last_clip_step", -1) for r in members),
                   "total_s": sum(r.summary.get("total_s", 0.0) for r in members)}
        model = torch.stack([r.model for r in members]).mean(dim=0)
        out.append(RunResult(members[0].config, rows, summary, model, None, label, dict(members[0].extra)))
    return out


def suite_path(name: str) -> Path:
    if name not in SUITES:
        raise DistclipError(f"unknown suite {name!r}; available: {', '.join(SUITES)}")
    return Path(str(files("distclip") / "suites" / f"{name}.toml"))


def reproduce(name: str, out: Path, quick: bool = False, overrides: list[str] = (),
              progress: bool = False) -> tuple[list[RunResult], list[Claim], Path]:
    """Run suite ``name`` into ``out``, write figures and ``report.md``; return runs (seeds averaged, see
    :func:`average_seeds`), claims checked, report. Claims see both the single runs and the averages."""
    path = suite_path(name)
    suite = SUITES[name]
    cfg = load(path, [*(suite.quick if quick else ()), *overrides])
    if suite.needs_path and "path" not in cfg.raw.get("problem", {}):
        raise DistclipError(f"suite {name} needs its data: add --set problem.path=DIR, DIR = {suite.needs_path}")
    runs = run_sweep(cfg, out, progress=progress, on_result=lambda res: res.extra.update(sweep=cfg.sweep))
    results = average_seeds(runs)
    by_label = {r.label: r for r in runs} | {r.label: r for r in results}
    claims = suite.claims(by_label)
    draw = plot_training if suite.training else plot_runs
    figures = [draw([(r.label, r.metrics) for r in results], out / "plots" / "all.png", suite.title)]
    groups = grid_groups(results)
    if not suite.training:
        for group, members in groups.items():
            figures.append(draw([(r.label, r.metrics) for r in members], out / "plots" / f"{group}.png",
                                f"{name}: {group}"))
    if suite.loss_panels:
        figures.append(plot_loss_panels({g: [(r.label, r.metrics) for r in m] for g, m in groups.items()},
                                        out / "plots" / "loss.png", f"{name}: f(x̄) per iteration"))
    if suite.figures is not None:
        figures += suite.figures(results, out)
    command = f"distclip reproduce {name}" + (" --quick" if quick else "") + "".join(f" --set {o}" for o in overrides)
    lines = [
        f"# {name}: {suite.title}",
        "",
        f"Generated by `{command}` on {_dt.date.today().isoformat()} with distclip {__version__}, torch "
        f"{torch.__version__}, {platform.machine()} CPU x {torch.get_num_threads()} threads. Total run time "
        f"{sum(r.summary.get('total_s', 0.0) for r in runs):.1f} s.",
        "",
        *([suite.needs, ""] if suite.needs else []),
        "## Claims",
        "",
        *[f"- {'reproduced' if c.holds else '**not reproduced**'}: {c.text} — {c.evidence}" for c in claims],
        "",
        *(suite.table(by_label) if suite.table else []),
        "## Final values" + (f" (mean over seeds, {len(runs)} runs)" if len(results) < len(runs) else ""),
        "",
        "```",
        format_table(results),
        "```",
        "",
        "## Figures",
        "",
        *[f"![{f.stem}](plots/{f.name})" for f in figures],
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return results, claims, report
