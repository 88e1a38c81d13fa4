"""Naive Clip-GD / Clip-SGD: clip each client's gradient, then average (docs/algorithms.md §2.2).

``clip_at = "client"``: x^{k+1} = x^k − γ·(1/N) Σ_i clip_τ(g_i^k)
``clip_at = "server"``: x^{k+1} = x^k − γ·clip_τ((1/N) Σ_i g_i^k)   (Clip21 Example 1.1's variant)
g_i^k = ∇f_i(x^k) with full gradients, a minibatch gradient otherwise; clip_τ is the exact operator of
:mod:`distclip.clipping` (§1). ``official = true`` also averages the (identical) replicas before each
gradient, as CELGC's ``train.py --baseline`` does, so its communication matches the paper's baseline.
With ``noise_multiplier`` > 0 and client-side clipping each clipped gradient leaves with Gaussian noise
(DP-SGD with local noise, :mod:`distclip.privacy.channel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..clipping import KINDS, clip
from ..errors import DistclipError
from ..privacy.dp import DPNoise, check_local_dp
from ..schedule import StepSchedule
from ..schema import choice, group, key
from .base import Context, StepInfo, step_size, threshold
from .descent import descend


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size("step size γ: a number > 0, or 'c/L' (e.g. '1/L')")
    tau: float | list[float] | None = threshold("clipping threshold τ (inf allowed) or one τ_i per client")
    clip: str = key("norm", "norm | soft | coordinate clipping operator")
    clip_at: str = key("client", "client (clip each gradient, then average) | server (clip the average)")
    official: bool = key(False, "also average the replicas before each gradient (CELGC's --baseline code)")
    schedule: StepSchedule = group(StepSchedule)
    dp: DPNoise = group(DPNoise)

    def validate(self, cfg: Any) -> Params:
        choice("algorithm.clip", self.clip, KINDS)
        choice(f"algorithm.clip_at (for {cfg.algorithm.name})", self.clip_at, ("client", "server"))
        if self.clip_at == "server" and isinstance(self.tau, list):
            raise DistclipError("per-client thresholds need clip_at = 'client'; the server clips one average")
        check_local_dp(cfg.algorithm.name, self.dp, self.tau, self.clip, clip_at=self.clip_at,
                       official=self.official)
        return self


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


def releases(hp: Params, steps: int) -> int:
    """Noisy messages per client in ``steps`` steps (client-side clipping: one clipped gradient per step)."""
    return steps
