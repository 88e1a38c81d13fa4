"""Checkpoints: the full state of a run, written atomically by rank 0, readable by any world size.

A checkpoint holds the server state and **all** clients' states (per-client fields gathered from
every rank into ``[N, ...]`` stacks), the loop's progress and tallies, the communication counters,
the config it was written with and the package version; a problem's own per-client state
(the AWD-LSTM's carried hidden states) is gathered the same way. There is no generator state to save:
minibatches and Top-k ties are pure functions of (seed, client id, step). Written to a temporary
file, fsynced, then renamed over ``checkpoint.pt``, so a crash never leaves a partial checkpoint.
With client sampling the state's per-client fields hold a cohort's rows: :class:`distclip.engine.cohort.Sampled`
gathers and splits them, and saves its store of every client's rows ("sampling").
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .algorithms.base import Context, is_per_client
from .engine.cohort import Sampled
from .engine.loop import Progress
from .engine.transport import CommCounter, Transport
from .errors import DistclipError
from .metrics import write_atomic

NAME = "checkpoint.pt"
FORMAT = 1


def snapshot(state: Any, progress: Progress, transport: Transport, config_toml: str, version: str,
             problem: Any = None, sampled: Sampled | None = None, ctx: Context | None = None) -> dict | None:
    """The checkpoint payload on rank 0 (None elsewhere). A collective: every rank must call it.

    A problem with per-client state of its own (``client_state(clients)``, e.g. the AWD-LSTM's
    carried hidden states) has it gathered and saved too. ``sampled`` (with the run's ``ctx``): the run's
    client sampling, whose own state is saved as well.
    """
    if sampled is not None and ctx is not None:
        fields, sampling = sampled.snapshot(state, ctx)
    else:
        fields, sampling = _gathered(state, transport), None
    own = getattr(problem, "client_state", None)
    problem_state = {k: transport.gather_clients(v).detach().cpu()
                     for k, v in ({} if own is None else own(transport.clients)).items()}
    row = torch.tensor([progress.count_sum, progress.local_last_clip], dtype=torch.float64)
    table = transport.status(row.to(transport.clients.device)).cpu()
    if transport.rank != 0:
        return None
    prog = dataclasses.asdict(progress)
    prog.update(count_sum=int(table[:, 0].sum()), local_last_clip=int(table[:, 1].max()))
    payload = {
        "format": FORMAT, "version": version, "config": config_toml, "state": fields, "progress": prog,
        "counter": transport.counter.as_dict(), "problem": problem_state,
    }
    if sampling is not None:
        payload["sampling"] = sampling
    return payload


def _gathered(state: Any, transport: Transport) -> dict[str, Any]:
    fields = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if value is not None and is_per_client(f):
            value = transport.gather_clients(value)
        fields[f.name] = None if value is None else value.detach().cpu()
    return fields


def write(directory: Path, payload: dict) -> Path:
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(directory / NAME, buf.getvalue())
    return directory / NAME


def read(directory: Path) -> dict | None:
    path = directory / NAME
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file: say which and how to proceed
        raise DistclipError(
            f"checkpoint {path} cannot be read ({type(e).__name__}); delete it to restart the run"
        ) from None
    if payload.get("format") != FORMAT:
        raise DistclipError(f"checkpoint {path} has format {payload.get('format')}, expected {FORMAT}")
    return payload


def restore(payload: dict, rules: ModuleType, transport: Transport, device: torch.device,
            problem: Any = None, sampled: Sampled | None = None, ctx: Context | None = None) -> tuple[Any, Progress]:
    """Rebuild (state, progress) for the clients held here from a payload written at any world size.

    The problem's own per-client state, if saved, is handed back to ``problem.load_client_state``; with client
    sampling (``sampled`` and the run's ``ctx``), the sampling's own state goes back to ``sampled``."""
    fields = {}
    saved = payload["state"]
    if sampled is not None and ctx is not None:
        if "sampling" not in payload:
            raise DistclipError("the checkpoint was written without client sampling")
        saved = sampled.restore(saved, payload["sampling"], ctx)
    lo = int(transport.clients[0]) if len(transport.clients) else 0
    hi = lo + len(transport.clients)
    dim = getattr(problem, "dim", None)
    for f in dataclasses.fields(rules.State):
        if f.name not in saved:
            raise DistclipError(f"the checkpoint has no state field {f.name!r}; it was written by another algorithm")
        value = saved[f.name]
        if value is not None and sampled is None and is_per_client(f) and (len(value) != transport.n_clients or (
                dim is not None and value.dim() == 2 and value.shape[1] != dim)):
            raise DistclipError(f"the checkpoint's {f.name} has shape {list(value.shape)}, not "
                                f"[{transport.n_clients}, {dim}] (clients, dimension)")
        if value is not None:
            value = value[lo:hi] if is_per_client(f) and sampled is None else value
            value = value.to(device)
        fields[f.name] = value
    if payload.get("problem") and problem is not None:
        problem.load_client_state(transport.clients, {k: v[lo:hi].to(device) for k, v in payload["problem"].items()})
    prog = Progress(**{"took_part": transport.n_clients * payload["progress"]["steps_since_log"],
                       **payload["progress"]})  # checkpoints written before client sampling lack it
    if transport.rank != 0:  # the tallies were summed over ranks when saved: keep them once
        prog.count_sum = 0
    transport.counter = CommCounter(**payload["counter"])
    return rules.State(**fields), prog
