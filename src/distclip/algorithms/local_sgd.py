"""Local SGD / FedAvg with full participation (spec: algorithms.md §2.4).

every I steps (t % I == 0): x^i ← (1/N) Σ_j x^j;  each client: x^i ← x^i − η·d(∇F_i(x^i; ξ))
with d the ``torch.optim.SGD`` direction and per-client momentum kept across rounds, never averaged.
It is CELGC (§3) with γ = ∞, and that is how it is computed.
"""

from __future__ import annotations

import torch

from .base import Context, StepInfo
from .celgc import State, init, local_clipped_step, model


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    inf = torch.full((len(ctx.transport.clients),), torch.inf, dtype=state.X.dtype, device=state.X.device)
    state, _ = local_clipped_step(state, ctx, t, inf)
    return state, StepInfo()


__all__ = ["State", "init", "step", "model"]
