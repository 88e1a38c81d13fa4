"""DP-FedAvg: FedAvg with flat update clipping and Gaussian noise on the average (spec: algorithms.md §9).

round r = steps rI .. rI + I − 1 (the round ends with the aggregation); S_r: each client independently with
probability q (Poisson sampling, ``client_rate``; q = 1, all clients, by default), m = qN expected clients:
  client i: I ``torch.optim.SGD`` steps from x (momentum kept per client) → x_i;  Δ_i = x_i − x
            b_i = 1[‖Δ_i‖ ≤ C] (before clipping);  i ∈ S_r sends clip_C(Δ_i) (+ b_i − ½ if adaptive; one average)
  server:   x ← x + (1/m) Σ_{i∈S_r} clip_C(Δ_i) + N(0, (z_Δ·C/m)² I);  the clients restart from x
            adaptive: b̄ = clamp((Σ_{S_r} (b_i − ½) + N(0, σ_b²))/m + ½, 0, 1), C ← update(C, b̄)  (privacy.quantile)
Round r's noise uses round r's C; z_Δ = z for fixed clipping, the split (z⁻² − (2σ_b)⁻²)^(−1/2) for adaptive.
Server noise and S_r are drawn from (seed, round) and (seed, client, round), so every rank agrees; dividing
by the expected m follows TF-Privacy. The simulator still trains the clients outside S_r (their updates are
discarded), and the counters count every client's message. z = 0, C = ∞, q = 1 is FedAvg.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..clipping import clip
from ..privacy import quantile
from ..privacy.noise import CENTRAL, COUNT, SAMPLING, SERVER, standard_normal, uniform
from .base import Context, Hyper, StepInfo, per_client
from .descent import descend
from .momentum import sgd_direction


@dataclass(frozen=True)
class State:
    x: Tensor  # server model [d]
    C: Tensor  # clipping norm (0-dim)
    X: Tensor = per_client()  # local models [n_block, d]
    buf: Tensor | None = per_client(default=None)  # momentum buffers, created at first use


def init(ctx: Context) -> tuple[State, StepInfo]:
    x = ctx.x0.clone()
    C = ctx.hp.tau[:1].reshape(()).clone()
    return State(x, C, x.expand(len(ctx.transport.clients), -1).clone()), StepInfo()


def _server_noise(ctx: Context, stream: int, r: int, dim: int) -> Tensor:
    """N(0, I) drawn identically on every rank (secure noise: rank 0's, broadcast)."""
    z = standard_normal(ctx.oracle.seed, stream, [SERVER], r, dim, dtype=ctx.x0.dtype, device=ctx.x0.device,
                        secure=ctx.hp.secure_noise)[0]
    return ctx.transport.broadcast(z) if ctx.hp.secure_noise else z


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, tr = ctx.hp, ctx.transport
    direction, buf = sgd_direction(ctx.oracle.grads(state.X, t), state.X, state.buf, hp.momentum, hp.dampening,
                                   hp.nesterov, hp.weight_decay)
    X = descend(state.X, hp.lr, direction)
    if (t + 1) % hp.local_steps:
        return State(state.x, state.C, X, buf), StepInfo()
    r, m, C, d = t // hp.local_steps, tr.n_clients * hp.client_rate, state.C, state.x.numel()
    adaptive = hp.adaptive_clip != "off"
    c = clip(X - state.x, C, "norm")
    msg = torch.cat([c.out, (~c.clipped).to(X.dtype).unsqueeze(1) - 0.5], dim=1) if adaptive else c.out
    taking_part = torch.ones_like(c.clipped)
    if hp.client_rate < 1:
        u = uniform(ctx.oracle.seed, SAMPLING, tr.clients, r)
        taking_part = torch.from_numpy(u < hp.client_rate).to(c.clipped.device)
        msg = msg * taking_part.to(msg.dtype).unsqueeze(1)
    total = tr.mean(msg) * tr.n_clients  # Σ over S_r of the messages
    z_upd = quantile.split_noise(hp.noise_multiplier, hp.count_noise) if adaptive else hp.noise_multiplier
    x = state.x + total[:d] / m
    if z_upd > 0:
        x = x + (z_upd * C / m) * _server_noise(ctx, CENTRAL, r, d)
    if adaptive:
        noise = hp.count_noise * _server_noise(ctx, COUNT, r, 1)[0] if hp.count_noise > 0 else 0.0
        C = quantile.update(C, quantile.unclipped_fraction(total[d], m, noise), hp.quantile, hp.clip_lr,
                            hp.adaptive_clip)
    return State(x, C, x.expand_as(X).clone(), buf), StepInfo(c.clipped & taking_part)


def model(state: State, ctx: Context) -> Tensor:
    return state.x


def releases(hp: Hyper, steps: int) -> int:
    """Noisy aggregates in ``steps`` steps: one per completed round."""
    return steps // hp.local_steps
