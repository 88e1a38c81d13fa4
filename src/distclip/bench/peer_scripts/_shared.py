"""What every peer script of ``distclip bench peers`` shares (run by the peer environment's python, no distclip).

A script is run as ``python SCRIPT JOB.json RESULT.json``. The job names the data folder (``x.npy``
[N, m, 784] float32 and ``y.npy`` [N, m] int64, the same client rows distclip trains on), N, the batch
B, the local steps I, η, the clip threshold γ/η (``clip``: null for FedAvg), the rounds (warm-up and
timed) and the intra-op threads. The result holds the wall-clock time at which the first round ended
(the parent subtracts its spawn time: startup to the first round) and the seconds of each timed round.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn


def job() -> dict[str, Any]:
    with open(sys.argv[1], encoding="utf-8") as f:
        params = json.load(f)
    torch.set_num_threads(params["threads"])
    return params


def data(params: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The client rows: x [N, m, 784] float32 and y [N, m] int64."""
    folder = params["data"]
    return torch.from_numpy(np.load(f"{folder}/x.npy")), torch.from_numpy(np.load(f"{folder}/y.npy"))


def mlp() -> nn.Module:
    """The MLP 784-128-10 of every contender (ReLU), torch's default initialisation."""
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


class Clock:
    """Round ends: ``tick()`` after each round; the first ends startup, the warm-up rounds are not timed."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.warmup, self.ends, self.first = params["warmup"], [], 0.0

    def tick(self) -> None:
        now = time.perf_counter()
        if not self.ends:
            self.first = time.time()
        self.ends.append(now)

    def write(self) -> None:
        times = np.diff(self.ends[self.warmup - 1:]).tolist()
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            json.dump({"first_round_at": self.first, "round_s": times}, f)


def local_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict[str, Any],
                gen: torch.Generator) -> None:
    """I steps of torch.optim.SGD on minibatches of B rows drawn with replacement, each gradient
    clipped to norm γ/η first when ``clip`` is set (CELGC's step min(η, γ/‖g‖)·g)."""
    opt = torch.optim.SGD(model.parameters(), lr=params["lr"])
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(params["local_steps"]):
        idx = torch.randint(len(x), (params["batch"],), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[idx]), y[idx]).backward()
        if params["clip"] is not None:
            nn.utils.clip_grad_norm_(model.parameters(), params["clip"])
        opt.step()
