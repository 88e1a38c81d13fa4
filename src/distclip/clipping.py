"""Clipping operators on stacked client tensors (docs/algorithms.md §1).

Every operator maps ``x`` of shape ``[n, d]`` (one row per client, all parameters flattened, so
``‖·‖`` is the global L2 norm) and a threshold ``tau`` (a float or a ``[n]`` tensor of per-client
thresholds τ_i) to a :class:`Clipped` result: the clipped rows, the pre-clip norms and a per-row
``clipped`` flag (the papers' clipping indicator).

- ``norm``:       clip_τ(x) = min(1, τ/‖x‖)·x, with clip_τ(0) = 0 and clip_∞ = identity.
- ``soft``:       soft_τ(x) = τx/(τ + ‖x‖) (extension; flagged as clipped whenever x ≠ 0 and τ < ∞).
- ``coordinate``: out_j = max(−τ, min(τ, x_j)) (extension; flagged when any coordinate moved).

Norm-type operators also expose :func:`scale`, the factor s with out = s·x, which CELGC uses to
clip with the norm of the raw gradient while stepping along the momentum direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("norm", "soft", "coordinate")


@dataclass(frozen=True)
class Clipped:
    """Result of clipping ``[n, d]`` rows: values, pre-clip norms ``[n]``, clipped flags ``[n]``."""

    out: Tensor
    norms: Tensor
    clipped: Tensor


def as_threshold(tau: float | Tensor, like: Tensor) -> Tensor:
    """Threshold as a ``[n]`` tensor in the dtype and device of ``like`` (``[n, d]``)."""
    return torch.as_tensor(tau, dtype=like.dtype, device=like.device).expand(like.shape[0])


def scale(norms: Tensor, tau: Tensor, kind: str) -> Tensor:
    """Factor s ``[n]`` with clip(x) = s·x for the norm-type operators ``norm`` and ``soft``."""
    if kind == "norm":
        # min(1, τ/‖x‖); ‖x‖ = 0 gives τ/0 = inf -> 1 (x returned unchanged); τ = inf gives 1, even
        # when ‖x‖ overflows to inf.
        return torch.where(torch.isinf(tau), torch.ones_like(norms), torch.clamp(tau / norms, max=1.0))
    if kind == "soft":
        return torch.where(torch.isinf(tau), torch.ones_like(norms), tau / (tau + norms))
    raise ValueError(f"clipping kind {kind!r} has no scalar scale; norm-type kinds are 'norm' and 'soft'")


def clip(x: Tensor, tau: float | Tensor, kind: str = "norm") -> Clipped:
    """Clip each row of ``x`` (``[n, d]``) with threshold τ (float or ``[n]``) by operator ``kind``."""
    t = as_threshold(tau, x)
    norms = torch.linalg.vector_norm(x, dim=1)
    if kind == "coordinate":
        bound = t.unsqueeze(1)
        out = torch.minimum(torch.maximum(x, -bound), bound)
        return Clipped(out, norms, (x.abs() > bound).any(dim=1))
    s = scale(norms, t, kind)
    return Clipped(x * s.unsqueeze(1), norms, (s < 1.0) & (norms > 0))
