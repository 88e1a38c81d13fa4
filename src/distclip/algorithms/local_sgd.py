"""Local SGD / FedAvg with full participation (docs/algorithms.md §2.4).

every I steps (t % I == 0): x^i ← (1/N) Σ_j x^j;  each client: x^i ← x^i − η·d(∇F_i(x^i; ξ))
with d the ``torch.optim.SGD`` direction and per-client momentum kept across rounds, never averaged.
It is CELGC (§3) with γ = ∞, and that is how it is computed. Keys: ``lr`` η, ``local_steps`` I, the SGD
direction and the step-size schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DistclipError
from ..schedule import StepSchedule
from ..schema import group, key
from .base import Context, StepInfo, step_size
from .celgc import State, init, local_clipped_step, model
from .momentum import SGDDirection, check_client_buffers


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size()
    local_steps: int = key(1, "communication interval I: models are averaged every I steps")
    sgd: SGDDirection = group(SGDDirection)
    schedule: StepSchedule = group(StepSchedule)

    def validate(self, cfg: Any) -> Params:
        check_client_buffers(self.sgd, cfg.sampling.active)
        if self.local_steps < 1:
            raise DistclipError(f"algorithm.local_steps = {self.local_steps} must be >= 1")
        return self


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    return local_clipped_step(state, ctx, t, lr=ctx.hp.lr, gamma=None, interval=ctx.hp.local_steps,
                              direction=ctx.hp.sgd)


__all__ = ["Params", "State", "init", "step", "model"]
