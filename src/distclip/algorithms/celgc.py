"""CELGC: local gradient clipping with periodic model averaging (spec: algorithms.md §3.1, §3.2).

at t % I == 0:  x_t^i ← x̄_t = (1/N) Σ_j x_t^j                  (model average first, then the gradient)
client i:       g = ∇F_i(x_t^i; ξ);  d = SGD direction of g (weight decay, momentum)
                x_{t+1}^i = x_t^i − min(η, γ/(1e-10 + n))·d
with n = ‖g‖ (``local``, Algorithm 1), max(‖g‖, Ĝ) (``max``) or Ĝ (``global_average``), where
Ĝ = ‖(1/N) Σ_j g_j‖ is computed at communication steps and reused until the next one. As in the
official ``SGDClipGrad``, the norm is the raw gradient's while the step follows d. ``baseline``
replaces g by the average gradient at communication steps (naive parallel SGDClip for I = 1).
Soft clipping uses η·soft-scale(n) with threshold γ/η instead of min(η, γ/n).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..clipping import scale
from ..schedule import Every
from .base import Context, StepInfo, per_client
from .descent import descend
from .momentum import sgd_direction


@dataclass(frozen=True)
class State:
    G: Tensor  # stale global gradient norm Ĝ (0-dim), starts at 0
    X: Tensor = per_client()  # local models [n_block, d]
    buf: Tensor | None = per_client(default=None)  # momentum buffers [n_block, d], created at first use


def init(ctx: Context) -> tuple[State, StepInfo]:
    n = len(ctx.transport.clients)
    return State(G=ctx.x0.new_zeros(()), X=ctx.x0.expand(n, -1).clone()), StepInfo()


def local_clipped_step(state: State, ctx: Context, t: int, gamma: Tensor) -> tuple[State, StepInfo]:
    """One CELGC step with per-client maximal step lengths ``gamma`` ``[n_block]`` (inf: Local SGD)."""
    hp, tr = ctx.hp, ctx.transport
    X, G = state.X, state.G
    communicate = Every(hp.local_steps).communicates(t)
    if communicate:
        X = tr.mean(X).expand_as(X)
    g = fresh = ctx.oracle.grads(X, t)
    if communicate and hp.baseline:
        g = tr.mean(g).expand_as(g)
    elif communicate and hp.option != "local":
        G = torch.linalg.vector_norm(tr.mean(g))
    n_loc = torch.linalg.vector_norm(g, dim=1)
    d, buf = sgd_direction(g, X, state.buf, hp.momentum, hp.dampening, hp.nesterov, hp.weight_decay)
    n = {"local": n_loc, "max": torch.maximum(n_loc, G), "global_average": G.expand_as(n_loc)}[hp.option]
    if hp.clip == "soft":
        lr = hp.lr * scale(n, gamma / hp.lr, "soft")
        clipped = (lr < hp.lr) & (n > 0)
    else:
        coef = gamma / (1e-10 + n)
        lr = torch.clamp(coef, max=hp.lr)
        clipped = coef < hp.lr
    # when the step follows the oracle's gradient as is, that new stack (ours to overwrite) holds the new models
    X = descend(X, lr.unsqueeze(1), d, out=d if d is fresh else None)
    return State(G=G, X=X, buf=buf), StepInfo(clipped)


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    assert ctx.hp.gamma is not None, "validated by the config: celgc has a step-length bound"
    return local_clipped_step(state, ctx, t, ctx.hp.gamma)


def model(state: State, ctx: Context) -> Tensor:
    return ctx.transport.observe(state.X)
