"""Quadratic clients f_i(x) = ½ c_i ‖x − a_i‖² (centres a_i, curvatures c_i; any dimension).

The two-client instance a = (3, −3), c = (1, 1) is the minimal case of Clip21's Example 1.1
(docs/algorithms.md §2.2, experiments.md §8 target 1). With c_i = 1 the centres are also the vectors
of mean estimation (Clip21-Avg, docs/algorithms.md §6), exposed by :meth:`Quadratic.targets`.
Kind ``quadratic``: keys ``centres`` (one per client: N is their number), ``curvatures``, ``x0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import DistclipError
from ..schema import key, positive
from .kinds import ProblemKind, start, start_key


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


@dataclass(frozen=True)
class QuadraticConfig:
    centres: list[list[float]] | list[float] | None = key(None, "centres a_i, one per client (numbers for d = 1)")
    curvatures: list[float] | None = key(None, "curvatures c_i > 0, one per client (default 1)")
    x0: float | list[float] = start_key(0.0)

    def validate(self, cfg: Any) -> QuadraticConfig:
        if not self.centres:
            raise DistclipError("quadratic needs problem.centres, one centre per client, e.g. [3.0, -3.0]")
        dims = {len(c) if isinstance(c, list) else 1 for c in self.centres}
        if len(dims) != 1 or 0 in dims:
            raise DistclipError("problem.centres must all have the same non-zero length (the dimension d)")
        if self.curvatures is not None:
            if len(self.curvatures) != len(self.centres):
                raise DistclipError(f"problem.curvatures has {len(self.curvatures)} values for {len(self.centres)} "
                                    "centres; give one each")
            positive("problem.curvatures", self.curvatures, allow_inf=False)
        part = cfg.partition
        if "partition.clients" in cfg.given and part.clients != len(self.centres):
            raise DistclipError(f"partition.clients = {part.clients} but problem.centres has {len(self.centres)} "
                                "clients; remove partition.clients or make them agree")
        part.clients = len(self.centres)
        return self


def build(cfg: Any, dtype: torch.dtype, device: torch.device) -> Quadratic:
    p = cfg.problem
    centres = torch.tensor([c if isinstance(c, list) else [c] for c in p.centres], dtype=dtype, device=device)
    curv = torch.tensor(p.curvatures or [1.0] * len(centres), dtype=dtype, device=device)
    return Quadratic(centres, curv, start(p.x0, centres.shape[1], dtype, device))


KINDS = {"quadratic": ProblemKind("quadratic", "f_i(x) = ½ c_i ‖x − a_i‖² (centres, curvatures)", QuadraticConfig,
                                  build, no_rows="its clients are its centres", targets=True)}
