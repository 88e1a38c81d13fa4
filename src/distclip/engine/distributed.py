"""The ``torch.distributed`` transport: each rank holds a contiguous block of clients.

Block assignment: with N clients on W ranks, rank r holds clients ⌊rN/W⌋ .. ⌊(r+1)N/W⌋ − 1, so
blocks differ by at most one client (N = 20, W = 3: 6, 7, 7 clients). Client data and randomness
depend only on (seed, client id, step), never on the rank, so results do not depend on placement.

``mean`` sums the block locally and does **one** ``all_reduce`` of the flattened sum (the loop reads every
rank's non-finite flag at logged steps, through ``status``); Top-k messages travel as k values and k indices
per client through ``all_gather``. Backend: NCCL for CUDA tensors, gloo otherwise (``run.backend`` overrides). A failed
or timed-out collective raises a one-line :class:`DistclipError` naming the rank.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import DistclipError
from .transport import CommCounter


def block(n_clients: int, rank: int, world: int) -> tuple[int, int]:
    """Clients ``[lo, hi)`` held by ``rank`` out of ``world``."""
    return rank * n_clients // world, (rank + 1) * n_clients // world


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting RANK/WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(backend: str, device: str, timeout_s: float) -> torch.device:
    """Join the process group (env:// from torchrun) once; return this rank's device."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        chosen = ("nccl" if dev.type == "cuda" else "gloo") if backend == "auto" else backend
        timeout = _dt.timedelta(seconds=timeout_s)
        try:
            dist.init_process_group(chosen, store=_fresh_store(timeout), rank=int(os.environ["RANK"]),
                                    world_size=int(os.environ["WORLD_SIZE"]), timeout=timeout)
        except (RuntimeError, ValueError) as e:
            raise DistclipError(f"cannot join the torch.distributed group ({chosen}): {_first_line(e)}") from None
    return dev


def shutdown() -> None:
    """Leave the process group, if this process joined one (before exit: gloo aborts otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_joins = 0  # process groups joined by this process (every rank joins the same number, in order)


def _fresh_store(timeout: _dt.timedelta) -> dist.Store:
    """The launcher's store (MASTER_ADDR:MASTER_PORT), under a prefix new to this attempt and join.

    Without it a worker group restarted by torchrun's ``--max-restarts`` (or a second run in the same
    processes) reads the gloo addresses that the previous group left in the store and fails to
    connect (seen with torch 2.13).
    """
    global _joins
    _joins += 1
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=not agent and rank == 0, timeout=timeout)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"distclip/attempt_{attempt}/join_{_joins}", store)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _collective(what: str, fn: Any, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RuntimeError as e:
        limit = f"past run.timeout_s = {timeout_s:g}" if timeout_s else "past the collective timeout"
        raise DistclipError(
            f"rank {dist.get_rank()}: collective {what} failed ({_first_line(e)}); another worker died or hung {limit}"
        ) from None


def broadcast(obj: Any) -> Any:
    """``obj`` as rank 0 has it, on every rank."""
    box = [obj]
    _collective("broadcast", dist.broadcast_object_list, box, src=0)
    return box[0]


def agree(error: str | None) -> None:
    """Raise the same one-line error on every rank if any rank has one (naming the first such rank)."""
    errors: list[str | None] = [None] * dist.get_world_size()
    _collective("all_gather_object", dist.all_gather_object, errors, error)
    bad = [(r, e) for r, e in enumerate(errors) if e is not None]
    if bad:
        r, e = bad[0]
        more = f" (and {len(bad) - 1} more ranks)" if len(bad) > 1 else ""
        raise DistclipError(f"rank {r}: {e}{more}")


def _rows(t: Tensor) -> Tensor:
    """A client stack ``[n, *shape]`` as ``[n, numel]`` (n may be 0: a rank holding no participant)."""
    return t.reshape(len(t), t.shape[1:].numel())


class TorchDistributed:
    def __init__(self, n_clients: int, device: torch.device, timeout_s: float) -> None:
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if self.world > n_clients:
            raise DistclipError(
                f"{self.world} ranks but only {n_clients} clients; use at most {n_clients} processes"
            )
        self.n_clients = self.population = n_clients
        self.device = device
        self.timeout_s = timeout_s
        lo, hi = block(n_clients, self.rank, self.world)
        self.clients = torch.arange(lo, hi, device=device)
        self.sizes = [block(n_clients, r, self.world)[1] - block(n_clients, r, self.world)[0]
                      for r in range(self.world)]
        self.counter = CommCounter()

    def cohort(self, ids: Tensor) -> TorchDistributed:
        """The view in which only clients ``ids`` (sorted global ids, the same on every rank) take part: this rank
        holds those in its block; the counter is shared with this transport."""
        view = copy.copy(self)
        lo, hi = block(self.population, self.rank, self.world)
        ids = ids.to(self.device)
        view.clients = ids[(ids >= lo) & (ids < hi)]
        view.n_clients = len(ids)
        bounds = torch.tensor([block(self.population, r, self.world)[0] for r in range(self.world + 1)])
        view.sizes = torch.bucketize(ids.cpu(), bounds, right=True).bincount(minlength=self.world + 1)[1:].tolist()
        return view

    def _run(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return _collective(what, fn, *args, timeout_s=self.timeout_s, **kwargs)

    # -- counted ----------------------------------------------------------------------------------
    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        self.counter.record(t.shape[1:].numel(), t.element_size(), down, sparse_k)
        if sparse_k is not None:
            return self._sparse_mean(t, sparse_k)
        buf = _rows(t).sum(dim=0)  # a new tensor: all_reduce works in place
        self._run("all_reduce", dist.all_reduce, buf)
        return buf.div_(max(self.n_clients, 1)).view(t.shape[1:])

    def _sparse_mean(self, t: Tensor, k: int) -> Tensor:
        rows = _rows(t)
        idx = torch.sort(rows.abs(), dim=1, descending=True, stable=True).indices[:, :k]
        vals = rows.gather(1, idx)
        pad = max(self.sizes) - len(rows)
        vals = torch.cat([vals, vals.new_zeros(pad, k)]).reshape(-1)
        idx = torch.cat([idx, idx.new_zeros(pad, k)])
        all_vals = [torch.empty_like(vals) for _ in range(self.world)]
        all_idx = [torch.empty_like(idx) for _ in range(self.world)]
        self._run("all_gather", dist.all_gather, all_vals, vals)
        self._run("all_gather", dist.all_gather, all_idx, idx)
        out = rows.new_zeros(rows.shape[1])
        for v, i in zip(all_vals, all_idx, strict=True):
            out.index_add_(0, i.reshape(-1), v)
        return (out / max(self.n_clients, 1)).view(t.shape[1:])

    # -- uncounted bookkeeping --------------------------------------------------------------------
    def observe(self, t: Tensor) -> Tensor:
        buf = _rows(t).sum(dim=0)
        self._run("all_reduce", dist.all_reduce, buf)
        return (buf / max(self.n_clients, 1)).view(t.shape[1:])

    def status(self, row: Tensor) -> Tensor:
        rows = [torch.empty_like(row) for _ in range(self.world)]
        self._run("all_gather", dist.all_gather, rows, row)
        return torch.stack(rows)

    def gather_clients(self, t: Tensor) -> Tensor:
        pad = max(self.sizes) - len(t)
        padded = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))]) if pad else t.contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        self._run("all_gather", dist.all_gather, parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, self.sizes, strict=True)])

    def broadcast(self, obj: Any) -> Any:
        return broadcast(obj)

    def agree(self, error: str | None) -> None:
        agree(error)
