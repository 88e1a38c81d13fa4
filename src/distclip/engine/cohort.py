"""Client sampling around any rule (docs/algorithms.md §13): each round only its cohort computes and sends.

Round r is steps rI .. rI + I − 1 (I the rule's ``local_steps``, 1 for rules without local steps); its cohort
S_r is :func:`distclip.rng.cohort` of (seed, r): m clients without replacement or each client with rate q, the
same on every process. Each step of round r runs the rule's own ``step`` on S_r alone: the transport is
``transport.cohort(S_r)`` (means over the participants, counters count only what they send), the oracle
computes S_r's gradients only, per-client hyperparameters are S_r's, and the state holds S_r's rows:

- a plain per-client field (memory g_i, control variate c_i, momentum buffer) is kept for every client held
  here in a store (on ``run.device``, or on the host with ``sampling.state = "host"``); S_r's rows are gathered
  before the step and scattered back after it, so the other clients keep theirs;
- a ``restart`` field exists for the cohort only: local models (``"model"``) start the round from the model of
  the previous round (``rules.model`` over the previous cohort: one uncounted average), ``"zeros"`` fields at 0.

A step costs O(|S_r|·d) whatever N: nothing of the clients outside S_r is read or written (the store is read
when a round starts and written when it ends). The state the loop
sees holds the rows of the latest cohort (what the step changed), so its NaN/Inf check costs O(|S_r|·d) too.
A round without participants (Poisson) is skipped, except for rules that sample for their own accountant
(``rules.own_sampling``): their server still releases its noisy model. Without participants at round 0, rules
with local models start from the first round that has some.

Checkpoints (:meth:`Sampled.snapshot`, :meth:`Sampled.restore`) hold the store of all N clients (gathered like
any per-client field), the rounds the state's rows belong to, and the state's per-client fields gathered over
the cohort that holds them, in cohort order; restored at any world size, each process takes its rows back, so
a resumed run continues bit for bit.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import schema
from ..algorithms.base import Context, StepInfo, is_per_client, restart
from ..errors import DistclipError
from ..rng import cohort


class Sampled:
    """A rule module's ``init``/``step``/``model`` with client sampling (see the module docstring)."""

    def __init__(self, rules: ModuleType, sampling: Any, seed: int, *, empty_rounds: bool = False) -> None:
        self.rules, self.sampling, self.seed, self.empty_rounds = rules, sampling, seed, empty_rounds
        fields = [f for f in dataclasses.fields(rules.State) if is_per_client(f)]
        self.kept = [f.name for f in fields if not restart(f)]
        self.fresh = {f.name: restart(f) for f in fields if restart(f)}
        self.store: dict[str, Tensor | None] = {}
        self.round = -1  # the round whose cohort the restart fields' rows belong to
        self.kept_round = -1  # the round whose cohort the state's per-client fields hold (the store: the others)
        self._views: dict[int, tuple[Context, Tensor]] = {}

    # -- cohorts ------------------------------------------------------------------------------------------
    def ids(self, r: int, n: int) -> np.ndarray:
        s = self.sampling
        return cohort(self.seed, r, n, size=s.clients, rate=s.rate)

    def view(self, ctx: Context, r: int) -> tuple[Context, Tensor]:
        """(the cohort's context, its rows among the clients held here) for round r; hyperparameters as in ctx."""
        if r not in self._views:
            self._views = {k: v for k, v in self._views.items() if k >= r - 1}  # this round and the one before
            tr = ctx.transport
            ids = torch.from_numpy(self.ids(r, tr.population)).to(tr.clients.device)
            part = tr.cohort(ids)
            rows = torch.searchsorted(tr.clients, part.clients)
            oracle = dataclasses.replace(ctx.oracle, clients=part.clients)
            self._views[r] = (dataclasses.replace(ctx, transport=part, oracle=oracle), rows)
        cctx, rows = self._views[r]
        return dataclasses.replace(cctx, hp=_rows_of(ctx.hp, rows)), rows

    def interval(self, ctx: Context) -> int:
        return int(getattr(ctx.hp, "local_steps", 1))

    # -- the rule interface ----------------------------------------------------------------------------------
    def init(self, ctx: Context) -> tuple[Any, StepInfo]:
        """Without restart fields: the rule's init over every client (its initial round, e.g. EF21's g_i^0 =
        C(∇f_i(x^0)), involves them all). With them: init over the first cohort; memories start at 0."""
        if not self.fresh:
            state, info = self.rules.init(ctx)
            for name in self.kept:
                value = getattr(state, name)
                self.store[name] = None if value is None else value.to(self._home(value.device))
            return state, info
        n, r = ctx.transport.population, 0
        while not self.empty_rounds and len(self.ids(r, n)) == 0:
            r += 1
        cctx, _ = self.view(ctx, r)
        state, info = self.rules.init(cctx)
        info = dataclasses.replace(info, participants=cctx.transport.n_clients)
        self.round = r
        for name in self.kept:
            value = getattr(state, name)
            if value is not None and bool(value.any()):
                raise TypeError(f"{self.rules.__name__}.init: per-client field {name} must start at 0 (or None)")
            self.store[name] = None if value is None else self._zeros(value, len(ctx.transport.clients))
        return state, info

    def step(self, state: Any, ctx: Context, t: int) -> tuple[Any, StepInfo]:
        interval = self.interval(ctx)
        r = t // interval
        cctx, rows = self.view(ctx, r)
        if cctx.transport.n_clients == 0 and not self.empty_rounds:
            return state, StepInfo(participants=0)
        changes = {}
        if r != self.kept_round:  # a new cohort: its memories come from the store
            changes = {name: self._gather(name, rows, ctx.x0.device) for name in self.kept}
            self.kept_round = r
        if self.fresh and r != self.round:  # and its local models start from the previous round's model
            start = self.model(state, ctx)
            for name, how in self.fresh.items():
                like = getattr(state, name)
                changes[name] = (start.expand(len(rows), -1) if how == "model"  # rules never write into their state
                                 else like.new_zeros(len(rows), *like.shape[1:]))
            self.round = r
        new, info = self.rules.step(dataclasses.replace(state, **changes) if changes else state, cctx, t)
        if (t + 1) % interval == 0:  # the round ends: its memories go back to the store
            for name in self.kept:
                self._scatter(name, rows, getattr(new, name), len(ctx.transport.clients))
        return new, dataclasses.replace(info, participants=cctx.transport.n_clients)

    def model(self, state: Any, ctx: Context) -> Tensor:
        """The rule's model; with local models, over the cohort that holds them (the participants' average)."""
        return self.rules.model(state, self.view(ctx, self.round)[0] if self.fresh else ctx)

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _holder(self, name: str) -> int:
        """The round whose cohort the state's per-client field ``name`` holds the rows of (-1: every client)."""
        if name in self.fresh:
            return self.round
        return self.kept_round if self.kept_round >= 0 else self.round

    def snapshot(self, state: Any, ctx: Context) -> tuple[dict[str, Tensor | None], dict[str, Any]]:
        """(the state's fields, this wrapper's own state) gathered on the host, for a checkpoint. A collective."""
        fields = {}
        for f in dataclasses.fields(state):
            value = getattr(state, f.name)
            if value is not None and is_per_client(f):
                h = self._holder(f.name)
                value = (ctx.transport if h < 0 else self.view(ctx, h)[0].transport).gather_clients(value)
            fields[f.name] = None if value is None else value.detach().cpu()
        store = {name: None if v is None else ctx.transport.gather_clients(v.to(ctx.x0.device)).cpu()
                 for name, v in self.store.items()}
        return fields, {"round": self.round, "kept_round": self.kept_round, "store": store}

    def restore(self, fields: dict[str, Tensor | None], own: dict[str, Any], ctx: Context) -> dict[str, Tensor | None]:
        """Take back this wrapper's state from :meth:`snapshot`'s (written at any world size); return ``fields``
        with each per-client field cut to the rows held here."""
        tr, device = ctx.transport, ctx.x0.device
        held = tr.clients.cpu()
        self.round, self.kept_round = int(own["round"]), int(own["kept_round"])
        self._views = {}
        self.store = {}
        for name, v in own["store"].items():
            _fits(name, v, tr.population)
            self.store[name] = None if v is None else v[held].to(self._home(device))
        out = dict(fields)
        for f in dataclasses.fields(self.rules.State):
            value = fields.get(f.name)
            if value is None or not is_per_client(f):
                continue
            h = self._holder(f.name)
            if h < 0:
                _fits(f.name, value, tr.population)
                out[f.name] = value[held]
            else:
                ids = torch.from_numpy(self.ids(h, tr.population))
                _fits(f.name, value, len(ids))
                out[f.name] = value[torch.isin(ids, held)]
        return out

    # -- the store of per-client fields ------------------------------------------------------------------------
    def _home(self, device: torch.device) -> torch.device:
        return torch.device("cpu") if self.sampling.state == "host" else device

    def _zeros(self, like: Tensor, n: int) -> Tensor:
        return torch.zeros((n, *like.shape[1:]), dtype=like.dtype, device=self._home(like.device))

    def _gather(self, name: str, rows: Tensor, device: torch.device) -> Tensor | None:
        full = self.store[name]
        return None if full is None else full[rows.to(full.device)].to(device)

    def _scatter(self, name: str, rows: Tensor, value: Tensor | None, n: int) -> None:
        if value is None:
            return
        if self.store[name] is None:  # created at first use (momentum): the other clients' start at 0
            self.store[name] = self._zeros(value, n)
        full = self.store[name]
        full[rows.to(full.device)] = value.to(full.device)


def _fits(name: str, value: Tensor | None, n: int) -> None:
    if value is not None and len(value) != n:
        raise DistclipError(f"the checkpoint's {name} has {len(value)} rows, not {n} (this run's clients)")


def _rows_of(hp: Any, rows: Tensor) -> Any:
    """``hp`` with per-client values (thresholds) cut to the cohort's rows; a process holding no participant
    keeps one value, so rules reading a shared value (``tau[:1]``) still can."""
    pick = rows if len(rows) else rows.new_zeros(1)
    changes = {name: schema.get(hp, k)[pick.to(schema.get(hp, k).device)] for name, k in schema.keys(type(hp)).items()
               if k.meta.get("per_client") and isinstance(schema.get(hp, k), Tensor) and schema.get(hp, k).dim() == 1}
    return schema.replace(hp, **changes) if changes else hp
