"""clip21-logreg: Clip21-GD, EF21 and Clip-GD on a9a (N = 20, sorted, λ = 0.1, float64) vs one full gradient.

Each algorithm's iteration (``rules.step`` through the engine's context) is timed against one
evaluation of ∇f on all the data (``problem.grad``), interleaved in this process. Target for
Clip21-GD: iteration / gradient <= 1.5 (an iteration is one client-gradient pass plus the clipping
and averaging of N vectors of dimension d = 123).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..algorithms import ALGORITHMS
from ..config import from_dict
from ..engine.transport import InProcess
from ..runner import build_context, build_problem
from .common import Result, Target, measure, median

NAME = "clip21-logreg"
TITLE = "time per iteration on a9a logistic regression (N = 20, float64) vs one full-data gradient"
ALGOS: dict[str, dict[str, Any]] = {
    "clip21": {"name": "clip21", "lr": "1/L", "tau": 0.01},
    "ef21": {"name": "ef21", "lr": "1/L", "compressor": "top-k", "k": 10},
    "clip-gd": {"name": "clip-gd", "lr": "1/L", "tau": 0.01},
}


def stepper(algorithm: dict[str, Any], dataset: str) -> tuple[Any, Any]:
    """One iteration of ``algorithm`` as a no-argument function, and the problem."""
    cfg = from_dict({
        "problem": {"kind": "logreg", "dataset": dataset, "lambda": 0.1},
        "partition": {"clients": 20, "scheme": "sorted"},
        "algorithm": algorithm,
        "run": {"dtype": "float64"},
    })
    problem = build_problem(cfg)
    ctx, _ = build_context(cfg, problem, InProcess(problem.n_clients))
    rules = ALGORITHMS[algorithm["name"]].rules
    box = {"state": rules.init(ctx)[0], "t": 0}

    def one() -> None:
        box["state"], _ = rules.step(box["state"], ctx, box["t"])
        box["t"] += 1

    return one, problem


def run(quick: bool, out: Path, repeats: int) -> Result:
    dataset = "a9a"
    fns, problem = {}, None
    for label, algo in ALGOS.items():
        fns[label], problem = stepper(algo, dataset)
    x = problem.x0()
    fns["full gradient"] = lambda: problem.grad(x)
    s = measure(fns, repeats)
    grad = median(s["full gradient"])
    rows = [{"what": label, "ms": median(v) * 1e3, "ratio to full gradient": median(v) / grad}
            for label, v in s.items()]
    res = Result(NAME, TITLE, ["what", "ms", "ratio to full gradient"], rows, raw=s,
                 params={"dataset": dataset, "clients": problem.n_clients, "rows_per_client": problem.m,
                         "dim": problem.dim, "dtype": "float64", "repeats": repeats, "algorithms": ALGOS})
    res.targets.append(Target("Clip21-GD iteration / full gradient", rows[0]["ratio to full gradient"], 1.5))
    return res
