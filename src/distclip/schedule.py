"""Communication schedules: *when* clients synchronise, kept apart from *how* (the algorithms).

``Every(I)`` marks steps t with t % I == 0 (t = 0 included) as communication steps, the schedule of
CELGC's Algorithm 1 and of Local SGD (spec: algorithms.md §3.1, §2.4). ``Every(1)`` is every step.
"""

from __future__ import annotations

from dataclasses import dataclass


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
