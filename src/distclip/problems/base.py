"""What a problem provides to the engine (docs/algorithms.md §0).

f(x) = (1/N) Σ_i f_i(x) over N clients, x ∈ R^d a flat parameter vector. Client quantities are
computed for a block of clients at once: ``x`` is either one point ``[d]`` shared by the block or a
stack ``[n_block, d]`` of per-client points, and results carry a leading client dimension.
A problem with per-client state of its own (the AWD-LSTM's carried hidden states) also has
``client_state(clients) -> dict[str, Tensor]`` and ``load_client_state(clients, state)``, which
checkpoints save and restore.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ..rng import sample_indices


class Problem(Protocol):
    dim: int
    n_clients: int

    def x0(self) -> Tensor:
        """The configured start x^0, shape ``[d]``."""

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        """∇f_i (``batch`` None) or the minibatch gradient on rows ``batch[j]`` of client ``clients[j]``.

        ``draw`` numbers the evaluation (the step), for problems whose data move with it (rotating shards).
        The result is a new tensor that the caller owns: rules may overwrite it (see ``descent.descend``).
        """

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        """f_i at ``x`` for each client of the block, shape ``[n_block]``."""

    def loss(self, x: Tensor) -> float:
        """The full objective f(x)."""

    def grad(self, x: Tensor) -> Tensor:
        """∇f(x), shape ``[d]``."""

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        """More numbers to log at ``x`` (test loss and accuracy, ...); may be empty."""

    def smoothness(self) -> float:
        """A smoothness constant L of f, for step sizes written as ``"c/L"``."""

    def rows_per_client(self) -> int:
        """Samples per client (0 for problems without samples, which reject minibatches)."""

    def targets(self) -> Tensor | None:
        """Per-client vectors ``[N, d]`` to average (mean estimation), or None if the problem has none."""

    def info(self) -> dict[str, Any]:
        """Facts for ``summary.json`` (rows dropped by the partition, label counts, ...)."""


def take_rows(t: Tensor, clients: Tensor, batch: Tensor | None) -> Tensor:
    """Rows ``batch[j]`` of client ``clients[j]`` from ``t`` ``[N, m, ...]`` (all rows if ``batch`` is None); a
    minibatch is gathered as whole rows of ``t`` viewed as ``[N·m, ...]`` (``index_select``, faster than advanced
    indexing)."""
    if batch is None:
        return t[clients]
    rows = (clients.unsqueeze(1) * t.shape[1] + batch).flatten()
    return t.flatten(0, 1).index_select(0, rows).view(*batch.shape, *t.shape[2:])


@dataclass(frozen=True)
class ClientOracle:
    """A problem bound to the clients one process holds, with their minibatch sampling.

    Minibatch indices are drawn from (seed, client id, draw), see :mod:`distclip.rng`, so the
    numbers never depend on how clients are spread over processes.
    """

    problem: Problem
    clients: Tensor
    batch_size: int
    seed: int

    def grads(self, x: Tensor, draw: int, *, batch_size: int | None = None, stream: int = 0) -> Tensor:
        """Client gradients at ``x`` (``[d]`` or ``[n_block, d]``); ``draw`` numbers the evaluation.

        ``batch_size`` overrides the run's minibatch (0: full gradients); ``stream`` picks an independent
        sequence of minibatches for the same draw (see :func:`distclip.rng.sample_indices`).
        """
        batch, size = None, self.batch_size if batch_size is None else batch_size
        if size > 0:
            idx = torch.from_numpy(
                sample_indices(self.seed, self.host_clients, draw, size, self.problem.rows_per_client(), stream)
            )
            # to a GPU from pinned memory without waiting: a pageable copy would synchronise with the device
            batch = idx.pin_memory().to(self.clients.device, non_blocking=True) if self.clients.is_cuda else idx
        return self.problem.client_grads(x, self.clients, batch, draw)

    @functools.cached_property
    def host_clients(self) -> np.ndarray:
        """The client ids as a numpy array, copied from the device once (not at every draw)."""
        return self.clients.cpu().numpy()

    def targets(self) -> Tensor:
        t = self.problem.targets()
        assert t is not None, "validated by the config: the problem provides targets"
        return t[self.clients]
