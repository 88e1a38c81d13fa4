"""FedProx: Local SGD on proximal local objectives (Li et al., MLSys 2020; docs/algorithms.md §12).

every I steps (t % I == 0): x_r = (1/N) Σ_j x^j and every client restarts from it;
client i:                  x^i ← x^i − η·(∇F_i(x^i; ξ) + μ·(x^i − x_r))
i.e. I SGD steps on h_i(y) = f_i(y) + μ/2·‖y − x_r‖² (the paper's inexact local solver). One average of d
floats per round. μ = 0 is Local SGD (§2.4), step for step. Keys: ``lr`` η, ``local_steps`` I, ``mu`` μ and
the step-size schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..errors import DistclipError
from ..schedule import Every, StepSchedule
from ..schema import group, key
from .base import Context, StepInfo, local_model, step_size
from .descent import descend


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size("local step size η: a number > 0, or 'c/L'")
    local_steps: int = key(1, "local steps I per round")
    mu: float = key(0.0, "proximal weight μ >= 0 of μ/2·‖y − x_r‖² (0: Local SGD)")
    schedule: StepSchedule = group(StepSchedule)

    def validate(self, cfg: Any) -> Params:
        if self.local_steps < 1:
            raise DistclipError(f"algorithm.local_steps = {self.local_steps} must be >= 1")
        if not (0 <= self.mu < math.inf):
            raise DistclipError(f"algorithm.mu = {self.mu} must be a finite number >= 0 (0: Local SGD)")
        return self


@dataclass(frozen=True)
class State:
    xr: Tensor  # the round's server model x_r [d]
    X: Tensor = local_model()  # local models [n_block, d]


def init(ctx: Context) -> tuple[State, StepInfo]:
    n = len(ctx.transport.clients)
    return State(ctx.x0.clone(), ctx.x0.expand(n, -1).clone()), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, X, xr = ctx.hp, state.X, state.xr
    if Every(hp.local_steps).communicates(t):
        xr = ctx.transport.mean(X)
        X = xr.expand_as(X)
    g = ctx.oracle.grads(X, t)
    if hp.mu != 0:
        g.add_((X - xr).mul_(hp.mu))  # g + μ·(x − x_r), in place on the fresh gradient stack (ours)
    return State(xr, descend(X, hp.lr, g, out=g)), StepInfo()


def model(state: State, ctx: Context) -> Tensor:
    return ctx.transport.observe(state.X)
