"""SCAFFOLD: local steps corrected by control variates (Karimireddy et al., ICML 2020; docs/algorithms.md §11).

round r = steps rI .. rI + I − 1, from the server model x and control variate c:
  client i:  y_i ← x;  I times: y_i ← y_i − η·(g_i(y_i) − c_i + c),  g_i a minibatch (or full) gradient
             c_i⁺ = g_i(x) on a fresh batch (``option = "I"``)  or  c_i − c + (x − y_i)/(I·η)  (``"II"``)
             sends (y_i, c_i⁺ − c_i): one average of 2d floats, and receives (x, c) back
  server:    x ← x + η_g·((1/N) Σ_i y_i − x)   (η_g = 1: the average),   c ← c + (1/N) Σ_i (c_i⁺ − c_i)
With client sampling (§13) only the round's participants S run, send and update c_i; the server takes the mean
of their y_i and c ← c + (|S|/N)·mean_{i∈S} (c_i⁺ − c_i) (Karimireddy et al., Algorithm 1). Control variates
start at 0, so the first round is Local SGD; with c_i = c = 0 held, SCAFFOLD is Local SGD
(§2.4). Keys: ``lr`` η, ``local_steps`` I, ``option``, ``server_lr`` η_g and the step-size schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..engine.transport import participation
from ..errors import DistclipError
from ..schedule import StepSchedule
from ..schema import choice, group, key
from .base import Context, StepInfo, local_model, per_client, step_size
from .descent import descend

CONTROL_STREAM = 2  # option I's gradient at x draws its own minibatches (EPISODE's resample uses stream 1)


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size("local step size η: a number > 0, or 'c/L'")
    local_steps: int = key(1, "local steps I per round")
    option: str = key("II", "control variate update: II (from the local models, free) | I (a fresh gradient at "
                      "the server model, one more gradient per round)")
    server_lr: float = key(1.0, "global step size η_g > 0 (1: the server model is the average of the clients')")
    schedule: StepSchedule = group(StepSchedule)

    def validate(self, cfg: Any) -> Params:
        if self.local_steps < 1:
            raise DistclipError(f"algorithm.local_steps = {self.local_steps} must be >= 1")
        choice("algorithm.option (for scaffold)", self.option, ("I", "II"))
        if not 0 < self.server_lr < float("inf"):
            raise DistclipError(f"algorithm.server_lr = {self.server_lr} must be a finite number > 0")
        return self


@dataclass(frozen=True)
class State:
    x: Tensor  # server model [d]
    c: Tensor  # server control variate [d]
    X: Tensor = local_model()  # local models y_i [n_block, d]
    ci: Tensor = per_client()  # client control variates c_i [n_block, d]


def init(ctx: Context) -> tuple[State, StepInfo]:
    n, x = len(ctx.transport.clients), ctx.x0.clone()
    return State(x, torch.zeros_like(x), x.expand(n, -1).clone(), x.new_zeros(n, x.numel())), StepInfo()


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, tr = ctx.hp, ctx.transport
    x, c, X, ci = state.x, state.c, state.X, state.ci
    if t % hp.local_steps == 0:
        X = x.expand_as(X)  # every client starts the round from the server model it received
    d = ctx.oracle.grads(X, t).sub_(ci).add_(c)  # g − c_i + c, in place on the fresh gradient stack (ours)
    X = descend(X, hp.lr, d, out=d)
    if (t + 1) % hp.local_steps:
        return State(x, c, X, ci), StepInfo()
    if hp.option == "I":
        ci_new = ctx.oracle.grads(x, t, stream=CONTROL_STREAM)
    else:
        ci_new = ci - c + (x - X) / (hp.local_steps * hp.lr)
    avg = tr.mean(torch.cat([X, ci_new - ci], dim=1))  # one collective: models and control corrections
    d = x.numel()
    x = avg[:d] if hp.server_lr == 1 else x + hp.server_lr * (avg[:d] - x)
    share = participation(tr)  # with client sampling c moves by (1/N) Σ_{i∈S} Δc_i = (|S|/N)·mean_S Δc_i
    return State(x, c + (avg[d:] if share == 1 else share * avg[d:]), X, ci_new), StepInfo()


def model(state: State, ctx: Context) -> Tensor:
    """The average of the local models (the server model at the end of a round)."""
    return ctx.transport.observe(state.X)
