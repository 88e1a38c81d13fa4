"""Schedules: *when* clients synchronise and *how large* steps are at step t, apart from the rules.

- ``Every(I)`` marks steps t with t % I == 0 (t = 0 included) as communication steps, the schedule of
  CELGC's Algorithm 1 and of Local SGD (spec: algorithms.md §3.1, §2.4). ``Every(1)`` is every step.
- ``StepSize`` gives the factor s(t) that multiplies the step size η **and** CELGC's γ together, so
  the clipping threshold γ/η stays constant (spec §3.2, "joint decay"): ``milestones`` multiplies by
  ``decay`` at each listed step, ``cosine`` is ½(1 + cos(πt/T)).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Every:
    """Communicate at steps t with t % interval == 0."""

    interval: int = 1

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"communication interval must be >= 1, got {self.interval}")

    def communicates(self, step: int) -> bool:
        return step % self.interval == 0

    def rounds_until(self, steps: int) -> int:
        """Number of communication steps among t = 0 .. steps − 1, i.e. ⌈steps/I⌉."""
        return -(-steps // self.interval)


@dataclass(frozen=True)
class StepSize:
    """Factor s(t) on η and γ: ``constant`` (1), ``milestones`` (decay^#{m <= t}) or ``cosine`` over T steps."""

    kind: str = "constant"
    milestones: list[int] = field(default_factory=list)
    decay: float = 0.1
    total: int = 1

    def factor(self, step: int) -> float:
        if self.kind == "milestones":
            return self.decay ** bisect.bisect_right(sorted(self.milestones), step)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, self.total) / max(1, self.total)))
        return 1.0
