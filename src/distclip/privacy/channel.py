"""Local DP: a transport that adds Gaussian noise to every message a client sends (docs/algorithms.md §5, §8).

Client i's message c_i at communication round r leaves as c_i + ω_i^r with ω_i^r ~ N(0, (z·τ_i)² I) drawn by
:func:`distclip.privacy.noise.standard_normal` from (seed, client i, round r), so the server only ever sees
noisy messages while the client's own state, computed from c_i by the algorithm, stays noiseless. It wraps
any transport (simulator or torch.distributed); everything but the counted ``mean`` passes through.
Only algorithms whose every counted message is clipped to norm τ_i may use it (checked by the config).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..engine.transport import CommCounter, Transport
from .noise import LOCAL, standard_normal


class LocalNoise:
    def __init__(self, inner: Transport, std: Tensor, seed: int, secure: bool = False) -> None:
        self.inner = inner
        self.std = std  # [n_block] noise std z·τ_i of the clients held here
        self.seed = seed
        self.secure = secure

    def noise(self, like: Tensor, round_: int) -> Tensor:
        """ω_i^r for the clients held here, shaped like the message stack ``like``."""
        rows = like.reshape(len(like), like.shape[1:].numel())
        z = standard_normal(self.seed, LOCAL, self.inner.clients, round_, rows.shape[1], dtype=like.dtype,
                            device=like.device, secure=self.secure)
        return (self.std.unsqueeze(1) * z).view_as(like)

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        noisy = t + self.noise(t, self.inner.counter.comm_rounds)
        return self.inner.mean(noisy, down=down, sparse_k=sparse_k)

    def cohort(self, ids: Tensor) -> LocalNoise:
        """The view of a round's participants ``ids`` (sorted global ids), each with its own noise std."""
        view = self.inner.cohort(ids)
        rows = torch.searchsorted(self.inner.clients, view.clients)
        return LocalNoise(view, self.std[rows], self.seed, self.secure)

    @property
    def counter(self) -> CommCounter:
        return self.inner.counter

    @counter.setter
    def counter(self, value: CommCounter) -> None:
        self.inner.counter = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
