"""The training loop, top to bottom: init (or resume), step, log, checkpoint, stop on NaN/Inf.

The loop runs any algorithm's rules (see :mod:`distclip.algorithms.base`) over any transport; it
never branches on the algorithm or the problem, nor on the transport. Logging evaluates f and ‖∇f‖²
at the algorithm's model and costs no counted communication; ``wall_s`` is the time spent in
algorithm steps only. Clip counts and non-finite alarms are tallied per process and combined at
logged steps (one uncounted ``status`` exchange), so unlogged steps add no collective.
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


def _clipped(info: StepInfo) -> int:
    return 0 if info.clipped is None else int(info.clipped.sum())


def _took_part(info: StepInfo, n: int) -> int:
    return n if info.participants is None else info.participants


def _nonfinite_field(state: Any) -> str | None:
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            return f.name
    return None


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
    bad_field: str | None = None

    def check(state: Any, p: Progress, step: int) -> None:
        nonlocal bad_field
        if p.first_bad < 0:
            bad_field = _nonfinite_field(state)
            if bad_field is not None:
                p.first_bad = step
                tr.flag_nonfinite()

    def sync(p: Progress, count_now: int) -> tuple[int, int]:
        """Combine the processes' tallies; raise on every process if any held NaN/Inf."""
        row = torch.tensor([count_now, p.count_sum, p.local_last_clip, p.first_bad], dtype=torch.float64,
                           device=ctx.x0.device)
        table = tr.status(row).cpu()
        bad = [(r, int(s)) for r, s in enumerate(table[:, 3].tolist()) if s >= 0]
        if bad:
            step = min(s for _, s in bad)
            where = f"in {bad_field} " if bad_field and p.first_bad == step else ""
            ranks = "" if tr.world == 1 else f" on rank {', '.join(str(r) for r, s in bad if s == step)}"
            raise NonFinite(
                f"NaN or Inf {where}at step {step}{ranks}: the run diverged; lower algorithm.lr or clip harder"
            )
        p.last_clip = int(table[:, 2].max())
        return int(table[:, 0].sum()), int(table[:, 1].sum())

    def record(state: Any, p: Progress, count_now: int) -> None:
        now, total = sync(p, count_now)
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

    if resume is None:
        p = Progress()
        start = time.perf_counter()
        state, info = rules.init(ctx)
        p.wall += time.perf_counter() - start
        p.took_part_now = _took_part(info, tr.n_clients)
        count = _clipped(info)
        p.local_last_clip = 0 if count else -1
        check(state, p, 0)
        record(state, p, count)
    else:
        state, p = resume
    bar = tqdm(total=steps, initial=p.step, disable=not progress, delay=2.0, unit="step", leave=False)
    beat = time.monotonic()
    try:
        for t in range(p.step, steps):
            start = time.perf_counter()
            ctx_t = ctx if step_size is None else dataclasses.replace(ctx, hp=scaled(ctx.hp, step_size.factor(t)))
            state, info = rules.step(state, ctx_t, t)
            p.wall += time.perf_counter() - start
            p.step = t + 1
            count = _clipped(info)
            p.count_sum += count
            p.steps_since_log += 1
            p.took_part_now = _took_part(info, tr.n_clients)
            p.took_part += p.took_part_now
            if count:
                p.local_last_clip = t + 1
            check(state, p, t + 1)
            if (t + 1) % log_every == 0 or t + 1 == steps:
                record(state, p, count)
            elif tr.alarm:
                sync(p, count)
            if checkpoint is not None and checkpoint_every and (t + 1) % checkpoint_every == 0:
                checkpoint(state, p)
            bar.update()
            if heartbeat is not None and time.monotonic() - beat >= HEARTBEAT_S:
                heartbeat(p.step, steps)
                beat = time.monotonic()
    finally:
        bar.close()
    return state, p
