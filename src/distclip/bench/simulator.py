"""simulator-vs-loop: one round of the vectorised simulator against per-client loops and the compute floor.

A round is one CELGC step with I = 1 (average the client models, one clipped minibatch step per
client), run through the real engine path: the problem built from a config, ``build_context`` with
the in-process transport, ``rules.step``. It is compared, in the same process and interleaved, with

(a) **loop**: N ``nn.Module`` copies, each with its own ``torch.optim.SGD``, trained one after the
    other (forward, backward, ``clip_grad_norm_``, step) and then averaged, the way the reference
    CELGC / EPISODE / FedLab code computes clients;
(b) **floor**: one forward and backward of a single ``nn.Module`` on the concatenated N×B batch
    (no optimiser, no clipping, no averaging): the arithmetic any simulator has to do.

Workloads: an MLP on MNIST (784-128-10, float32) and the celgc-ptb LSTM (width 64, BPTT 20, tied
10k-word decoder). B is minibatch rows (MLP) or BPTT windows (LSTM) per client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..algorithms import ALGORITHMS
from ..config import from_dict
from ..engine.transport import InProcess
from ..runner import build_context, build_problem
from .common import Result, Target, figure, log_axes, measure, median, save

NAME = "simulator-vs-loop"
TITLE = "one round: vectorised simulator vs per-client nn.Module loop vs compute floor"
LR, GAMMA = 0.1, 0.3  # CELGC step size and maximal step length (clip threshold γ/η = 3)
MLP_HIDDEN = 128
LSTM_WIDTH, LSTM_BPTT = 64, 20


@dataclass
class Workload:
    """The three contenders for one (model, N, B): each a no-argument function running one round."""

    sim: Callable[[], Any]
    loop: Callable[[], Any]
    floor: Callable[[], Any]
    dim: int


def problem_config(kind: str, n: int, batch: int) -> dict[str, Any]:
    problem = ({"kind": "mlp", "dataset": "mnist", "hidden": [MLP_HIDDEN]} if kind == "mlp" else
               {"kind": "lstm", "dataset": "ptb", "hidden": [LSTM_WIDTH], "bptt": LSTM_BPTT})
    return {
        "problem": problem, "partition": {"clients": n} | ({"scheme": "iid"} if kind == "mlp" else {}),
        "algorithm": {"name": "celgc", "lr": LR, "gamma": GAMMA, "local_steps": 1},
        "run": {"batch_size": batch, "dtype": "float32"},
    }


def simulator_round(kind: str, n: int, batch: int) -> tuple[Callable[[], Any], Any]:
    """One CELGC round through the engine (config -> problem -> context -> rules.step), and the problem."""
    cfg = from_dict(problem_config(kind, n, batch))
    problem = build_problem(cfg)
    return engine_round(cfg, problem), problem


def engine_round(cfg: Any, problem: Any) -> Callable[[], None]:
    """One CELGC step of ``problem`` through ``build_context`` and ``rules.step``, advancing its state each call."""
    ctx, _ = build_context(cfg, problem, InProcess(problem.n_clients))
    rules = ALGORITHMS["celgc"].rules
    box = {"state": rules.init(ctx)[0], "t": 0}

    def one() -> None:
        box["state"], _ = rules.step(box["state"], ctx, box["t"])
        box["t"] += 1

    return one


class TiedLSTM(nn.Module):
    """The LSTM language model as one ``nn.Module`` (embedding, nn.LSTM, decoder tied to the embedding)."""

    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.dec_b = nn.Parameter(torch.zeros(vocab))

    def forward(self, tokens: Tensor) -> Tensor:
        h, _ = self.lstm(self.emb(tokens))
        return F.linear(h, self.emb.weight, self.dec_b)


def _module(kind: str, problem: Any) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(problem.X.shape[2:].numel(), MLP_HIDDEN), nn.ReLU(),
                             nn.Linear(MLP_HIDDEN, problem.model.shapes["b1"][0]))
    return TiedLSTM(len(problem.corpus.vocab), LSTM_WIDTH)


def _rows(kind: str, problem: Any, client: int) -> tuple[Tensor, Tensor]:
    """Client ``client``'s inputs and targets (images and labels, or BPTT windows shifted by one)."""
    if kind == "mlp":
        return problem.X[client], problem.Y[client]
    w = problem.W[client]
    return w[:, :-1], w[:, 1:]


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    out = model(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def loop_round(kind: str, problem: Any, n: int, batch: int) -> Callable[[], None]:
    """Baseline (a): N module copies with their own optimisers, one after the other, then averaged."""
    models = [_module(kind, problem) for _ in range(n)]
    opts = [torch.optim.SGD(m.parameters(), lr=LR) for m in models]
    data = [_rows(kind, problem, i) for i in range(n)]
    rows = len(data[0][0])

    def one() -> None:
        with torch.no_grad():
            mean = [torch.stack(ps).mean(0) for ps in zip(*(m.parameters() for m in models), strict=True)]
            for m in models:
                for p, q in zip(m.parameters(), mean, strict=True):
                    p.copy_(q)
        for m, opt, (x, y) in zip(models, opts, data, strict=True):
            idx = torch.randint(rows, (batch,))
            opt.zero_grad(set_to_none=True)
            _loss(m, x[idx], y[idx]).backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), GAMMA / LR)
            opt.step()

    return one


def floor_round(kind: str, problem: Any, n: int, batch: int) -> Callable[[], None]:
    """Baseline (b): forward and backward of one module on the N×B batch concatenated."""
    model = _module(kind, problem)
    gen = torch.Generator().manual_seed(0)
    parts = [_rows(kind, problem, i) for i in range(n)]
    idx = [torch.randint(len(x), (batch,), generator=gen) for x, _ in parts]
    x = torch.cat([xs[i] for (xs, _), i in zip(parts, idx, strict=True)])
    y = torch.cat([ys[i] for (_, ys), i in zip(parts, idx, strict=True)])

    def one() -> None:
        model.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()

    return one


def workload(kind: str, n: int, batch: int) -> Workload:
    sim, problem = simulator_round(kind, n, batch)
    return Workload(sim, loop_round(kind, problem, n, batch), floor_round(kind, problem, n, batch), problem.dim)


def cases(quick: bool) -> list[tuple[str, int, int]]:
    if quick:
        return [("mlp", 4, 32), ("mlp", 16, 32), ("mlp", 16, 128), ("lstm", 4, 8)]
    # LSTM N = 64 is left out: its N·B·T = 41k tokens of 10k-word logits need about 5 GB per contender
    return [("mlp", n, 32) for n in (4, 16, 64)] + [("mlp", 16, 128)] + [("lstm", n, 32) for n in (4, 16)]


def run(quick: bool, out: Path, repeats: int) -> Result:
    rows, raw = [], {}
    for kind, n, batch in cases(quick):
        w = workload(kind, n, batch)
        s = measure({"sim": w.sim, "loop": w.loop, "floor": w.floor}, repeats)
        sim, loop, floor = median(s["sim"]), median(s["loop"]), median(s["floor"])
        rows.append({"model": kind, "N": n, "B": batch, "d": w.dim, "simulator ms": sim * 1e3,
                     "loop ms": loop * 1e3, "floor ms": floor * 1e3, "simulator / floor": sim / floor,
                     "loop / simulator": loop / sim})
        raw[f"{kind}-N{n}-B{batch}"] = s
        del w
    res = Result(NAME, TITLE, ["model", "N", "B", "d", "simulator ms", "loop ms", "floor ms", "simulator / floor",
                               "loop / simulator"], rows, raw=raw,
                 params={"repeats": repeats, "algorithm": "celgc I=1", "mlp_hidden": MLP_HIDDEN,
                         "lstm_width": LSTM_WIDTH, "lstm_bptt": LSTM_BPTT, "dtype": "float32"})
    at = {(r["model"], r["N"], r["B"]): r for r in rows}
    if ("mlp", 16, 128) in at:
        res.targets.append(Target("MLP N=16 B=128: simulator / floor", at["mlp", 16, 128]["simulator / floor"], 1.2))
    if ("mlp", 16, 32) in at:
        r = at["mlp", 16, 32]
        res.targets += [Target("MLP N=16 B=32: simulator / floor", r["simulator / floor"], 2.0),
                        Target("MLP N=16 B=32: loop / simulator", r["loop / simulator"], 3.0, at_least=True)]
    if ("lstm", 16, 32) in at:
        res.targets.append(Target("LSTM N=16 B=32: simulator / floor", at["lstm", 16, 32]["simulator / floor"], 1.1))
    res.figures += draw({"rows": rows, "params": {**res.params, "quick": quick}}, out)
    return res


def draw(doc: dict[str, Any], out: Path) -> list[str]:
    """The figure from the benchmark's JSON (``rows``, ``params``): ms per round against N, MLP and LSTM."""
    rows, quick = doc["rows"], doc["params"].get("quick", False)
    fig, axes = figure(1, 2, (6.4, 4.4))
    for ax, kind in zip(axes, ("mlp", "lstm"), strict=True):
        batch = 32 if not quick or kind == "mlp" else 8
        pts = [r for r in rows if r["model"] == kind and r["B"] == batch]
        for key, label in (("simulator ms", "simulator (all clients vectorised)"),
                           ("loop ms", "loop of per-client nn.Modules"), ("floor ms", "floor: one model, N·B rows")):
            ax.plot([r["N"] for r in pts], [r[key] for r in pts], "o-", label=label)
        log_axes(ax, [r["N"] for r in pts])
        ax.set(xlabel="clients N", ylabel="ms per round (median)", title=f"{kind.upper()}, B = {batch} rows per client")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if any(r["floor ms"] > r["loop ms"] for r in rows if r["model"] == "lstm"):
        axes[1].text(0.98, 0.03, "floor above the loop: the floor's one (N·B·20) x 10,000 logit matrix\n"
                     "leaves the cache, the loop's per-client ones do not (docs/performance.md)",
                     transform=axes[1].transAxes, fontsize=7.5, va="bottom", ha="right")
    fig.suptitle("One CELGC round (I = 1): vectorised simulator vs per-client loop vs compute floor")
    return [save(fig, out / f"{NAME}.png")]
