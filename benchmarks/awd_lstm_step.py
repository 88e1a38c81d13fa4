"""Time a few full-scale AWD-LSTM client steps of celgc-ptb / celgc-wt2 and extrapolate a run (an estimate).

Loads the suite's full configuration (3-layer AWD-LSTM, BPTT 70, all regularisations, carry-over),
times ``--steps`` training gradients of ``--clients`` of its 8 clients computed together (after one
warm-up step), scales the time to all 8 clients (linearly: on one device they run one after another
in effect), and prints the seconds per step and the implied hours per run and per suite (6 runs)
for the suite's step count. Run: ``python benchmarks/awd_lstm_step.py --suite celgc-ptb``.
"""

from __future__ import annotations

import argparse
import time

import torch

from distclip.config import expand
from distclip.reproduce import load_config, suite_path
from distclip.rng import sample_indices
from distclip.runner import build_problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="celgc-ptb", choices=("celgc-ptb", "celgc-wt2"))
    ap.add_argument("--path", default=None, help="WikiText-2 folder (celgc-wt2)")
    ap.add_argument("--clients", type=int, default=2, help="clients computed together in the timing")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    overrides = [f"run.device={args.device}"] + ([f"problem.path={args.path}"] if args.path else [])
    label, cfg = expand(load_config(suite_path(args.suite), overrides))[0]
    problem = build_problem(cfg)
    n, rows = args.clients, problem.rows_per_client()
    clients = torch.arange(n, device=problem.x0().device)
    X = problem.x0().expand(n, -1).clone()

    def step(t: int) -> None:
        batch = torch.from_numpy(sample_indices(cfg.seed, clients.cpu().numpy(), t, cfg.run.batch_size, rows))
        problem.client_grads(X, clients, batch.to(clients.device), t)
        if X.is_cuda:
            torch.cuda.synchronize()

    step(0)
    t0 = time.perf_counter()
    for t in range(1, args.steps + 1):
        step(t)
    per_step = (time.perf_counter() - t0) / args.steps * problem.n_clients / n
    hours = per_step * cfg.run.steps / 3600
    info = problem.info()
    print(f"{args.suite} ({label}): dim {problem.dim:,}, sizes {info['sizes']}, bptt {cfg.problem.bptt}, "
          f"batch {cfg.run.batch_size}, {cfg.run.steps:,} steps ({problem.steps_per_epoch} per epoch), "
          f"device {args.device}, {torch.get_num_threads()} threads")
    print(f"measured: {per_step:.2f} s per step of all {problem.n_clients} clients "
          f"({n} timed together, {args.steps} steps)")
    print(f"estimate: {hours:,.0f} h per run, {6 * hours:,.0f} h for the suite's 6 runs on this device")


if __name__ == "__main__":
    main()
