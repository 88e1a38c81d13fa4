"""Synthetic binary classification rows, as many as a cross-device run needs (client sampling over N = 10^5).

Row j has features a_j ~ N(0, I_d/d) and label b_j = sign(a_jᵀw + ε_j) with w ~ N(0, I_d) and label noise
ε_j ~ N(0, σ²), σ = 0.5: a linearly separable-ish problem whose rows are i.i.d., drawn from numpy's PCG64
seeded by the run's seed (so every process builds the same rows).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .libsvm import Dataset

NOISE = 0.5


def linear_classification(rows: int, features: int, seed: int) -> Dataset:
    """``rows`` rows of ``features`` Gaussian features with ±1 labels of a seeded linear model (see module)."""
    rng = np.random.default_rng([seed, 0x5EED])
    w = rng.standard_normal(features)
    a = rng.standard_normal((rows, features)) / np.sqrt(features)
    b = np.where(a @ w + NOISE * rng.standard_normal(rows) >= 0, 1.0, -1.0)
    return Dataset(sp.csr_matrix(a), b, f"synthetic-{rows}x{features}", "synthetic", {1.0: 1.0, -1.0: -1.0})
