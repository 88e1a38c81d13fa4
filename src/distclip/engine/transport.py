"""Transports: how client tensors are averaged, and the accounting of what that costs.

This is the narrow interface between algorithms and engines. An algorithm only ever calls

- ``transport.mean(t)``: average a ``[n_local, *shape]`` stack of client tensors over all N
  clients; every participant receives the result. One call is one communication round and counts
  ``numel`` floats up per client, and the same down unless ``down=False`` (the result stays on the
  server). ``sparse_k=k`` says each client sent only k values and k indices (Top-k).
- ``transport.observe(t)``: the same average for logging only; it is never counted.

:class:`InProcess` holds all N clients in one process. A ``torch.distributed`` transport holds a
contiguous block of clients per rank and implements ``mean`` with one ``all_reduce`` on the flattened
block sum; algorithms do not change for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import torch
from torch import Tensor

INDEX_BYTES = 8  # indices travel as int64


@dataclass
class CommCounter:
    """Cumulative communication per client (spec: algorithms.md §0, §10)."""

    comm_rounds: int = 0
    floats_up: int = 0
    floats_down: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    def record(self, numel: int, itemsize: int, down: bool, sparse_k: int | None) -> None:
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
    """What algorithms may do with client tensors. ``clients`` are the global ids held here."""

    n_clients: int
    clients: Tensor
    counter: CommCounter

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor: ...

    def observe(self, t: Tensor) -> Tensor: ...


class InProcess:
    """All N clients in this process: ``mean`` is a reduction over the leading client dimension."""

    def __init__(self, n_clients: int, device: torch.device | str = "cpu") -> None:
        self.n_clients = n_clients
        self.clients = torch.arange(n_clients, device=device)
        self.counter = CommCounter()

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        self.counter.record(t[0].numel(), t.element_size(), down, sparse_k)
        return t.mean(dim=0)

    def observe(self, t: Tensor) -> Tensor:
        return t.mean(dim=0)
