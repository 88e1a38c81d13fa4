"""Distributed GD and minibatch SGD (docs/algorithms.md §2.1).

client i: g_i = ∇f_i(x^k) (``gd``) or ∇F_i(x^k; B_i^k) (``sgd``), sent as is;
server:   x^{k+1} = x^k − η·d^k with d^k the ``torch.optim.SGD`` direction (weight decay, momentum)
          of ḡ^k = (1/N) Σ_i g_i.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..schedule import StepSchedule
from ..schema import group
from .base import Context, StepInfo, step_size
from .descent import descend
from .momentum import SGDDirection


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size()
    sgd: SGDDirection = group(SGDDirection)
    schedule: StepSchedule = group(StepSchedule)


@dataclass(frozen=True)
class State:
    x: Tensor
    buf: Tensor | None = None


def init(ctx: Context) -> tuple[State, StepInfo]:
    return State(ctx.x0.clone()), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    g = ctx.oracle.grads(state.x, t)  # client rule: send the gradient
    gbar = ctx.transport.mean(g)
    d, buf = ctx.hp.sgd(gbar, state.x, state.buf)
    return State(descend(state.x, ctx.hp.lr, d), buf), StepInfo()


def model(state: State, ctx: Context) -> Tensor:
    return state.x
