"""Compressors for error feedback (docs/algorithms.md §4), on stacked ``[n, d]`` client rows.

- ``identity``: C(x) = x (k = d).
- ``top-k``:    keep the k entries of largest |x_j| and zero the rest; ties go to the lower index
  (stable sort), so the result never depends on how clients are placed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("identity", "top-k")


@dataclass(frozen=True)
class Compressor:
    """A compressor and what it sends: ``k`` values plus ``k`` indices, or ``None`` for a dense row."""

    kind: str
    k: int | None = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.kind == "identity" or self.k is None or self.k >= x.shape[1]:
            return x
        order = torch.sort(x.abs(), dim=1, descending=True, stable=True).indices[:, : self.k]
        return torch.zeros_like(x).scatter_(1, order, x.gather(1, order))

    def sparse_k(self, dim: int) -> int | None:
        """Entries sent per client (values and as many indices), or ``None`` when dense."""
        return None if self.kind == "identity" or self.k is None or self.k >= dim else self.k
