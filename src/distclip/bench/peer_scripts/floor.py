"""The compute floor: one model doing the N·B rows of a local step in one forward and backward pass.

Per round: I forward and backward passes of one MLP on N·B rows gathered beforehand; no optimiser,
no clipping, no averaging, no per-client models. What any simulator of the round must at least compute.
"""

from __future__ import annotations

import _shared
import torch
from torch import nn

params = _shared.job()
x, y = _shared.data(params)
gen = torch.Generator().manual_seed(0)
n, m = y.shape
idx = [torch.randint(n * m, (n * params["batch"],), generator=gen) for _ in range(params["local_steps"])]
batches = [(x.flatten(0, 1)[i], y.flatten()[i]) for i in idx]
model, loss_fn = _shared.mlp(), nn.CrossEntropyLoss()
clock = _shared.Clock(params)
for _ in range(params["warmup"] + params["rounds"]):
    for bx, by in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model(bx), by).backward()
    clock.tick()
clock.write()
