"""The torch.distributed transport against DistributedDataParallel, and CELGC against naive clipping.

1. ``sgd`` on logistic regression (a9a, one client per rank, minibatch B, float64) through distclip's
   transport vs a DDP-wrapped ``nn.Linear`` trained with ``torch.optim.SGD`` on the *same* minibatches:
   time per step, interleaved repeats, ratio distclip/DDP (target <= 1.1).
2. CELGC with I = 16 vs ``naive-parallel-clip`` (one all-reduce per step) on the same ranks: steps/s
   ratio (target >= 1.5).

Run ``python benchmarks/distributed_overhead.py [--world 4]``: it starts itself under torchrun (gloo,
loopback) and rank 0 prints the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from distclip.algorithms import ALGORITHMS
from distclip.config import from_dict
from distclip.engine.distributed import TorchDistributed, init, shutdown
from distclip.rng import sample_indices
from distclip.runner import build_context, build_problem


def setup(world: int, algorithm: dict, batch: int):
    cfg = from_dict({
        "problem": {"kind": "logreg", "dataset": "a9a", "lambda": 0.1, "features": "dense"},
        "partition": {"clients": world, "scheme": "iid"},
        "algorithm": algorithm,
        "run": {"batch_size": batch},
    })
    problem = build_problem(cfg, torch.device("cpu"))
    transport = TorchDistributed(problem.n_clients, torch.device("cpu"), 120.0)
    ctx, _ = build_context(cfg, problem, transport)
    return cfg, problem, ctx


def time_rules(name: str, ctx, steps: int) -> float:
    rules = ALGORITHMS[name].rules
    state, _ = rules.init(ctx)
    dist.barrier()
    t0 = time.perf_counter()
    for t in range(steps):
        state, _ = rules.step(state, ctx, t)
    dist.barrier()
    return (time.perf_counter() - t0) / steps


def time_ddp(problem, batch: int, lr: float, steps: int, seed: int) -> float:
    rank = dist.get_rank()
    model = torch.nn.Linear(problem.dim, 1, bias=False, dtype=torch.float64)
    torch.nn.init.zeros_(model.weight)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=lr)
    a, b = problem.A[rank], problem.b[rank]
    batches = [torch.from_numpy(sample_indices(seed, [rank], t, batch, problem.m)[0]) for t in range(steps)]
    dist.barrier()
    t0 = time.perf_counter()
    for idx in batches:
        z = ddp(a[idx]).squeeze(1)
        w = model.weight
        loss = F.softplus(-b[idx] * z).mean() + problem.lam * (w * w / (1 + w * w)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dist.barrier()
    return (time.perf_counter() - t0) / steps


def worker(args: argparse.Namespace) -> None:
    init("gloo", "cpu", 120.0)
    world, rank = dist.get_world_size(), dist.get_rank()
    lr = 0.5
    _, problem, sgd_ctx = setup(world, {"name": "sgd", "lr": lr}, args.batch)
    _, _, celgc_ctx = setup(world, {"name": "celgc", "lr": lr, "gamma": 0.05, "local_steps": 16}, args.batch)
    _, _, naive_ctx = setup(world, {"name": "naive-parallel-clip", "lr": lr, "tau": 0.1}, args.batch)
    ours, ddp, celgc, naive = [], [], [], []
    time_rules("sgd", sgd_ctx, 20), time_ddp(problem, args.batch, lr, 20, 0)  # warm up
    for _ in range(args.repeats):
        ours.append(time_rules("sgd", sgd_ctx, args.steps))
        ddp.append(time_ddp(problem, args.batch, lr, args.steps, 0))
        celgc.append(time_rules("celgc", celgc_ctx, args.steps))
        naive.append(time_rules("naive-parallel-clip", naive_ctx, args.steps))
    if rank == 0:
        o, d, c, n = min(ours), min(ddp), min(celgc), min(naive)
        print(f"torch {torch.__version__}, gloo, {world} ranks on {os.cpu_count()} cores, a9a logreg "
              f"(d = {problem.dim}), batch {args.batch} per rank, float64, best of {args.repeats} x {args.steps} steps")
        print(f"  distclip sgd (1 all_reduce/step)     : {o * 1e3:7.3f} ms/step")
        print(f"  DDP nn.Linear + torch.optim.SGD      : {d * 1e3:7.3f} ms/step")
        print(f"  ratio distclip / DDP (time per step) : {o / d:.2f}   (target <= 1.1)")
        print(f"  CELGC I = 16                         : {1 / c:8.1f} steps/s")
        print(f"  naive-parallel-clip                  : {1 / n:8.1f} steps/s")
        print(f"  ratio CELGC I=16 / naive (steps/s)   : {n / c:.2f}   (target >= 1.5)")
    shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=int, default=4, help="gloo ranks")
    ap.add_argument("--batch", type=int, default=64, help="minibatch per rank")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if "RANK" in os.environ:
        worker(args)
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.world}",
           __file__, "--world", str(args.world), "--batch", str(args.batch), "--steps", str(args.steps),
           "--repeats", str(args.repeats)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sys.exit(subprocess.run(cmd, env=env).returncode)


if __name__ == "__main__":
    main()
