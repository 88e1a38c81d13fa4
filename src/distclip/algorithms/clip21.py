"""Clip21-GD / Clip21-SGD: EF21 with C = clip_τ (docs/algorithms.md §5).

init:    v_i^0 = clip_τ(∇f_i(x^0)) (``clip_grad``, default), ∇f_i(x^0) (``grad``) or 0 (``zero``)
step k:  x^{k+1} = x^k − γ·v^k,  v^k = (1/N) Σ_i v_i^k
         c_i = clip_τ(∇f_i(x^{k+1}) − v_i^k) (sent, ‖c_i‖ ≤ τ);  v_i^{k+1} = v_i^k + c_i
With ``batch_size > 0`` the gradients are minibatch gradients (Clip21-SGD, the library's rule).
With ``noise_multiplier`` > 0 every message c_i (the initial one too) leaves with Gaussian noise, the memories
stay noiseless (§5 generic form, :mod:`distclip.privacy.channel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..clipping import KINDS, clip
from ..privacy.dp import DPNoise, check_local_dp
from ..schedule import StepSchedule
from ..schema import choice, group, key
from .base import Context, StepInfo, step_size, threshold
from .ef21 import Operator, State, ef_init, ef_step


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size("step size γ: a number > 0, or 'c/L' (e.g. '1/L')")
    tau: float | list[float] | None = threshold("clipping threshold τ (inf allowed) or one τ_i per client")
    clip: str = key("norm", "norm | soft | coordinate clipping operator")
    init: str = key("clip_grad", "memory init v_i^0: clip_grad | grad | zero")
    schedule: StepSchedule = group(StepSchedule)
    dp: DPNoise = group(DPNoise)

    def validate(self, cfg: Any) -> Params:
        choice("algorithm.clip", self.clip, KINDS)
        choice("algorithm.init (for clip21)", self.init, ("clip_grad", "grad", "zero"))
        check_local_dp(cfg.algorithm.name, self.dp, self.tau, self.clip, init=self.init)
        return self


def clip_operator(ctx: Context) -> Operator:
    """clip_τ with the configured kind and per-client thresholds, reporting clip flags."""

    def op(rows: Tensor) -> tuple[Tensor, Tensor]:
        c = clip(rows, ctx.hp.tau, ctx.hp.clip)
        return c.out, c.clipped

    return op


def init(ctx: Context) -> tuple[State, StepInfo]:
    mode = "operator" if ctx.hp.init == "clip_grad" else ctx.hp.init
    return ef_init(ctx, clip_operator(ctx), mode, ctx.oracle.grads, None)


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    return ef_step(state, ctx, t, clip_operator(ctx), ctx.oracle.grads, ctx.hp.lr, None)


def model(state: State, ctx: Context) -> Tensor:
    return state.x


def releases(hp: Params, steps: int) -> int:
    """Noisy messages per client in ``steps`` steps: one per step, plus the initial round unless ``zero``."""
    return steps + (hp.init != "zero")
