"""Gaussian noise (and client sampling) as a pure function of (seed, stream, client id, round)
(docs/algorithms.md §8, §9).

The noise of client i at round r depends on nothing else: not on which process holds the client, nor on
how many clients it holds, nor on earlier draws, so a resumed or re-partitioned run adds the same noise
and checkpoints hold no generator state. The uniforms are SplitMix64 counter bits (:func:`distclip.rng.
counter_bits`, 53 bits each) and the Box–Muller transform turns each pair into two standard normals.

``secure=True`` takes the uniforms from the operating system's CSPRNG (``os.urandom``) instead: the noise
is then unpredictable and **not reproducible** (runs, resumes and ranks all draw different values). Noise
shared by all ranks (the server's) must then be drawn once and broadcast, as DP-FedAvg does. Box–Muller
in floating point is not hardened against floating-point side channels (Mironov 2012).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import Tensor

from ..rng import SAMPLING, counter_bits, derive_seed

# independent streams of one run's randomness
LOCAL = 1  # local DP: noise on each client's message
CENTRAL = 2  # central DP: noise on the server's aggregate
COUNT = 3  # adaptive clipping: noise on the unclipped count
# SAMPLING (4, from distclip.rng): which clients take part in a round (rng.cohort)
SERVER = 2**63  # the client id under which server-side noise is drawn (no real client has it)
__all__ = ["CENTRAL", "COUNT", "LOCAL", "SAMPLING", "SERVER", "standard_normal", "uniform"]


def _uniform_bits(seed: int, stream: int, clients: np.ndarray, step: int, count: int, secure: bool) -> np.ndarray:
    if secure:
        raw = np.frombuffer(os.urandom(8 * len(clients) * count), dtype=np.uint64)
        return raw.reshape(len(clients), count) >> np.uint64(11)
    return counter_bits(derive_seed(seed, stream), clients, step, count)


def standard_normal(seed: int, stream: int, clients: Tensor | np.ndarray | list[int], step: int, dim: int, *,
                    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                    secure: bool = False) -> Tensor:
    """N(0, I) rows ``[len(clients), dim]``: row j belongs to client ``clients[j]`` at round ``step``."""
    ids = np.asarray(clients.cpu() if isinstance(clients, Tensor) else clients, dtype=np.uint64).reshape(-1)
    half = (dim + 1) // 2
    bits = _uniform_bits(seed, stream, ids, step, 2 * half, secure).astype(np.float64) * 2.0**-53
    u1, u2 = 1.0 - bits[:, :half], bits[:, half:]  # u1 in (0, 1], so log(u1) is finite
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(2 * math.pi * u2), r * np.sin(2 * math.pi * u2)], axis=1)[:, :dim]
    return torch.from_numpy(np.ascontiguousarray(z)).to(dtype=dtype, device=device)


def uniform(seed: int, stream: int, clients: Tensor | np.ndarray | list[int], step: int) -> np.ndarray:
    """One uniform number in [0, 1) per client at round ``step`` (53 bits), from the same counters."""
    ids = np.asarray(clients.cpu() if isinstance(clients, Tensor) else clients, dtype=np.uint64).reshape(-1)
    return counter_bits(derive_seed(seed, stream), ids, step, 1)[:, 0].astype(np.float64) * 2.0**-53
