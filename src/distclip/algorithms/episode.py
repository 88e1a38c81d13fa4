"""EPISODE: episodic gradient clipping with periodic resampled corrections (spec: algorithms.md §7).

round r (t % I == 0): x_r = (1/N) Σ_j x_j;  G_r^i = ∇F_i(x_r; ξ̃) on a fresh batch;  G_r = (1/N) Σ_i G_r^i
                      c_r = [‖G_r‖ > γ/η] (or ``>=``), one decision for every client and step of the round
local step:           d = ĝ − G_r^i + G_r with ĝ the SGD direction (weight decay, momentum) of ∇F_i(x_i; ξ)
                      x_i ← x_i − γ·d/‖d‖ if c_r else x_i − η·d
The resample uses its own minibatch stream (``stream`` 1 of :mod:`distclip.rng`), so its draws never
coincide with the local steps'. Two collectives of d floats per round; clip flags are c_r at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..schedule import Every
from .base import Context, StepInfo, per_client
from .descent import descend
from .momentum import sgd_direction

RESAMPLE_STREAM = 1


@dataclass(frozen=True)
class State:
    G: Tensor  # G_r = (1/N) Σ_i G_r^i, [d], the same on every client
    clip: Tensor  # c_r (0-dim bool)
    X: Tensor = per_client()  # local models [n_block, d]
    Gi: Tensor = per_client()  # resampled gradients G_r^i at x_r [n_block, d]
    buf: Tensor | None = per_client(default=None)  # momentum buffers [n_block, d], created at first use


def init(ctx: Context) -> tuple[State, StepInfo]:
    n = len(ctx.transport.clients)
    zeros = ctx.x0.new_zeros(n, ctx.x0.numel())
    clip = torch.zeros((), dtype=torch.bool, device=ctx.x0.device)
    return State(G=ctx.x0.new_zeros(ctx.x0.shape), clip=clip, X=ctx.x0.expand(n, -1).clone(), Gi=zeros), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, tr = ctx.hp, ctx.transport
    assert hp.gamma is not None, "validated by the config: episode has a step-length bound"
    X, Gi, G, clip = state.X, state.Gi, state.G, state.clip
    gamma = hp.gamma[0]  # one γ for all clients (validated): the round's decision is global
    if Every(hp.local_steps).communicates(t):
        x = tr.mean(X)  # comm 1: x_r
        X = x.expand_as(X)
        Gi = ctx.oracle.grads(x, t, batch_size=hp.resample_batch, stream=RESAMPLE_STREAM)
        G = tr.mean(Gi)  # comm 2: G_r
        norm, threshold = torch.linalg.vector_norm(G), gamma / hp.lr
        clip = norm >= threshold if hp.comparison == ">=" else norm > threshold
    g = ctx.oracle.grads(X, t)
    d, buf = sgd_direction(g, X, state.buf, hp.momentum, hp.dampening, hp.nesterov, hp.weight_decay)
    d = d - Gi + G
    n_d = torch.linalg.vector_norm(d, dim=1).clamp_min(torch.finfo(d.dtype).tiny)  # d = 0 moves by 0 either way
    coef = torch.where(clip, gamma / n_d, torch.full_like(n_d, hp.lr))
    new = State(G=G, clip=clip, X=descend(X, coef.unsqueeze(1), d), Gi=Gi, buf=buf)
    return new, StepInfo(clip.expand(len(tr.clients)))


def model(state: State, ctx: Context) -> Tensor:
    return ctx.transport.observe(state.X)
