"""The plain per-client torch loop: one nn.Module per client, trained one after the other, then averaged.

Per round: every client starts from the server model, runs I ``torch.optim.SGD`` steps (clipped for
CELGC) on its own minibatches, and the server takes the mean of the client models.
"""

from __future__ import annotations

import _shared
import torch

params = _shared.job()
x, y = _shared.data(params)
server = _shared.mlp()
clients = [_shared.mlp() for _ in range(params["clients"])]
gen = torch.Generator().manual_seed(0)
clock = _shared.Clock(params)
for _ in range(params["warmup"] + params["rounds"]):
    total = [torch.zeros_like(p) for p in server.parameters()]
    for i, model in enumerate(clients):
        with torch.no_grad():
            for p, q in zip(model.parameters(), server.parameters(), strict=True):
                p.copy_(q)
        _shared.local_steps(model, x[i], y[i], params, gen)
        with torch.no_grad():
            for s, p in zip(total, model.parameters(), strict=True):
                s.add_(p)
    with torch.no_grad():
        for p, s in zip(server.parameters(), total, strict=True):
            p.copy_(s / len(clients))
    clock.tick()
clock.write()
