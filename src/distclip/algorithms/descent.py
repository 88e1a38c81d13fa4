"""The descent step x − lr·d that every rule applies to its model(s), in one fused pass.

``descend`` computes x − lr·d with a single ``addcmul`` (no [n, d] temporary for lr·d; the product
is fused with the subtraction, so it is rounded once). All rules go through it, so methods that
coincide mathematically (CELGC with I = 1 and Clip-SGD, Local SGD with γ = ∞ and CELGC, ...) also
round alike. ``lr`` is a number or a tensor broadcasting against d, e.g. per-client steps [n, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor


def descend(x: Tensor, lr: float | Tensor, d: Tensor, out: Tensor | None = None) -> Tensor:
    """x − lr·d as a new tensor, or written into ``out`` (which may be d itself, when the caller owns d and
    no longer needs it: a fresh gradient stack then becomes the new models without another [n, d] buffer)."""
    # a number becomes a 0-dim tensor filled on d's device (as_tensor would copy it from the host: a CUDA sync)
    scale = lr.to(d.dtype) if isinstance(lr, Tensor) else torch.full((), lr, dtype=d.dtype, device=d.device)
    return torch.addcmul(x, scale, d, value=-1, out=out)
