"""Schedules: *when* clients synchronise and *how large* steps are at step t, apart from the rules.

- ``Every(I)`` marks steps t with t % I == 0 (t = 0 included) as communication steps, the schedule of
  CELGC's Algorithm 1 and of Local SGD (docs/algorithms.md §3.1, §2.4). ``Every(1)`` is every step.
- ``StepSize`` gives the factor s(t) that multiplies the step size η **and** CELGC's γ together, so
  the clipping threshold γ/η stays constant (docs/algorithms.md §3.2, "joint decay"): ``milestones`` multiplies by
  ``decay`` at each listed step, ``cosine`` is ½(1 + cos(πt/T)).
- ``StepSchedule`` is the four ``[algorithm]`` keys that choose it, held by every rule with a step size.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import DistclipError
from .schema import choice, key


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


@dataclass(frozen=True)
class StepSchedule:
    """The step-size schedule keys of a rule with a step size (η and γ scaled together)."""

    lr_schedule: str = key("constant", "constant | milestones | cosine (lr and gamma scaled together)")
    milestones: list[int] = key(help="steps (or epochs, see milestone_unit) at which lr and gamma decay",
                                factory=list)
    milestone_unit: str = key("steps", "steps | epochs: the unit of milestones")
    decay: float = key(0.1, "factor applied at each milestone")

    def validate(self, cfg: Any = None) -> None:
        choice("algorithm.lr_schedule", self.lr_schedule, ("constant", "milestones", "cosine"))
        choice("algorithm.milestone_unit", self.milestone_unit, ("steps", "epochs"))
        if (self.lr_schedule == "milestones") != bool(self.milestones):
            raise DistclipError("algorithm.milestones (steps) go with lr_schedule = 'milestones', which needs them")
        if any(m < 1 for m in self.milestones) or not 0 < self.decay <= 1:
            raise DistclipError("algorithm.milestones must be >= 1 and algorithm.decay in (0, 1]")

    def active(self) -> bool:
        """Whether the keys mean anything (a constant step writes none of them)."""
        return self.lr_schedule != "constant"

    def step_size(self, steps_per_epoch: int, total: int) -> StepSize | None:
        """The factor s(t) over a run of ``total`` steps (None: constant)."""
        if not self.active():
            return None
        ms = [m * steps_per_epoch for m in self.milestones] if self.milestone_unit == "epochs" else self.milestones
        return StepSize(self.lr_schedule, list(ms), self.decay, total)
