"""torch-kind: one round of the user's own nn.Module (problem kind ``torch``, vmap path) against the built-in
stacked MLP and a per-client loop of nn.Module copies, side by side in one process.

A round is one CELGC step with I = 1 through the engine (config -> problem -> context -> ``rules.step``) on the
MLP 784-128-10 over the bundled MNIST images, float32. The ``torch`` contender is the same architecture given as
``nn.Sequential`` (``torch.func.vmap`` of ``grad`` over the stacked client parameters); the built-in one is
``problem.kind = "mlp"``; the loop is the simulator-vs-loop benchmark's (N copies, each with its own
``torch.optim.SGD``, one after the other, then averaged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import from_dict
from ..data.images import load_images
from ..runner import build_problem
from .common import Result, Target, figure, measure, median, save
from .simulator import GAMMA, LR, MLP_HIDDEN, engine_round, loop_round, simulator_round

NAME = "torch-kind"
TITLE = "one round: your own nn.Module (torch kind, vmap) vs the built-in stacked MLP vs a per-client loop"


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, 10))


def _mnist() -> torch.utils.data.Dataset:
    images = load_images("mnist", None)
    x = torch.from_numpy(images.x)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return torch.utils.data.TensorDataset(x, torch.from_numpy(images.labels))


def torch_round(n: int, batch: int) -> tuple[Any, str]:
    """One CELGC round of the torch kind, and the path it took (vmap)."""
    cfg = from_dict({"problem": {"kind": "torch", "vectorise": "vmap"}, "partition": {"clients": n, "scheme": "iid"},
                     "algorithm": {"name": "celgc", "lr": LR, "gamma": GAMMA, "local_steps": 1},
                     "run": {"batch_size": batch, "dtype": "float32"}})
    problem = build_problem(cfg, objects={"model": _mlp, "data": _mnist()})
    return engine_round(cfg, problem), problem.path


def run(quick: bool, out: Path, repeats: int) -> Result:
    rows, raw = [], {}
    for n, batch in ([(4, 32), (16, 32)] if quick else [(16, 32), (16, 128)]):
        builtin, problem = simulator_round("mlp", n, batch)
        mine, path = torch_round(n, batch)
        s = measure({"torch": mine, "builtin": builtin, "loop": loop_round("mlp", problem, n, batch)}, repeats)
        t, b, lp = median(s["torch"]), median(s["builtin"]), median(s["loop"])
        rows.append({"N": n, "B": batch, "path": path, "torch ms": t * 1e3, "built-in ms": b * 1e3,
                     "loop ms": lp * 1e3, "torch / built-in": t / b, "loop / torch": lp / t})
        raw[f"N{n}-B{batch}"] = s
    res = Result(NAME, TITLE, ["N", "B", "path", "torch ms", "built-in ms", "loop ms", "torch / built-in",
                               "loop / torch"], rows, raw=raw,
                 params={"repeats": repeats, "algorithm": "celgc I=1", "model": f"MLP 784-{MLP_HIDDEN}-10",
                         "dtype": "float32"})
    for r in rows:
        res.targets.append(Target(f"N={r['N']} B={r['B']}: torch / built-in", r["torch / built-in"], 1.3))
        if r["B"] == 32:
            res.targets.append(Target(f"N={r['N']} B=32: loop / torch", r["loop / torch"], 2.0, at_least=True))
    res.figures += draw({"rows": rows}, out)
    return res


def draw(doc: dict[str, Any], out: Path) -> list[str]:
    """The figure from the benchmark's JSON: ms per round of the three contenders at each (N, B)."""
    rows = doc["rows"]
    fig, ax = figure(1, 1, (6.5, 4.0))
    labels = [f"N={r['N']}, B={r['B']}" for r in rows]
    width = 0.27
    for i, key in enumerate(("torch ms", "built-in ms", "loop ms")):
        ax.bar([j + (i - 1) * width for j in range(len(rows))], [r[key] for r in rows], width,
               label=key.replace(" ms", ""))
    ax.set_xticks(range(len(rows)), labels)
    ax.set(ylabel="ms per round (median)", title="CELGC round, MLP on MNIST: torch kind vs built-in vs loop")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return [save(fig, out / f"{NAME}.png")]
