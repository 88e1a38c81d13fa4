"""EPISODE: episodic gradient clipping with periodic resampled corrections (docs/algorithms.md §7).

round r (t % I == 0): x_r = (1/N) Σ_j x_j;  G_r^i = ∇F_i(x_r; ξ̃) on a fresh batch;  G_r = (1/N) Σ_i G_r^i
                      c_r = [‖G_r‖ > γ/η] (or ``>=``), one decision for every client and step of the round
local step:           d = ĝ − G_r^i + G_r with ĝ the SGD direction (weight decay, momentum) of ∇F_i(x_i; ξ)
                      x_i ← x_i − γ/(1e-10 + ‖d‖)·d if c_r else x_i − η·d   (the official code's coefficient)
The resample uses its own minibatch stream (``stream`` 1 of :mod:`distclip.rng`), so its draws never
coincide with the local steps'. Two collectives of d floats per round; clip flags are c_r at every step.
Keys: ``lr`` η, ``gamma`` γ (or ``tau`` = γ/η, one value for all clients), ``local_steps`` I,
``resample_batch``, ``comparison``, the SGD direction and the step-size schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import DistclipError
from ..schedule import Every, StepSchedule
from ..schema import choice, group, key
from .base import Context, Env, StepInfo, local_model, per_client, step_size, threshold
from .celgc import check_step_bound, step_bound
from .descent import descend
from .momentum import SGDDirection, check_client_buffers

RESAMPLE_STREAM = 1


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size()
    tau: float | list[float] | None = threshold("clipping threshold γ/η (give gamma or tau)", required=False)
    gamma: float | list[float] | None = threshold("maximal step length γ of a clipped round (threshold γ/η)",
                                                  scales=True, required=False)
    local_steps: int = key(1, "communication interval I (one round = I local steps)")
    sgd: SGDDirection = group(SGDDirection)
    schedule: StepSchedule = group(StepSchedule)
    resample_batch: int | None = key(None, "minibatch of the resampled gradient G_r^i (default "
                                     "batch_size·local_steps; 0 = full gradient)")
    comparison: str = key(">", "clip a round when ‖G_r‖ > γ/lr, or '>='")

    def validate(self, cfg: Any) -> Params:
        check_client_buffers(self.sgd, cfg.sampling.active)
        check_step_bound("episode", self.tau, self.gamma)
        if isinstance(self.tau, list) or isinstance(self.gamma, list):
            raise DistclipError("episode takes one algorithm.gamma (or tau) for all clients: a round's clip "
                                "decision is global")
        if self.local_steps < 1:
            raise DistclipError(f"algorithm.local_steps = {self.local_steps} must be >= 1")
        choice("algorithm.comparison", self.comparison, (">", ">="))
        if self.resample_batch is not None and self.resample_batch < 0:
            raise DistclipError(f"algorithm.resample_batch = {self.resample_batch} must be >= 0 (0 = full gradient)")
        return self

    def resolve(self, env: Env) -> Params:
        """γ from τ·η when τ is given; the resample batch defaults to b·I."""
        gamma, tau = step_bound(self.tau, self.gamma, self.lr)
        batch = env.batch_size * self.local_steps if self.resample_batch is None else self.resample_batch
        return dataclasses.replace(self, gamma=gamma, tau=tau, resample_batch=batch)


@dataclass(frozen=True)
class State:
    G: Tensor  # G_r = (1/N) Σ_i G_r^i, [d], the same on every client
    clip: Tensor  # c_r (0-dim bool)
    X: Tensor = local_model()  # local models [n_block, d]
    Gi: Tensor = per_client(restart="zeros")  # resampled gradients G_r^i at x_r [n_block, d]
    buf: Tensor | None = per_client(default=None)  # momentum buffers [n_block, d], created at first use


def init(ctx: Context) -> tuple[State, StepInfo]:
    n = len(ctx.transport.clients)
    zeros = ctx.x0.new_zeros(n, ctx.x0.numel())
    clip = torch.zeros((), dtype=torch.bool, device=ctx.x0.device)
    return State(G=ctx.x0.new_zeros(ctx.x0.shape), clip=clip, X=ctx.x0.expand(n, -1).clone(), Gi=zeros), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, tr = ctx.hp, ctx.transport
    X, Gi, G, clip = state.X, state.Gi, state.G, state.clip
    gamma = hp.gamma[0]  # one γ for all clients (validated): the round's decision is global
    if Every(hp.local_steps).communicates(t):
        x = tr.mean(X)  # comm 1: x_r
        X = x.expand_as(X)
        Gi = ctx.oracle.grads(x, t, batch_size=hp.resample_batch, stream=RESAMPLE_STREAM)
        G = tr.mean(Gi)  # comm 2: G_r
        norm, bound = torch.linalg.vector_norm(G), gamma / hp.lr
        clip = norm >= bound if hp.comparison == ">=" else norm > bound
    g = ctx.oracle.grads(X, t)
    d, buf = hp.sgd(g, X, state.buf)
    d = d - Gi + G
    coef = torch.where(clip, gamma / (1e-10 + torch.linalg.vector_norm(d, dim=1)), torch.full_like(d[:, 0], hp.lr))
    new = State(G=G, clip=clip, X=descend(X, coef.unsqueeze(1), d), Gi=Gi, buf=buf)
    return new, StepInfo(clip.expand(len(tr.clients)))


def model(state: State, ctx: Context) -> Tensor:
    return ctx.transport.observe(state.X)
