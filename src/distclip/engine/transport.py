"""Transports: how client tensors are averaged, and the accounting of what that costs.

This is the narrow interface between algorithms and engines. An algorithm only ever calls

- ``transport.mean(t)``: average a ``[n_block, *shape]`` stack of client tensors over all N
  clients; every participant receives the result. One call is one communication round and counts
  ``numel`` floats up per client, and the same down unless ``down=False`` (the result stays on the
  server). ``sparse_k=k`` says each client sends only its k largest entries and their indices (Top-k).
- ``transport.observe(t)``: the same average for logging only; it is never counted.

The engine loop additionally uses a few uncounted bookkeeping calls (``flag_nonfinite``/``alarm``,
``status``, ``gather_clients``, ``broadcast``, ``agree``). :class:`InProcess` holds all N clients in
one process; :class:`distclip.engine.distributed.TorchDistributed` holds a contiguous block of
clients per ``torch.distributed`` rank.
"""

from __future__ import annotations

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
    """What algorithms and the loop may do with client tensors. ``clients``: global ids held here."""

    n_clients: int
    clients: Tensor
    counter: CommCounter
    rank: int
    world: int
    alarm: bool  # some participant flagged non-finite values (seen at the latest collective)

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor: ...

    def observe(self, t: Tensor) -> Tensor: ...

    def flag_nonfinite(self) -> None: ...

    def status(self, row: Tensor) -> Tensor: ...

    def gather_clients(self, t: Tensor) -> Tensor: ...

    def broadcast(self, obj: Any) -> Any: ...

    def agree(self, error: str | None) -> None: ...


class InProcess:
    """All N clients in this process: ``mean`` is a reduction over the leading client dimension."""

    rank = 0
    world = 1

    def __init__(self, n_clients: int, device: torch.device | str = "cpu") -> None:
        self.n_clients = n_clients
        self.clients = torch.arange(n_clients, device=device)
        self.counter = CommCounter()
        self.alarm = False

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        self.counter.record(t[0].numel(), t.element_size(), down, sparse_k)
        return t.mean(dim=0)

    def observe(self, t: Tensor) -> Tensor:
        return t.mean(dim=0)

    def flag_nonfinite(self) -> None:
        self.alarm = True

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
