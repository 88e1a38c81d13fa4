"""CELGC: local gradient clipping with periodic model averaging (docs/algorithms.md §3.1, §3.2).

at t % I == 0:  x_t^i ← x̄_t = (1/N) Σ_j x_t^j                  (model average first, then the gradient)
client i:       g = ∇F_i(x_t^i; ξ);  d = SGD direction of g (weight decay, momentum)
                x_{t+1}^i = x_t^i − min(η, γ/(1e-10 + n))·d
with n = ‖g‖ (``local``, Algorithm 1), max(‖g‖, Ĝ) (``max``) or Ĝ (``global_average``), where
Ĝ = ‖(1/N) Σ_j g_j‖ is computed at communication steps and reused until the next one. As in the
official ``SGDClipGrad``, the norm is the raw gradient's while the step follows d. ``baseline``
replaces g by the average gradient at communication steps (naive parallel SGDClip for I = 1).
Soft clipping uses η·soft-scale(n) with threshold γ/η instead of min(η, γ/n).
Keys: ``lr`` η, ``gamma`` γ (or ``tau`` = γ/η), ``local_steps`` I, ``option``, ``baseline``, ``clip``, the SGD
direction and the step-size schedule (η and γ decay together).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..clipping import scale
from ..errors import DistclipError
from ..schedule import Every, StepSchedule
from ..schema import choice, group, key
from .base import Context, Env, StepInfo, local_model, per_client, step_size, threshold
from .descent import descend
from .momentum import SGDDirection, check_client_buffers

OPTIONS = ("local", "max", "global_average")


def step_bound(tau: Any, gamma: Any, lr: float) -> tuple[Any, Any]:
    """(γ, γ/η): γ as given, or τ·η when τ is given (the rules read γ; the threshold is γ/η)."""
    gamma = gamma if gamma is not None else tau * lr
    return gamma, gamma / lr


def check_step_bound(name: str, tau: Any, gamma: Any) -> None:
    """CELGC and EPISODE take exactly one of γ and τ = γ/η."""
    if (tau is None) == (gamma is None):
        raise DistclipError(f"{name} needs exactly one of algorithm.gamma (max step length) or algorithm.tau "
                            "(gamma/lr)")


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size()
    tau: float | list[float] | None = threshold("clipping threshold γ/η (give gamma or tau), or one per client",
                                                required=False)
    gamma: float | list[float] | None = threshold("maximal step length γ (threshold γ/η), or one per client",
                                                  scales=True, required=False)
    clip: str = key("norm", "norm | soft: how the step is bounded")
    local_steps: int = key(1, "communication interval I: models are averaged every I steps")
    option: str = key("local", "norm in the clip: local (own gradient) | max (with the stale global norm) | "
                      "global_average (the stale global norm)")
    sgd: SGDDirection = group(SGDDirection)
    baseline: bool = key(False, "average the gradient at communication steps (naive parallel SGDClip for I = 1)")
    schedule: StepSchedule = group(StepSchedule)

    def validate(self, cfg: Any) -> Params:
        check_client_buffers(self.sgd, cfg.sampling.active)
        check_step_bound("celgc", self.tau, self.gamma)
        choice("algorithm.clip", self.clip, ("norm", "soft", "coordinate"))
        if self.clip == "coordinate":
            raise DistclipError("celgc scales its step by the raw gradient norm, which coordinate clipping lacks; "
                                "use clip = norm or soft")
        if self.local_steps < 1:
            raise DistclipError(f"algorithm.local_steps = {self.local_steps} must be >= 1")
        choice("algorithm.option", self.option, OPTIONS)
        if self.baseline and self.option == "global_average":
            raise DistclipError("celgc baseline with option global_average never clips (a quirk of the official "
                                "code); use local or max")
        return self

    def resolve(self, env: Env) -> Params:
        """γ_i from τ_i·η when τ is given (the rules only read γ)."""
        gamma, tau = step_bound(self.tau, self.gamma, self.lr)
        return dataclasses.replace(self, gamma=gamma, tau=tau)


@dataclass(frozen=True)
class State:
    G: Tensor  # stale global gradient norm Ĝ (0-dim), starts at 0
    X: Tensor = local_model()  # local models [n_block, d]
    buf: Tensor | None = per_client(default=None)  # momentum buffers [n_block, d], created at first use


def init(ctx: Context) -> tuple[State, StepInfo]:
    n = len(ctx.transport.clients)
    return State(G=ctx.x0.new_zeros(()), X=ctx.x0.expand(n, -1).clone()), StepInfo()


def local_clipped_step(state: State, ctx: Context, t: int, *, lr: float, gamma: Tensor | None, interval: int,
                       direction: SGDDirection, option: str = "local", baseline: bool = False,
                       soft: bool = False) -> tuple[State, StepInfo]:
    """One CELGC step with per-client maximal step lengths ``gamma`` ``[n_block]``; None: Local SGD, the step
    γ = ∞ gives (min(η, ∞) = η for every client) without computing the norms it would not use."""
    tr = ctx.transport
    X, G = state.X, state.G
    communicate = Every(interval).communicates(t)
    if communicate:
        X = tr.mean(X).expand_as(X)
    g = fresh = ctx.oracle.grads(X, t)
    if gamma is None:
        d, buf = direction(g, X, state.buf)
        return State(G=G, X=descend(X, lr, d, out=d if d is fresh else None), buf=buf), StepInfo()
    if communicate and baseline:
        g = tr.mean(g).expand_as(g)
    elif communicate and option != "local":
        G = torch.linalg.vector_norm(tr.mean(g))
    n_loc = torch.linalg.vector_norm(g, dim=1)
    d, buf = direction(g, X, state.buf)
    n = {"local": n_loc, "max": torch.maximum(n_loc, G), "global_average": G.expand_as(n_loc)}[option]
    if soft:
        step_lr = lr * scale(n, gamma / lr, "soft")
        clipped = (step_lr < lr) & (n > 0)
    else:
        coef = gamma / (1e-10 + n)
        step_lr = torch.clamp(coef, max=lr)
        clipped = coef < lr
    # when the step follows the oracle's gradient as is, that new stack (ours to overwrite) holds the new models
    X = descend(X, step_lr.unsqueeze(1), d, out=d if d is fresh else None)
    return State(G=G, X=X, buf=buf), StepInfo(clipped)


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp = ctx.hp
    return local_clipped_step(state, ctx, t, lr=hp.lr, gamma=hp.gamma, interval=hp.local_steps, direction=hp.sgd,
                              option=hp.option, baseline=hp.baseline, soft=hp.clip == "soft")


def model(state: State, ctx: Context) -> Tensor:
    return ctx.transport.observe(state.X)
