"""Clip21-Avg: mean estimation with clipped messages (docs/algorithms.md §6).

client i: c_i = clip_τ(a_i − v_i^k);  v_i^{k+1} = v_i^k + c_i        (sends c_i, ‖c_i‖ ≤ τ)
server:   v^{k+1} = v^k + (1/N) Σ_i c_i  (the estimate; it stays on the server)
with v_i^0 = 0. v^k equals mean_i a_i exactly from k⋆ = max_i ⌈‖a_i‖/τ⌉ on. This is the Clip21
recursion with the fixed vectors a_i as signal and no model step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..clipping import KINDS
from ..schema import choice, key
from .base import Context, StepInfo, threshold
from .clip21 import clip_operator
from .ef21 import State, ef_init, ef_step


@dataclass(frozen=True)
class Params:
    tau: float | list[float] | None = threshold("clipping threshold τ (inf allowed) or one τ_i per client")
    clip: str = key("norm", "norm | soft | coordinate clipping operator")

    def validate(self, cfg: Any) -> Params:
        choice("algorithm.clip", self.clip, KINDS)
        return self


def _signal(ctx: Context):
    targets = ctx.oracle.targets()
    return lambda x, draw: targets


def init(ctx: Context) -> tuple[State, StepInfo]:
    return ef_init(ctx, clip_operator(ctx), "zero", _signal(ctx), None)


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    return ef_step(state, ctx, t, clip_operator(ctx), _signal(ctx), 0.0, None, down=False)


def model(state: State, ctx: Context) -> Tensor:
    return state.agg
