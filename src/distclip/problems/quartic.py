"""EPISODE's synthetic quartic (spec: experiments.md §4; official ``synthetic/clipping_run.m``).

f_i(x) = x⁴ − 3x³ − H·h_i·x² + x for x ∈ R, with h = linspace(−1, 2, N), so f = x⁴ − 3x³ − H·h̄·x² + x.
A sample of client i is one noise draw: the minibatch gradient on rows B is
∇f_i(x) + (1/|B|) Σ_{j∈B} σ(1 − 2j/2^53), where each row j is uniform on [0, 2^53) and drawn by the
counter-based sampler (:mod:`distclip.rng`), so the noise depends on (seed, client, draw) only.
``batch_size = 1`` is the official oracle ∇f_i + Unif(−σ, σ); full gradients (``batch_size = 0``) are exact.
Kind ``quartic``: keys ``H``, ``sigma``, ``x0``; N is ``partition.clients``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import DistclipError
from ..schema import key
from .kinds import ProblemKind, start, start_key

ROWS = 2**53  # rows j index the noise values σ(1 − 2j/2^53): 53-bit uniforms


class Quartic:
    dim = 1

    def __init__(self, n_clients: int, H: float, sigma: float, x0: Tensor) -> None:  # noqa: N803 (the paper's H)
        self.n_clients, self.H, self.sigma = n_clients, H, sigma
        self.h = torch.linspace(-1.0, 2.0, n_clients, dtype=x0.dtype, device=x0.device)
        self._x0 = x0

    def x0(self) -> Tensor:
        return self._x0.clone()

    def _coef(self, clients: Tensor) -> Tensor:
        return (self.H * self.h[clients]).unsqueeze(1)  # [n, 1]: H·h_i

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        g = 4 * x**3 - 9 * x**2 - 2 * self._coef(clients) * x + 1  # [n, 1]
        if batch is None:
            return g
        u = batch.to(x.dtype) / ROWS  # [n, b], uniform on [0, 1)
        return g + (self.sigma * (1 - 2 * u)).mean(dim=1, keepdim=True)

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        f = x**4 - 3 * x**3 - self._coef(clients) * x**2 + x
        return f[:, 0]

    def loss(self, x: Tensor) -> float:
        return float(self.client_losses(x, torch.arange(self.n_clients, device=x.device)).mean())

    def grad(self, x: Tensor) -> Tensor:
        return self.client_grads(x, torch.arange(self.n_clients, device=x.device), None).mean(dim=0)

    def smoothness(self) -> float:
        raise DistclipError("the quartic is not L-smooth (its curvature grows with x²); give algorithm.lr as a number")

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        return {}

    def rows_per_client(self) -> int:
        return ROWS

    def targets(self) -> Tensor | None:
        return None

    def info(self) -> dict[str, Any]:
        return {"dim": 1, "H": self.H, "sigma": self.sigma, "h": self.h.tolist()}


@dataclass(frozen=True)
class QuarticConfig:
    het: float = key(0.0, "heterogeneity H of f_i = x⁴ − 3x³ − H·h_i·x² + x", toml="H")
    sigma: float = key(0.0, "gradient noise Unif(−σ, σ) per sample")
    x0: float | list[float] = start_key(0.0)

    def validate(self, cfg: Any) -> QuarticConfig:
        if not (math.isfinite(self.het) and math.isfinite(self.sigma) and self.sigma >= 0):
            raise DistclipError(f"quartic: problem.H = {self.het} must be finite and problem.sigma = {self.sigma} >= 0")
        return self


def build(cfg: Any, dtype: torch.dtype, device: torch.device) -> Quartic:
    p = cfg.problem
    return Quartic(cfg.partition.clients, p.het, p.sigma, start(p.x0, 1, dtype, device))


KINDS = {"quartic": ProblemKind("quartic", "f_i(x) = x⁴ − 3x³ − H·h_i·x² + x + Unif(−σ, σ) gradient noise "
                                "(EPISODE's synthetic)", QuarticConfig, build, no_rows="its clients are the h_i")}
