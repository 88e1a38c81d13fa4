"""``distclip bench``: speed benchmarks measured side by side in one process run (docs/performance.md).

Every benchmark is a module with ``NAME``, ``TITLE`` and ``run(quick, out, repeats, ...) -> Result``;
:data:`BENCHMARKS` lists them in the order they run. :func:`bench` prints the machine, then each
benchmark's table and targets, and writes ``<out>/<name>.json`` (raw numbers) and its figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..engine.memory import keep_freed_memory
from ..errors import DistclipError
from . import clip21_logreg, communication, distributed, gpu, optim, peers, sampling, scaling, simulator, torch_kind
from .common import Result, describe, machine, use_clock, write

BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m for m in (simulator, torch_kind, scaling, clip21_logreg, communication, distributed, optim, sampling,
                        peers, gpu)
}


def bench(names: list[str], out: Path, *, quick: bool = False, repeats: int | None = None,
          threads: int | None = None, clock: str = "wall", options: dict[str, dict[str, Any]] | None = None,
          echo: Callable[[str], None] = print) -> list[Result]:
    """Run the benchmarks ``names`` (all if empty) into ``out``; ``options[name]`` are extra keyword arguments."""
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise DistclipError(f"unknown benchmark {', '.join(unknown)}; available: {', '.join(BENCHMARKS)}")
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the scaling child process
    repeats = repeats or (2 if quick else 5)
    use_clock(clock)
    keep_freed_memory()  # as training does (engine.loop.train); every contender runs under it
    mach = machine()
    echo(f"machine: {describe(mach)}")
    results = []
    for name in names or list(BENCHMARKS):
        t0 = time.perf_counter()
        result = BENCHMARKS[name].run(quick, out, repeats, **(options or {}).get(name, {}))
        result.params["seconds"] = round(time.perf_counter() - t0, 1)
        result.params["quick"] = quick
        result.params.setdefault("clock", clock)
        path = write(result, out, mach)
        echo(result.text() + f"raw numbers: {path} ({result.params['seconds']:.0f} s)\n")
        results.append(result)
    return results


__all__ = ["BENCHMARKS", "Result", "bench"]
