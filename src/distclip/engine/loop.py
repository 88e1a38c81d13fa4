"""The training loop, top to bottom: init, step, log, stop on non-finite values.

The loop runs any algorithm's rules (see :mod:`distclip.algorithms.base`) over any transport; it
never branches on the algorithm or the problem. Logging evaluates f and ‖∇f‖² at the algorithm's
model and costs no communication; ``wall_s`` counts the time spent in algorithm steps only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from tqdm import tqdm

from ..algorithms.base import Context, StepInfo
from ..errors import DistclipError
from ..problems.base import Problem


class NonFinite(DistclipError):
    """A NaN or Inf appeared in the algorithm's state."""


def _clip_frac(info: StepInfo, ctx: Context) -> float:
    if info.clipped is None:
        return 0.0
    return float(ctx.transport.observe(info.clipped.to(ctx.x0.dtype).unsqueeze(1)))


def _check_finite(state: Any, step: int) -> None:
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            raise NonFinite(
                f"NaN or Inf in {f.name} at step {step}: the run diverged; lower algorithm.lr or clip harder"
            )


def train(
    rules: ModuleType,
    ctx: Context,
    problem: Problem,
    steps: int,
    log_every: int,
    log: Callable[[dict[str, Any]], None],
    progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Run ``steps`` server steps; call ``log`` at step 0, every ``log_every`` steps and at the end.

    Returns the final state and run facts (``last_clip_step``: the last step whose messages were
    clipped, -1 if none; ``steps_done``).
    """
    counter = ctx.transport.counter
    wall = 0.0
    last_clip = -1
    frac_sum, frac_n = 0.0, 0

    def record(step: int, frac: float) -> None:
        x = rules.model(state, ctx)
        loss = problem.loss(x)
        g = problem.grad(x)
        log({
            "step": step,
            "loss": loss,
            "grad_norm_sq": float(g @ g),
            **counter.as_dict(),
            "clip_frac": frac,
            "clip_frac_mean": frac_sum / frac_n if frac_n else frac,
            "wall_s": wall,
        })

    start = time.perf_counter()
    state, info = rules.init(ctx)
    wall += time.perf_counter() - start
    frac = _clip_frac(info, ctx)
    last_clip = 0 if frac > 0 else -1
    _check_finite(state, 0)
    record(0, frac)
    bar = tqdm(total=steps, disable=not progress, delay=2.0, unit="step", leave=False)
    try:
        for t in range(steps):
            start = time.perf_counter()
            state, info = rules.step(state, ctx, t)
            wall += time.perf_counter() - start
            frac = _clip_frac(info, ctx)
            frac_sum, frac_n = frac_sum + frac, frac_n + 1
            if frac > 0:
                last_clip = t + 1
            _check_finite(state, t + 1)
            if (t + 1) % log_every == 0 or t + 1 == steps:
                record(t + 1, frac)
                frac_sum, frac_n = 0.0, 0
            bar.update()
    finally:
        bar.close()
    return state, {"last_clip_step": last_clip, "steps_done": steps}
