"""Distributed GD and minibatch SGD (spec: algorithms.md §2.1).

client i: g_i = ∇f_i(x^k) (``gd``) or ∇F_i(x^k; B_i^k) (``sgd``), sent as is;
server:   x^{k+1} = x^k − η·d^k with d^k the ``torch.optim.SGD`` direction (weight decay, momentum)
          of ḡ^k = (1/N) Σ_i g_i.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Context, StepInfo
from .descent import descend
from .momentum import sgd_direction


@dataclass(frozen=True)
class State:
    x: Tensor
    buf: Tensor | None = None


def init(ctx: Context) -> tuple[State, StepInfo]:
    return State(ctx.x0.clone()), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    g = ctx.oracle.grads(state.x, t)  # client rule: send the gradient
    gbar = ctx.transport.mean(g)
    hp = ctx.hp
    d, buf = sgd_direction(gbar, state.x, state.buf, hp.momentum, hp.dampening, hp.nesterov, hp.weight_decay)
    return State(descend(state.x, hp.lr, d), buf), StepInfo()


def model(state: State, ctx: Context) -> Tensor:
    return state.x
