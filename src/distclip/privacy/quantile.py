"""Adaptive clipping norm: C tracks the q-quantile of the update norms (docs/algorithms.md §9).

Andrew, Thakkar, McMahan, Ramaswamy 2021, with the sign convention of TF-Privacy's
``quantile_estimator_query.py``: b_i = 1[‖Δ_i‖ ≤ C] is 1 when client i was **not** clipped and q is the
target **unclipped** fraction, so

    b̄ = clamp((Σ_i (b_i − ½) + N(0, σ_b²))/m + ½, 0, 1)
    geometric:  C ← C·exp(−η_C·(b̄ − q))        arithmetic:  C ← max(0, C − η_C·(b̄ − q))

C shrinks when more than q of the updates pass unclipped. Flower's ``DifferentialPrivacyServerSideAdaptive
Clipping`` feeds the *clipped* bit into the same formula, whose fixed point is then unstable; a Flower
``target_clipped_quantile`` q_c corresponds to q = 1 − q_c here. The count query has sensitivity ½, so with
total noise multiplier z the update noise gets z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) (the paper's split).
"""

from __future__ import annotations

import torch
from torch import Tensor

RULES = ("geometric", "arithmetic")


def unclipped_fraction(centred_sum: Tensor, m: int, count_noise: Tensor | float = 0.0) -> Tensor:
    """b̄ from Σ_i (b_i − ½) over m clients and the count noise drawn with std σ_b."""
    return torch.clamp((centred_sum + count_noise) / m + 0.5, 0.0, 1.0)


def update(clip: Tensor, unclipped: Tensor, quantile: float, lr: float, rule: str = "geometric") -> Tensor:
    """The next clipping norm from the current one and the (noisy) unclipped fraction b̄; η_C = 0 keeps C."""
    if rule == "geometric":
        return clip * torch.exp(-lr * (unclipped - quantile))
    if rule == "arithmetic":
        return torch.clamp(clip - lr * (unclipped - quantile), min=0.0)
    raise ValueError(f"adaptive clipping rule {rule!r}; choose one of: {', '.join(RULES)}")


def default_count_noise(noise_multiplier: float, m: float) -> float:
    """σ_b = m/20 (m: expected clients per round) when the run is private (TF-Privacy's recommendation), else 0."""
    return m / 20 if noise_multiplier > 0 else 0.0


def split_noise(noise_multiplier: float, count_noise: float) -> float:
    """z_Δ, the update's share of the total multiplier z when the count carries noise σ_b (z = 0 gives 0)."""
    if noise_multiplier == 0:
        return 0.0
    if count_noise == 0:
        return noise_multiplier
    if noise_multiplier >= 2 * count_noise:
        raise ValueError(f"noise multiplier z = {noise_multiplier:g} must be below 2·σ_b = {2 * count_noise:g}")
    return (noise_multiplier**-2 - (2 * count_noise) ** -2) ** -0.5


__all__ = ["RULES", "default_count_noise", "split_noise", "unclipped_fraction", "update"]
