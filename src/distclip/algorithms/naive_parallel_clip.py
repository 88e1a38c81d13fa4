"""Naive parallel SGDClip: average the gradients, clip the average (docs/algorithms.md §2.3).

x^{k+1} = x^k − min(η, γ/(1e-10 + ‖ḡ^k‖))·ḡ^k,  ḡ^k = (1/N) Σ_i g_i^k,  γ = η·τ
with the coefficient computed as the official CELGC code computes it (§1, "Clipping coefficient"), so that
this method and CELGC with ``baseline = true``, I = 1 are bit-identical under ``official = true``.
``official = true`` also averages the (identical) replicas before each gradient, as CELGC's
``train.py --baseline`` does (2 collectives per step), and evaluates the gradients at those replicas.
``clip = "soft"`` or ``"coordinate"`` uses η·clip_τ(ḡ) with that operator (extensions: the official code has
neither).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..clipping import KINDS, clip
from ..schedule import StepSchedule
from ..schema import choice, group, key
from .base import Context, StepInfo, step_size, threshold
from .clip_sgd import State, init, model
from .descent import descend


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size()
    tau: float | list[float] | None = threshold("clipping threshold τ = γ/η of the averaged gradient (inf allowed)")
    clip: str = key("norm", "norm | soft | coordinate clipping operator")
    clip_at: str = key("server", "server: the only place this method clips (kept for older configs)")
    official: bool = key(False, "also average the replicas before each gradient (CELGC's --baseline code)")
    schedule: StepSchedule = group(StepSchedule)

    def validate(self, cfg: Any) -> Params:
        choice("algorithm.clip", self.clip, KINDS)
        choice(f"algorithm.clip_at (for {cfg.algorithm.name})", self.clip_at, ("server",))
        return self


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, tr = ctx.hp, ctx.transport
    n, x = len(tr.clients), state.x
    if hp.official:  # every worker holds a replica: average them, take the gradients there
        x = tr.mean(x.expand(n, -1))
        gbar = tr.mean(ctx.oracle.grads(x.expand(n, -1), t))
    else:
        gbar = tr.mean(ctx.oracle.grads(x, t))
    if hp.clip != "norm":
        c = clip(gbar.unsqueeze(0), hp.tau[:1], hp.clip)
        return State(descend(x, hp.lr, c.out[0])), StepInfo(c.clipped.expand(n))
    coef = hp.tau[:1] * hp.lr / (1e-10 + torch.linalg.vector_norm(gbar))  # γ/(1e-10 + ‖ḡ‖), γ = η·τ
    return State(descend(x, torch.clamp(coef, max=hp.lr), gbar)), StepInfo((coef < hp.lr).expand(n))


__all__ = ["Params", "State", "init", "step", "model"]
