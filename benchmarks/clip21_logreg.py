"""Clip21-GD on a9a (N = 20, sorted, λ = 0.1, float64): time per iteration vs one full gradient.

Both are measured in this process on the same problem object, interleaved, best of several repeats,
and printed with their ratio (target: <= 1.5). Run: ``python benchmarks/clip21_logreg.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distclip.algorithms import ALGORITHMS
from distclip.config import from_dict
from distclip.engine.transport import InProcess
from distclip.runner import build_context, build_problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="iterations per timing repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tau", type=float, default=0.01)
    ap.add_argument("--dataset", default="a9a")
    args = ap.parse_args()
    cfg = from_dict({
        "problem": {"kind": "logreg", "dataset": args.dataset, "lambda": 0.1},
        "partition": {"clients": 20, "scheme": "sorted"},
        "algorithm": {"name": "clip21", "lr": "1/L", "tau": args.tau},
        "run": {"steps": args.steps, "dtype": "float64"},
    })
    problem = build_problem(cfg)
    ctx, _ = build_context(cfg, problem, InProcess(problem.n_clients))
    rules = ALGORITHMS["clip21"].rules
    state, _ = rules.init(ctx)
    x = problem.x0()

    def time_steps() -> float:
        nonlocal state
        t0 = time.perf_counter()
        for t in range(args.steps):
            state, _ = rules.step(state, ctx, t)
        return (time.perf_counter() - t0) / args.steps

    def time_grads() -> float:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            problem.grad(x)
        return (time.perf_counter() - t0) / args.steps

    time_steps(), time_grads()  # warm up
    steps, grads = [], []
    for _ in range(args.repeats):
        steps.append(time_steps())
        grads.append(time_grads())
    step_s, grad_s = min(steps), min(grads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.dataset}: "
          f"{problem.n_clients} clients x {problem.m} rows x {problem.dim} features, float64")
    print(f"full gradient evaluation : {grad_s * 1e3:8.3f} ms (median {statistics.median(grads) * 1e3:.3f})")
    print(f"Clip21-GD iteration      : {step_s * 1e3:8.3f} ms (median {statistics.median(steps) * 1e3:.3f})")
    print(f"ratio iteration / gradient: {step_s / grad_s:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
