"""distributed-overhead: the torch.distributed transport against DistributedDataParallel, and CELGC vs naive clipping.

On W gloo ranks (one client per rank, loopback, one thread each), logistic regression on a9a
(minibatch B per rank, float64):

1. ``sgd`` through distclip's transport (one ``all_reduce`` per step) vs a DDP-wrapped ``nn.Linear``
   trained with ``torch.optim.SGD`` on the *same* minibatches: time per step, ratio distclip / DDP
   (target <= 1.1);
2. CELGC with I = 16 vs ``naive-parallel-clip`` (one all-reduce per step): steps/s ratio (target >= 1.5).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..algorithms import ALGORITHMS
from ..config import from_dict
from ..runner import build_context, build_problem
from .common import Result, Target, median, torchrun, worker_main

NAME = "distributed-overhead"
TITLE = "time per step on gloo ranks: distclip transport vs DDP (I = 1), CELGC I = 16 vs naive parallel clip"
LR, BATCH = 0.5, 64


def _setup(world: int, algorithm: dict[str, Any]) -> tuple[Any, Any]:
    from ..engine.distributed import TorchDistributed

    cfg = from_dict({
        "problem": {"kind": "logreg", "dataset": "a9a", "lambda": 0.1, "features": "dense"},
        "partition": {"clients": world, "scheme": "iid"},
        "algorithm": algorithm,
        "run": {"batch_size": BATCH},
    })
    problem = build_problem(cfg, torch.device("cpu"))
    ctx, _ = build_context(cfg, problem, TorchDistributed(problem.n_clients, torch.device("cpu"), 120.0))
    return problem, ctx


def _time_rules(name: str, ctx: Any, steps: int) -> float:
    import torch.distributed as dist

    rules = ALGORITHMS[name].rules
    state, _ = rules.init(ctx)
    dist.barrier()
    t0 = time.perf_counter()
    for t in range(steps):
        state, _ = rules.step(state, ctx, t)
    dist.barrier()
    return (time.perf_counter() - t0) / steps


def _time_ddp(problem: Any, steps: int, seed: int) -> float:
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ..rng import sample_indices

    rank = dist.get_rank()
    model = torch.nn.Linear(problem.dim, 1, bias=False, dtype=torch.float64)
    torch.nn.init.zeros_(model.weight)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR)
    a, b = problem.A[rank], problem.b[rank]
    batches = [torch.from_numpy(sample_indices(seed, [rank], t, BATCH, problem.m)[0]) for t in range(steps)]
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


def worker(params: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed as dist

    from ..engine.distributed import init

    init("gloo", "cpu", 120.0)
    world, steps = dist.get_world_size(), params["steps"]
    problem, sgd = _setup(world, {"name": "sgd", "lr": LR})
    _, celgc = _setup(world, {"name": "celgc", "lr": LR, "gamma": 0.05, "local_steps": 16})
    _, naive = _setup(world, {"name": "naive-parallel-clip", "lr": LR, "tau": 0.1})
    times: dict[str, list[float]] = {"distclip sgd": [], "DDP": [], "celgc I=16": [], "naive-parallel-clip": []}
    _time_rules("sgd", sgd, 20), _time_ddp(problem, 20, 0)  # warm up
    for _ in range(params["repeats"]):
        times["distclip sgd"].append(_time_rules("sgd", sgd, steps))
        times["DDP"].append(_time_ddp(problem, steps, 0))
        times["celgc I=16"].append(_time_rules("celgc", celgc, steps))
        times["naive-parallel-clip"].append(_time_rules("naive-parallel-clip", naive, steps))
    return {"world": world, "dim": problem.dim, "times": times}


def run(quick: bool, out: Path, repeats: int) -> Result:
    steps = 50 if quick else 300
    rows, raw = [], {}
    for world in (2,) if quick else (2, 4):
        r = torchrun("distributed", world, {"steps": steps, "repeats": repeats})
        t = {k: median(v) for k, v in r["times"].items()}
        raw[f"W={world}"] = r["times"]
        rows.append({"W": world, "distclip sgd ms": t["distclip sgd"] * 1e3, "DDP ms": t["DDP"] * 1e3,
                     "distclip / DDP": t["distclip sgd"] / t["DDP"], "celgc I=16 steps/s": 1 / t["celgc I=16"],
                     "naive steps/s": 1 / t["naive-parallel-clip"],
                     "celgc / naive (steps/s)": t["naive-parallel-clip"] / t["celgc I=16"]})
    res = Result(NAME, TITLE, list(rows[0]), rows, raw=raw,
                 params={"problem": "a9a logreg, dense features", "batch_per_rank": BATCH, "dtype": "float64",
                         "steps": steps, "repeats": repeats, "backend": "gloo", "threads_per_rank": 1, "clock": "wall"})
    for r in rows:
        res.targets += [Target(f"W={r['W']}: distclip / DDP time per step", r["distclip / DDP"], 1.1),
                        Target(f"W={r['W']}: CELGC I=16 / naive steps per second", r["celgc / naive (steps/s)"],
                               1.5, at_least=True)]
    return res


if __name__ == "__main__":
    worker_main(worker)
