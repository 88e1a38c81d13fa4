"""Quadratic clients f_i(x) = ½ c_i ‖x − a_i‖² (centres a_i, curvatures c_i; any dimension).

The two-client instance a = (3, −3), c = (1, 1) is the minimal case of Clip21's Example 1.1
(spec: algorithms.md §2.2, experiments.md §8 target 1). With c_i = 1 the centres are also the vectors
of mean estimation (Clip21-Avg, spec §6), exposed by :meth:`Quadratic.targets`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class Quadratic:
    def __init__(self, centres: Tensor, curvatures: Tensor, x0: Tensor) -> None:
        self.a = centres  # [N, d]
        self.c = curvatures  # [N]
        self._x0 = x0
        self.n_clients, self.dim = centres.shape

    def x0(self) -> Tensor:
        return self._x0.clone()

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        return self.c[clients].unsqueeze(1) * (x - self.a[clients])

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        diff = x - self.a[clients]
        return 0.5 * self.c[clients] * (diff * diff).sum(dim=-1)

    def loss(self, x: Tensor) -> float:
        return float(self.client_losses(x, torch.arange(self.n_clients, device=x.device)).mean())

    def grad(self, x: Tensor) -> Tensor:
        return self.client_grads(x, torch.arange(self.n_clients, device=x.device), None).mean(dim=0)

    def smoothness(self) -> float:
        return float(self.c.mean())

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        return {}

    def rows_per_client(self) -> int:
        return 0

    def targets(self) -> Tensor:
        return self.a

    def info(self) -> dict[str, Any]:
        return {"dim": self.dim, "minimiser": (self.c @ self.a / self.c.sum()).tolist()}
