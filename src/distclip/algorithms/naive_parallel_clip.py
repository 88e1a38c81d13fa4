"""Naive parallel SGDClip: average the gradients, clip the average (docs/algorithms.md §2.3).

x^{k+1} = x^k − η·clip_τ(ḡ^k),  ḡ^k = (1/N) Σ_i g_i^k   (= x − min(η, γ/‖ḡ‖)·ḡ with γ = η·τ)
It is CELGC with I = 1 and ``baseline = true``. ``official = true`` also averages the (identical)
replicas before each gradient, as CELGC's ``train.py --baseline`` does (2 collectives per step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..clipping import KINDS
from ..schedule import StepSchedule
from ..schema import choice, group, key
from .base import StepInfo, step_size, threshold  # noqa: F401
from .clip_sgd import State, init, model, step


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size()
    tau: float | list[float] | None = threshold("clipping threshold τ = γ/η of the averaged gradient (inf allowed)")
    clip: str = key("norm", "norm | soft | coordinate clipping operator")
    clip_at: str = key("server", "server: the only place this method clips (kept for older configs)")
    official: bool = key(False, "also average the replicas before each gradient (CELGC's --baseline code)")
    schedule: StepSchedule = group(StepSchedule)

    def validate(self, cfg: Any) -> Params:
        choice("algorithm.clip", self.clip, KINDS)
        choice(f"algorithm.clip_at (for {cfg.algorithm.name})", self.clip_at, ("server",))
        return self


__all__ = ["Params", "State", "init", "step", "model"]
