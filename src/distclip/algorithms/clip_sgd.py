"""Naive Clip-GD / Clip-SGD and naive parallel SGDClip (spec: algorithms.md §2.2, §2.3).

``clip_at = "client"`` (Clip-GD/SGD):   x^{k+1} = x^k − γ·(1/N) Σ_i clip_τ(g_i^k)
``clip_at = "server"`` (naive parallel): x^{k+1} = x^k − η·clip_τ((1/N) Σ_i g_i^k)
                                         (= x − min(η, γ/‖ḡ‖)·ḡ with τ = γ/η)
g_i^k = ∇f_i(x^k) with full gradients, a minibatch gradient otherwise. ``official = true`` also
averages the (identical) replicas before each gradient, as CELGC's ``train.py --baseline`` does,
so its communication and wall clock match the paper's baseline. With ``noise_multiplier`` > 0 and client-side
clipping each clipped gradient leaves with Gaussian noise (DP-SGD with local noise, :mod:`distclip.privacy.channel`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..clipping import clip
from .base import Context, Hyper, StepInfo
from .descent import descend


@dataclass(frozen=True)
class State:
    x: Tensor


def init(ctx: Context) -> tuple[State, StepInfo]:
    return State(ctx.x0.clone()), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, tr = ctx.hp, ctx.transport
    x = state.x
    if hp.official:
        x = tr.mean(x.expand(len(tr.clients), -1))
    g = ctx.oracle.grads(x, t)
    if hp.clip_at == "client":
        c = clip(g, hp.tau, hp.clip)
        return State(descend(x, hp.lr, tr.mean(c.out))), StepInfo(c.clipped)
    c = clip(tr.mean(g).unsqueeze(0), hp.tau[:1], hp.clip)
    return State(descend(x, hp.lr, c.out[0])), StepInfo(c.clipped.expand(len(tr.clients)))


def model(state: State, ctx: Context) -> Tensor:
    return state.x



def releases(hp: Hyper, steps: int) -> int:
    """Noisy messages per client in ``steps`` steps (client-side clipping: one clipped gradient per step)."""
    return steps
