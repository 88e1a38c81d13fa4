"""EF21 error feedback (docs/algorithms.md §4), the template of the Clip21 family.

init:      g_i^0 = C(∇f_i(x^0)) (``compressed_grad``, default), ∇f_i(x^0) (``grad``) or 0 (``zero``);
           g^0 = (1/N) Σ_i g_i^0
step k:    x^{k+1} = x^k − γ·g^k                                  (server; x^{k+1} is broadcast)
           c_i = C(∇f_i(x^{k+1}) − g_i^k);  g_i^{k+1} = g_i^k + c_i   (client i sends c_i)
           g^{k+1} = g^k + (1/N) Σ_i c_i                           (server)
With client sampling only the round's participants S compute and send c_i and update g_i, and
g^{k+1} = g^k + (1/N) Σ_{i∈S} c_i (EF21-PP, Fatkhullin et al. 2021; docs/algorithms.md §13).
C is Top-k (ties to the lower index) or the identity. :func:`ef_init` and :func:`ef_step` are the
recursion for any operator C; Clip21 (C = clip_τ) and Clip21-Avg reuse them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..compressors import KINDS, Compressor
from ..errors import DistclipError
from ..schedule import StepSchedule
from ..schema import choice, group, key
from .base import Context, StepInfo, memory_mean, per_client, step_size
from .descent import descend

#: C: client rows ``[n, d]`` -> (C(rows), per-client clip flags or None)
Operator = Callable[[Tensor], tuple[Tensor, Tensor | None]]
#: the client signal at a point: (x, draw) -> ``[n, d]`` (gradients, or the vectors to average)
Signal = Callable[[Tensor, int], Tensor]


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size("step size γ: a number > 0, or 'c/L' (e.g. '1/L')")
    compressor: str = key("top-k", "top-k | identity")
    k: int | None = key(None, "top-k: entries kept per message")
    init: str = key("compressed_grad", "memory init g_i^0: compressed_grad | grad | zero")
    schedule: StepSchedule = group(StepSchedule)

    def validate(self, cfg: Any) -> Params:
        choice("algorithm.compressor", self.compressor, KINDS)
        if self.compressor == "top-k" and (self.k is None or self.k < 1):
            raise DistclipError("ef21 with compressor top-k needs algorithm.k >= 1 (entries kept per message)")
        choice("algorithm.init (for ef21)", self.init, ("compressed_grad", "grad", "zero"))
        return self

    @property
    def compress(self) -> Compressor:
        return Compressor(self.compressor, self.k)


@dataclass(frozen=True)
class State:
    x: Tensor  # server model [d]
    mem: Tensor = per_client()  # client memories g_i [n_block, d]
    agg: Tensor  # server aggregate g = mean_i g_i [d]


def ef_init(
    ctx: Context, op: Operator, init: str, signal: Signal, sparse_k: int | None
) -> tuple[State, StepInfo]:
    """State at k = 0; ``init`` is ``operator`` (g_i^0 = C(signal)), ``grad`` or ``zero``."""
    x = ctx.x0.clone()
    n = len(ctx.transport.clients)
    if init == "zero":
        return State(x, x.new_zeros(n, x.numel()), x.new_zeros(x.numel())), StepInfo()
    s = signal(x, 0)
    mem, flags = (s, None) if init == "grad" else op(s)
    agg = ctx.transport.mean(mem, sparse_k=None if init == "grad" else sparse_k)
    return State(x, mem, agg), StepInfo(flags)


def ef_step(
    state: State, ctx: Context, t: int, op: Operator, signal: Signal, lr: float, sparse_k: int | None,
    down: bool = True,
) -> tuple[State, StepInfo]:
    """One step k = t of the recursion above (``lr`` is γ; 0 keeps x fixed)."""
    x = descend(state.x, lr, state.agg) if lr != 0 else state.x
    c, flags = op(signal(x, t + 1) - state.mem)
    agg = state.agg + memory_mean(ctx.transport, c, down=down, sparse_k=sparse_k)
    return State(x, state.mem + c, agg), StepInfo(flags)


def _compress(ctx: Context) -> Operator:
    compress = ctx.hp.compress
    return lambda rows: (compress(rows), None)


def _sparse_k(ctx: Context) -> int | None:
    return ctx.hp.compress.sparse_k(ctx.x0.numel())


def init(ctx: Context) -> tuple[State, StepInfo]:
    mode = "operator" if ctx.hp.init == "compressed_grad" else ctx.hp.init
    return ef_init(ctx, _compress(ctx), mode, ctx.oracle.grads, _sparse_k(ctx))


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    return ef_step(state, ctx, t, _compress(ctx), ctx.oracle.grads, ctx.hp.lr, _sparse_k(ctx))


def model(state: State, ctx: Context) -> Tensor:
    return state.x

