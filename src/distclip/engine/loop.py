"""The training loop, top to bottom: init (or resume), step, log, checkpoint, stop on NaN/Inf.

The loop runs any algorithm's rules (see :mod:`distclip.algorithms.base`) over any transport; it
never branches on the algorithm or the problem, nor on the transport. Logging evaluates f and ‖∇f‖²
at the algorithm's model and costs no counted communication; ``wall_s`` is the time spent in
algorithm steps only. Clip counts and non-finite checks are tallied per process on the state's device
(:class:`Tally`: no host synchronisation per step) and combined at logged and checkpointed steps (one
uncounted ``status`` exchange), so unlogged steps add no collective and no wait for the device; the
first step that held NaN/Inf is kept on the device and named when the run stops there.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from tqdm import tqdm

from ..algorithms.base import Context, StepInfo, scaled
from ..errors import DistclipError
from ..problems.base import Problem
from ..schedule import StepSize
from .memory import keep_freed_memory

HEARTBEAT_S = 30.0  # seconds between heartbeat calls


class NonFinite(DistclipError):
    """A NaN or Inf appeared in the algorithm's state."""


@dataclass
class Progress:
    """The loop's own state (saved in checkpoints). Counts are of the clients held here."""

    step: int = 0
    wall: float = 0.0
    last_clip: int = -1  # last step with a clipped message (all clients, as of the latest log)
    local_last_clip: int = -1
    count_sum: int = 0  # clipped (client, step) pairs since the previous log
    steps_since_log: int = 0
    first_bad: int = -1  # first step at which this process held NaN/Inf
    took_part: int = 0  # participating (client, step) pairs since the previous log (all processes)
    took_part_now: int = 0  # clients that took part in the latest step (all processes)


class Tally:
    """The per-step tallies of :class:`Progress`, kept as device tensors and read only at synchronised steps.

    ``add`` counts a step's clipped clients and checks the state for NaN/Inf with device ops alone: a
    tensor is finite iff its minimum and maximum are (``aminmax`` propagates NaN; one read of the
    tensor, against ``isfinite(...).all()``'s several [n, d] temporaries). The first bad step and the
    field that held it are kept, so the alarm still names them however late it is read.
    """

    def __init__(self, p: Progress, device: torch.device) -> None:
        # count of the latest step, clipped pairs since the log, last step with a clip, first bad step, its field
        self.v = torch.tensor([0, p.count_sum, p.local_last_clip, p.first_bad, -1], dtype=torch.int64, device=device)
        self._where: dict[tuple[int, ...], torch.Tensor] = {}
        self.fields: list[str] = []

    def add(self, state: Any, info: StepInfo, step: int) -> None:
        v = self.v
        count = v.new_zeros(()) if info.clipped is None else info.clipped.sum().to(torch.int64)
        at = [(i, f.name, getattr(state, f.name)) for i, f in enumerate(dataclasses.fields(state))]
        at = [(i, t) for i, _, t in at if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]
        self.fields = [f.name for f in dataclasses.fields(state)]
        first, where = v[3] < 0, v[4]
        if at:
            ends = torch.stack([e.to(v.device, torch.float64) for _, t in at
                                for e in torch.aminmax(t.detach())])
            bad = ~torch.isfinite(ends).view(-1, 2).all(dim=1)
            key = tuple(i for i, _ in at)
            if key not in self._where:
                self._where[key] = torch.tensor(key, dtype=torch.int64, device=v.device)
            first = first & bad.any()
            where = torch.where(first, self._where[key][bad.to(torch.int8).argmax()], where)
        else:
            first = torch.zeros_like(first)
        self.v = torch.stack([count, v[1] + count, torch.where(count > 0, step, v[2]), torch.where(first, step, v[3]),
                              where])

    def bad_field(self) -> str | None:
        """The name of the field that held the first NaN/Inf of this process (None if none did)."""
        field = int(self.v[4])
        return self.fields[field] if field >= 0 else None

    def reset_count(self) -> None:
        """A log was written: the clipped pairs since the log start again from 0."""
        self.v[1] = 0


def _took_part(info: StepInfo, n: int) -> int:
    return n if info.participants is None else info.participants


def train(
    rules: ModuleType,
    ctx: Context,
    problem: Problem,
    steps: int,
    log_every: int,
    log: Callable[[dict[str, Any]], None],
    *,
    evaluate: bool = True,
    progress: bool = False,
    resume: tuple[Any, Progress] | None = None,
    checkpoint: Callable[[Any, Progress], None] | None = None,
    checkpoint_every: int = 0,
    step_size: StepSize | None = None,
    heartbeat: Callable[[int, int], None] | None = None,
) -> tuple[Any, Progress]:
    """Run server steps up to ``steps``; call ``log`` at step 0, every ``log_every`` steps and at the end.

    ``resume`` = (state, progress) continues a checkpointed run; ``checkpoint(state, progress)`` is
    called every ``checkpoint_every`` steps. Only a process with ``evaluate`` computes f and ∇f.
    ``step_size`` scales η and γ at each step (joint decay, cosine). ``heartbeat(step, steps)`` is called every
    :data:`HEARTBEAT_S` seconds (a sign of life where no progress bar can be drawn).
    """
    keep_freed_memory()
    tr = ctx.transport
    tally: Tally

    def sync(p: Progress) -> tuple[int, int]:
        """Read the tallies, combine the processes'; raise on every process if any held NaN/Inf."""
        table = tr.status(tally.v[:4].to(torch.float64)).cpu()
        _, p.count_sum, p.local_last_clip, p.first_bad = (int(v) for v in table[tr.rank].tolist())
        bad = [(r, int(s)) for r, s in enumerate(table[:, 3].tolist()) if s >= 0]
        if bad:
            step = min(s for _, s in bad)
            field = tally.bad_field() if p.first_bad == step else None
            where = f"in {field} " if field else ""
            ranks = "" if tr.world == 1 else f" on rank {', '.join(str(r) for r, s in bad if s == step)}"
            raise NonFinite(
                f"NaN or Inf {where}at step {step}{ranks}: the run diverged; lower algorithm.lr or clip harder"
            )
        p.last_clip = int(table[:, 2].max())
        return int(table[:, 0].sum()), int(table[:, 1].sum())

    def record(state: Any, p: Progress) -> None:
        now, total = sync(p)
        x = rules.model(state, ctx)
        n = max(p.took_part_now, 1)  # the clip fractions are over the clients that took part (§13)
        if evaluate:
            g = problem.grad(x)
            log({
                "step": p.step,
                "loss": problem.loss(x),
                "grad_norm_sq": float(g @ g),
                **tr.counter.as_dict(),
                "clip_frac": now / n,
                "clip_frac_mean": total / max(p.took_part, 1) if p.steps_since_log else now / n,
                "wall_s": p.wall,
                **problem.extra_metrics(x),
            })
        p.count_sum, p.steps_since_log, p.took_part = 0, 0, 0
        tally.reset_count()

    if resume is None:
        p = Progress()
        tally = Tally(p, ctx.x0.device)
        start = time.perf_counter()
        state, info = rules.init(ctx)
        p.wall += time.perf_counter() - start
        p.took_part_now = _took_part(info, tr.n_clients)
        tally.add(state, info, 0)
        record(state, p)
    else:
        state, p = resume
        tally = Tally(p, ctx.x0.device)
    bar = tqdm(total=steps, initial=p.step, disable=not progress, delay=2.0, unit="step", leave=False)
    beat = time.monotonic()
    try:
        for t in range(p.step, steps):
            start = time.perf_counter()
            ctx_t = ctx if step_size is None else dataclasses.replace(ctx, hp=scaled(ctx.hp, step_size.factor(t)))
            state, info = rules.step(state, ctx_t, t)
            p.wall += time.perf_counter() - start
            p.step = t + 1
            p.steps_since_log += 1
            p.took_part_now = _took_part(info, tr.n_clients)
            p.took_part += p.took_part_now
            tally.add(state, info, t + 1)
            if (t + 1) % log_every == 0 or t + 1 == steps:
                record(state, p)
            if checkpoint is not None and checkpoint_every and (t + 1) % checkpoint_every == 0:
                sync(p)
                checkpoint(state, p)
            bar.update()
            if heartbeat is not None and time.monotonic() - beat >= HEARTBEAT_S:
                heartbeat(p.step, steps)
                beat = time.monotonic()
    finally:
        bar.close()
    return state, p
