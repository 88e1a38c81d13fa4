"""Clip21-SGD2M: Clip21 with client momentum and a damped error-feedback step (docs/algorithms.md §8).

init:    v_i = g_i = 0, server g = 0
step t:  x^{t+1} = x^t − γ·g                                           (server; broadcast)
         v_i ← (1 − β1)·v_i + β1·∇F_i(x^{t+1}; ξ_i^{t+1});  δ_i = clip_τ(v_i − g_i)   (client i sends δ_i)
         g_i ← g_i + β2·δ_i;  g ← g + β2·(1/N) Σ_i c_i,  c_i = δ_i + ω_i
With ``noise_multiplier`` z > 0 the local-DP channel (:mod:`distclip.privacy.channel`) adds ω_i ~ N(0, (z·τ_i)² I)
to each message after clipping, so only the server's g is noisy and the client states g_i stay noiseless.
With client sampling only the participants S update v_i and g_i, and g moves by β2·(1/N) Σ_{i∈S} c_i (§13).
β1 = β2 = 1 is Clip21 with ``zero`` init; τ = ∞ as well is GD/SGD delayed by one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..clipping import KINDS, clip
from ..privacy.dp import DPNoise, check_local_dp
from ..schedule import StepSchedule
from ..schema import choice, group, in_range, key
from .base import Context, StepInfo, memory_mean, per_client, step_size, threshold
from .descent import descend


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size("step size γ: a number > 0, or 'c/L' (e.g. '1/L')")
    tau: float | list[float] | None = threshold("clipping threshold τ (inf allowed) or one τ_i per client")
    clip: str = key("norm", "norm | soft | coordinate clipping operator")
    schedule: StepSchedule = group(StepSchedule)
    beta1: float = key(0.1, "client momentum β1 in (0, 1]")
    beta2: float = key(1.0, "error-feedback step β2 in (0, 1]")
    dp: DPNoise = group(DPNoise)

    def validate(self, cfg: Any) -> Params:
        choice("algorithm.clip", self.clip, KINDS)
        in_range("algorithm.beta1", self.beta1, 0, 1, closed="(]")
        in_range("algorithm.beta2", self.beta2, 0, 1, closed="(]")
        check_local_dp(cfg.algorithm.name, self.dp, self.tau, self.clip)
        return self


@dataclass(frozen=True)
class State:
    x: Tensor  # server model [d]
    agg: Tensor  # server estimate g [d]
    v: Tensor = per_client()  # client momenta [n_block, d]
    mem: Tensor = per_client()  # client estimates g_i [n_block, d]


def init(ctx: Context) -> tuple[State, StepInfo]:
    x = ctx.x0.clone()
    zeros = x.new_zeros(len(ctx.transport.clients), x.numel())
    return State(x, x.new_zeros(x.numel()), zeros, zeros.clone()), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp = ctx.hp
    x = descend(state.x, hp.lr, state.agg)
    v = (1 - hp.beta1) * state.v + hp.beta1 * ctx.oracle.grads(x, t + 1)
    c = clip(v - state.mem, hp.tau, hp.clip)
    agg = state.agg + hp.beta2 * memory_mean(ctx.transport, c.out)
    return State(x, agg, v, state.mem + hp.beta2 * c.out), StepInfo(c.clipped)


def model(state: State, ctx: Context) -> Tensor:
    return state.x


def releases(hp: Params, steps: int) -> int:
    """Noisy messages per client in ``steps`` steps (one per step)."""
    return steps
