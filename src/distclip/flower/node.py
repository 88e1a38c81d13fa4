"""One Flower node = one distclip client: the rule's stages run here, suspended at every exchange.

The node's position is ``pos``: -1 before ``init``, p >= 0 when its state is the state at the start of step
p. A request "advance to step s" runs ``init``, steps ``pos`` .. s − 1, then the model stage at s (its
``model(state)``, which the server evaluates), each stage under :mod:`distclip.flower.replay`: the reply
is either the message of the exchange the node stopped at, or the model at step s with the clip tallies.
Between requests everything lives in :class:`Saved` (kept in the node's Flower context state): the rule
state at the start of the current stage, the logged effects of that stage and the communication counter.
Clip tallies follow :func:`distclip.engine.loop.train`; a NaN/Inf in the state stops at once, as there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from ..algorithms import ALGORITHMS, Context, StepInfo
from ..algorithms.base import scaled
from ..config import Config, from_dict
from ..engine.transport import CommCounter
from ..errors import DistclipError
from ..problems.kinds import build_problem
from ..runner import build_context, resolve_length
from ..schedule import StepSize
from .replay import Effects, Replayed, ReplayedOracle, Suspend


@dataclass
class Saved:
    """A node's memory between messages."""

    pos: int = -1
    evaluating: bool = False  # the log belongs to the model stage at ``pos``
    state: dict[str, Tensor | None] = field(default_factory=dict)  # the rule state's fields
    log: list[Tensor] = field(default_factory=list)
    counter: dict[str, int] = field(default_factory=lambda: CommCounter().as_dict())
    count_now: int = 0  # clipped messages of this client at the latest stage
    count_sum: int = 0  # ... since the latest model stage
    steps_since_log: int = 0
    last_clip: int = -1


@dataclass(frozen=True)
class Reply:
    """What a node answers: an exchange's message (``kind`` mean | observe | broadcast), or ``model``."""

    kind: str
    step: int
    payload: Tensor
    stage_pos: int = 0  # which exchange of the stage (for the server's consistency check)
    down: bool = True
    sparse_k: int | None = None
    tallies: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Built:
    rules: Any
    ctx: Context
    transport: Replayed
    step_size: StepSize | None


def refuse_unsupported(cfg: Config, problem: Any) -> None:
    """One line for what a Flower node cannot hold (checked on the server before any node starts)."""
    if hasattr(problem, "client_state"):
        raise DistclipError(f"problem kind {cfg.problem.kind} keeps per-client state inside the problem (carried "
                            "hidden states), which a Flower node cannot persist; run it in distclip's simulator")


@lru_cache(maxsize=4)
def build(config_toml: str, client: int) -> Built:
    """The rules, context and transport of ``client`` (cached per process: a pure speed-up, nothing in it
    changes between messages)."""
    import tomllib

    cfg = from_dict(tomllib.loads(config_toml))
    problem = build_problem(cfg)
    refuse_unsupported(cfg, problem)
    if not 0 <= client < problem.n_clients:
        raise DistclipError(f"this node is client {client}, but the config has {problem.n_clients} clients; give "
                            f"the SuperNodes partition-id 0..{problem.n_clients - 1}")
    transport = Replayed(problem.n_clients, client, CommCounter(), Effects([]), problem.x0().device)
    ctx, _ = build_context(cfg, problem, transport)
    schedule = getattr(ctx.hp, "schedule", None)
    length = resolve_length(cfg, problem)
    size = None if schedule is None else schedule.step_size(length.steps_per_epoch, length.steps)
    return Built(ALGORITHMS[cfg.algorithm.name].rules, ctx, transport, size)


def _clipped(info: StepInfo) -> int:
    return 0 if info.clipped is None else int(info.clipped.sum())


def _stage(b: Built, saved: Saved, effects: Effects) -> tuple[Any, Any]:
    """Run the current stage from the saved state; (new state or None, model tensor or StepInfo)."""
    b.transport.effects = effects
    b.transport.counter = CommCounter(**saved.counter)
    ctx = dataclasses.replace(b.ctx, oracle=ReplayedOracle(b.ctx.oracle, effects))
    state = None if saved.pos < 0 else b.rules.State(**{k: None if v is None else v.clone()
                                                         for k, v in saved.state.items()})
    if saved.evaluating:
        return None, b.rules.model(state, ctx)
    if saved.pos < 0:
        return b.rules.init(ctx)
    if b.step_size is not None:
        ctx = dataclasses.replace(ctx, hp=scaled(ctx.hp, b.step_size.factor(saved.pos)))
    return b.rules.step(state, ctx, saved.pos)


def _nonfinite_field(state: Any) -> str | None:
    """The first field of ``state`` holding NaN or Inf (a node checks each step it completes)."""
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return f.name
    return None


def _finish_step(b: Built, saved: Saved, state: Any, info: StepInfo) -> None:
    saved.state = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    saved.counter = b.transport.counter.as_dict()
    saved.pos += 1
    saved.log = []
    saved.count_now = _clipped(info)
    if saved.pos > 0:  # a step, not init
        saved.count_sum += saved.count_now
        saved.steps_since_log += 1
    if saved.count_now:
        saved.last_clip = saved.pos
    bad = _nonfinite_field(state)
    if bad is not None:
        raise DistclipError(f"NaN or Inf in {bad} at step {saved.pos} on client {int(b.transport.clients[0])}: the "
                            "run diverged; lower algorithm.lr or clip harder")


def advance(config_toml: str, client: int, saved: Saved, until: int, reply: Tensor | None) -> Reply:
    """Run this node up to the model at step ``until``, using ``reply`` for the exchange it stopped at;
    ``saved`` is updated in place."""
    b = build(config_toml, client)
    if until < saved.pos:
        raise DistclipError(f"the server asks for step {until} but this node is at step {saved.pos}; restart the run")
    saved.evaluating = saved.evaluating or saved.pos == until
    while True:
        effects = Effects(saved.log, reply)
        try:
            state, out = _stage(b, saved, effects)
        except Suspend as s:
            saved.log = effects.log
            return Reply(s.kind, saved.pos, s.payload, len(effects.log), s.down, s.sparse_k)
        effects.finished()
        reply = None
        if saved.evaluating:
            tallies = {"count_now": saved.count_now, "count_sum": saved.count_sum,
                       "steps_since_log": saved.steps_since_log, "last_clip": saved.last_clip}
            saved.evaluating, saved.log, saved.count_sum, saved.steps_since_log = False, [], 0, 0
            return Reply("model", saved.pos, out.detach().clone(), tallies=tallies)
        _finish_step(b, saved, state, out)
        if saved.pos == until:
            saved.evaluating = True


def sparse_message(row: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k values of ``row`` with the largest magnitude (ties to the lower index) and their indices: what a
    Top-k message carries (as :class:`~distclip.engine.distributed.TorchDistributed` sends it)."""
    flat = row.reshape(-1)
    idx = torch.sort(flat.abs(), descending=True, stable=True).indices[:k]
    return flat[idx], idx
