"""The update direction of ``torch.optim.SGD`` and its four keys: weight decay, then (Nesterov) momentum.

d = g + wd·x;  buf ← d at its first use, else μ·buf + (1 − dampening)·d;  d ← buf, or d + μ·buf
(Nesterov). Works on one model ``[d]`` or a client stack ``[n, d]``; ``buf`` is None until first use.
Rules that step along it hold an :class:`SGDDirection` (docs/algorithms.md §2.1, §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..errors import DistclipError
from ..schema import in_range, key


def sgd_direction(
    g: Tensor, x: Tensor, buf: Tensor | None, momentum: float, dampening: float, nesterov: bool, wd: float
) -> tuple[Tensor, Tensor | None]:
    d = g + wd * x if wd != 0 else g
    if momentum == 0:
        return d, buf
    buf = d.clone() if buf is None else momentum * buf + (1 - dampening) * d
    return (d + momentum * buf if nesterov else buf), buf


def check_client_buffers(direction: SGDDirection, sampled: bool, why: str = "client sampling") -> None:
    """Per-client momentum buffers under client sampling start at 0 when a client first takes part, which is
    torch's first-use rule buf = d only without dampening (docs/algorithms.md §13); refuse dampening there."""
    if sampled and direction.dampening != 0:
        raise DistclipError(f"algorithm.dampening > 0 with {why}: a client's momentum buffer would start at 0 "
                            "instead of its first direction; set dampening = 0")


@dataclass(frozen=True)
class SGDDirection:
    """``torch.optim.SGD``'s direction keys, shared by the rules that step along it."""

    momentum: float = key(0.0, "torch.optim.SGD momentum μ in [0, 1)")
    dampening: float = key(0.0, "torch.optim.SGD dampening in [0, 1)")
    nesterov: bool = key(False, "Nesterov momentum (needs momentum > 0 and dampening = 0)")
    weight_decay: float = key(0.0, "torch.optim.SGD weight decay (L2 penalty) >= 0")

    def validate(self, cfg: Any = None) -> None:
        in_range("algorithm.momentum", self.momentum, 0, 1)
        in_range("algorithm.dampening", self.dampening, 0, 1)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise DistclipError("algorithm.nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD)")
        if not self.weight_decay >= 0:
            raise DistclipError(f"algorithm.weight_decay = {self.weight_decay} must be >= 0")

    def __call__(self, g: Tensor, x: Tensor, buf: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """(d, new buffer) for gradient ``g`` at ``x``."""
        return sgd_direction(g, x, buf, self.momentum, self.dampening, self.nesterov, self.weight_decay)
