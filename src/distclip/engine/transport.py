"""Transports: how client tensors are averaged, and the accounting of what that costs.

This is the narrow interface between algorithms and engines. An algorithm only ever calls

- ``transport.mean(t)``: average a ``[n_block, *shape]`` stack of client tensors over all N
  clients; every participant receives the result. One call is one communication round and counts
  ``numel`` floats up per client, and the same down unless ``down=False`` (the result stays on the
  server). ``sparse_k=k`` says each client sends only its k largest entries and their indices (Top-k).
- ``transport.observe(t)``: the same average for logging only; it is never counted.

The engine loop additionally uses a few uncounted bookkeeping calls (``status``, ``gather_clients``,
``broadcast``, ``agree``). With client sampling the rules talk to ``transport.cohort(ids)``, a view of the
same transport in which only the round's participants S exist: ``n_clients`` = |S| (the divisor of ``mean``;
the mean of no participant is 0), ``clients`` the participants held here, ``population`` = N still, and the
counter shared (docs/algorithms.md §13).

:class:`InProcess` holds all N clients in one process; :class:`distclip.engine.distributed.TorchDistributed`
holds a contiguous block of clients per ``torch.distributed`` rank.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import DistclipError

INDEX_BYTES = 8  # indices travel as int64


@dataclass
class CommCounter:
    """Cumulative communication per client (docs/algorithms.md §0, §10)."""

    comm_rounds: int = 0
    floats_up: int = 0
    floats_down: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    def record(self, numel: int, itemsize: int, down: bool, sparse_k: int | None) -> None:
        """One round in which each client sent a ``numel``-float message (or k values + k indices)."""
        self.comm_rounds += 1
        if sparse_k is None:
            self.floats_up += numel
            self.bytes_up += numel * itemsize
        else:
            self.floats_up += sparse_k
            self.bytes_up += sparse_k * (itemsize + INDEX_BYTES)
        if down:
            self.floats_down += numel
            self.bytes_down += numel * itemsize

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Transport(Protocol):
    """What algorithms and the loop may do with client tensors. ``clients``: global ids held here;
    ``n_clients``: the clients taking part (all N, or a round's cohort); ``population``: N."""

    n_clients: int
    population: int
    clients: Tensor
    counter: CommCounter
    rank: int
    world: int

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor: ...

    def observe(self, t: Tensor) -> Tensor: ...

    def status(self, row: Tensor) -> Tensor: ...

    def gather_clients(self, t: Tensor) -> Tensor: ...

    def broadcast(self, obj: Any) -> Any: ...

    def agree(self, error: str | None) -> None: ...

    def cohort(self, ids: Tensor) -> Transport: ...


def participation(transport: Transport) -> float:
    """|S|/N, the share of all clients taking part in this round (1 without sampling): what a server aggregate of
    per-client memories, (1/N) Σ_i g_i, moves by per unit of the participants' mean message (docs/algorithms.md §13)."""
    return transport.n_clients / transport.population


class InProcess:
    """All N clients in this process: ``mean`` is a reduction over the leading client dimension."""

    rank = 0
    world = 1

    def __init__(self, n_clients: int, device: torch.device | str = "cpu") -> None:
        self.n_clients = self.population = n_clients
        self.clients = torch.arange(n_clients, device=device)
        self.counter = CommCounter()

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        self.counter.record(t.shape[1:].numel(), t.element_size(), down, sparse_k)
        return t.mean(dim=0) if len(t) else t.new_zeros(t.shape[1:])

    def cohort(self, ids: Tensor) -> InProcess:
        """The view in which only clients ``ids`` (sorted global ids) take part; the counter is shared."""
        view = copy.copy(self)
        view.clients, view.n_clients = ids, len(ids)
        return view

    def observe(self, t: Tensor) -> Tensor:
        return t.mean(dim=0)

    def status(self, row: Tensor) -> Tensor:
        """Every participant's ``row``, stacked ``[world, k]``."""
        return row.unsqueeze(0)

    def gather_clients(self, t: Tensor) -> Tensor:
        """The ``[N, ...]`` stack of all clients' values of a per-client tensor."""
        return t

    def broadcast(self, obj: Any) -> Any:
        """``obj`` as rank 0 has it."""
        return obj

    def agree(self, error: str | None) -> None:
        """Raise on every participant if any of them has an error."""
        if error is not None:
            raise DistclipError(error)
