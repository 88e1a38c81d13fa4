"""optim: ``distclip.optim`` in a user's own training loop against DistributedDataParallel + ``torch.optim.SGD``.

On W gloo ranks (one client per rank, loopback, one thread each) every contender trains the same MLP
(784-256-256-10, float32) on the same minibatches (B rows per rank), timed per full iteration (zero_grad,
forward, backward, step), so DDP's all-reduce inside backward is counted as the optimizers' is in step():

1. ``DistributedSGD`` and ``CELGC`` with I = 1 (one flattened all_reduce per step, of the gradient and of the
   models) against DDP: time per iteration, ratio (target <= 1.1);
2. ``CELGC`` with I = 16 (one all_reduce per 16 steps): iterations per second against DDP (target >= 1.5).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .common import Result, Target, median, torchrun, worker_main

NAME = "optim"
TITLE = "distclip.optim in a torchrun loop vs DDP + torch.optim.SGD: time per iteration on gloo ranks"
LR, BATCH, POOL = 0.05, 32, 32
CONTENDERS = {
    "DDP + SGD": None,
    "DistributedSGD": ("sgd", {"lr": LR}),
    "CELGC I=1": ("celgc", {"lr": LR, "gamma": 0.05, "local_steps": 1}),
    "CELGC I=16": ("celgc", {"lr": LR, "gamma": 0.05, "local_steps": 16}),
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def _batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1000 + rank)
    return [(torch.randn(BATCH, 784, generator=g), torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(POOL)]


def _time(contender: str, steps: int, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    import torch.distributed as dist

    import distclip.optim

    model = _model()
    if CONTENDERS[contender] is None:
        net: nn.Module = nn.parallel.DistributedDataParallel(model)
        opt: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    else:
        name, keys = CONTENDERS[contender]
        net, opt = model, distclip.optim.create(name, model.parameters(), **keys)
    loss_fn = nn.CrossEntropyLoss()
    dist.barrier()
    t0 = time.perf_counter()
    for t in range(steps):
        x, y = batches[t % POOL]
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()
    dist.barrier()
    return (time.perf_counter() - t0) / steps


def worker(params: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed as dist

    from ..engine.distributed import init

    init("gloo", "cpu", 120.0)
    batches = _batches(dist.get_rank())
    times: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    for c in CONTENDERS:  # warm up
        _time(c, 10, batches)
    for _ in range(params["repeats"]):  # interleaved
        for c in CONTENDERS:
            times[c].append(_time(c, params["steps"], batches))
    dim = sum(p.numel() for p in _model().parameters())
    return {"world": dist.get_world_size(), "dim": dim, "times": times}


def run(quick: bool, out: Path, repeats: int) -> Result:
    steps, world = (32 if quick else 160), (2 if quick else 4)
    r = torchrun("optim", world, {"steps": steps, "repeats": repeats})
    t = {k: median(v) for k, v in r["times"].items()}
    ddp = t["DDP + SGD"]
    rows = [{"contender": c, "ms per iteration": v * 1e3, "iterations/s": 1 / v, "time / DDP": v / ddp}
            for c, v in t.items()]
    res = Result(NAME, TITLE, list(rows[0]), rows, raw={f"W={world}": r["times"]},
                 params={"model": "MLP 784-256-256-10", "dim": r["dim"], "batch_per_rank": BATCH, "dtype": "float32",
                         "world": world, "steps": steps, "repeats": repeats, "backend": "gloo", "threads_per_rank": 1,
                         "clock": "wall"})
    res.targets += [
        Target(f"W={world}: DistributedSGD / DDP time per iteration", t["DistributedSGD"] / ddp, 1.1),
        Target(f"W={world}: CELGC I=1 / DDP time per iteration", t["CELGC I=1"] / ddp, 1.1),
        Target(f"W={world}: CELGC I=16 / DDP iterations per second", ddp / t["CELGC I=16"], 1.5, at_least=True),
    ]
    return res


if __name__ == "__main__":
    worker_main(worker)
