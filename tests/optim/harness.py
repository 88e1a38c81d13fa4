"""A user's training loop with ``distclip.optim`` and the same experiment through ``distclip.run`` (kind ``torch``).

The loop draws client r's minibatch at the rows the engine draws for client r (``distclip.rng.sample_indices``
from (seed, client, the request's draw and stream)), so both must give the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import distclip
import distclip.optim
from distclip.rng import sample_indices

SEED, ROWS, BATCH, STEPS = 3, 24, 4, 7

#: algorithm -> keys (each exercising clipping where it has any)
CASES: dict[str, dict] = {
    "sgd": {"lr": 0.3},
    "clip-sgd": {"lr": 0.3, "tau": 0.4},
    "naive-parallel-clip": {"lr": 0.3, "tau": 0.5},
    "celgc": {"lr": 0.3, "gamma": 0.1, "local_steps": 3, "momentum": 0.5},
    "local-sgd": {"lr": 0.3, "local_steps": 3},
    "clip21": {"lr": 0.3, "tau": 0.2},
    "ef21": {"lr": 0.3, "k": 7},
    "clip21-sgd2m": {"lr": 0.3, "tau": 0.2, "beta1": 0.5},
    "episode": {"lr": 0.3, "gamma": 0.05, "local_steps": 3},
    "scaffold": {"lr": 0.3, "local_steps": 3},
    "fedprox": {"lr": 0.3, "local_steps": 3, "mu": 0.5},
    "dp-fedavg": {"lr": 0.3, "tau": 0.1, "local_steps": 2, "adaptive_clip": "geometric"},
}


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))


def client_data(n: int) -> list[TensorDataset]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(n):
        x = torch.from_numpy(rng.normal(i * 0.5, 1.0, size=(ROWS, 5)))
        y = torch.from_numpy(rng.integers(0, 3, size=ROWS))
        out.append(TensorDataset(x, y))
    return out


def config(name: str, n: int, steps: int = STEPS) -> dict:
    return {"seed": SEED, "problem": {"kind": "torch", "vectorise": "loop"},
            "partition": {"clients": n, "scheme": "contiguous"}, "algorithm": {"name": name, **CASES[name]},
            "run": {"steps": steps, "batch_size": BATCH, "log_every": steps}}


def simulate(name: str, n: int, steps: int = STEPS) -> tuple[torch.Tensor, dict]:
    """The engine's averaged model after ``steps`` steps and its counters."""
    res = distclip.run(config(name, n, steps), model=model, data=lambda: client_data(n))
    return res.model, res.metrics[-1]


def user_model() -> nn.Module:
    torch.manual_seed(SEED)  # the torch kind calls the factory under torch.manual_seed(seed)
    return model().double()


def make_optimizer(name: str, m: nn.Module, **extra) -> distclip.optim.DistclipOptimizer:
    return distclip.optim.create(name, m.parameters(), seed=SEED, batch_size=BATCH, **CASES[name], **extra)


def train(m: nn.Module, opt, rank: int, data: TensorDataset, steps: int, sched=None, closure: bool = False) -> None:
    """The user's loop up to ``steps`` steps of the algorithm: one backward and one step() per gradient the optimizer
    asks for (or one step(closure) per step), the scheduler stepped after every step() as usual."""
    while opt.steps_done < steps:
        if closure:
            opt.step(make_closure(m, opt, rank, data))
        else:
            train_one(m, opt, rank, data)
        if sched is not None:
            sched.step()


def make_closure(m: nn.Module, opt, rank: int, data: TensorDataset):
    """A closure computing the gradient the optimizer asks for, at the rows the engine would draw."""
    x, y = data.tensors

    def closure() -> torch.Tensor:
        req = opt.request
        b = BATCH if req.batch_size is None else req.batch_size
        rows = torch.from_numpy(sample_indices(SEED, np.array([rank]), req.draw, b, ROWS, req.stream)[0]) \
            if b else torch.arange(ROWS)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(x[rows]), y[rows])
        loss.backward()
        return loss

    return closure


def train_one(m: nn.Module, opt, rank: int, data: TensorDataset) -> None:
    """One backward at the rows of the gradient the optimizer asks for, and one step()."""
    make_closure(m, opt, rank, data)()
    opt.step()


def averaged(m: nn.Module, opt) -> torch.Tensor:
    with opt.averaged():
        return torch.cat([p.detach().reshape(-1) for p in m.parameters()]).clone()


COUNTERS = ("comm_rounds", "floats_up", "floats_down", "bytes_up", "bytes_down")
