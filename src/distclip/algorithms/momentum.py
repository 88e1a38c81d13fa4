"""The update direction of ``torch.optim.SGD``: weight decay, then (Nesterov) momentum.

d = g + wd·x;  buf ← d at its first use, else μ·buf + (1 − dampening)·d;  d ← buf, or d + μ·buf
(Nesterov). Works on one model ``[d]`` or a client stack ``[n, d]``; ``buf`` is None until first use.
"""

from __future__ import annotations

from torch import Tensor


def sgd_direction(
    g: Tensor, x: Tensor, buf: Tensor | None, momentum: float, dampening: float, nesterov: bool, wd: float
) -> tuple[Tensor, Tensor | None]:
    d = g + wd * x if wd != 0 else g
    if momentum == 0:
        return d, buf
    buf = d.clone() if buf is None else momentum * buf + (1 - dampening) * d
    return (d + momentum * buf if nesterov else buf), buf
