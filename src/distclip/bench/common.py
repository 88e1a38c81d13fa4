"""What every benchmark shares: the machine description, interleaved timing, targets and the report.

Timings are ratios measured side by side: :func:`measure` warms every contender up, then runs them
in turn, ``repeats`` times, and keeps every repeat's seconds per call (the report uses the median).
A :class:`Result` is printed as a table and written as ``<out>/<name>.json`` with the machine, the
parameters and the raw numbers; figures go next to it as ``<name>*.png``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..version import __version__

MIN_SAMPLE_S = 0.2  # each timed sample runs a contender this long (several calls if they are short)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = ["wall"]


def use_clock(name: str) -> None:
    """Time with ``wall`` (elapsed) or ``cpu`` (this process's CPU time: less sensitive to other load,
    but it adds up all threads, so use it with one thread)."""
    _clock[0] = name


def clock_name() -> str:
    return _clock[0]


def machine() -> dict[str, Any]:
    """Cores, CPU model, load, torch version and threads: printed and stored with every benchmark."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
        "distclip": __version__, "load_1min": round(load, 2), "cuda": torch.cuda.is_available(),
    }


def describe(m: dict[str, Any]) -> str:
    return (f"{m['cpu']}, {m['cores_usable']} of {m['cores']} cores usable, load {m['load_1min']}, "
            f"torch {m['torch']} with {m['threads']} threads, python {m['python']}, distclip {m['distclip']}")


def measure(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function: warm-up, then ``repeats`` interleaved samples of each (see :func:`use_clock`).

    A sample runs the function enough times to last about ``MIN_SAMPLE_S`` (calibrated in the warm-up).
    """
    now = CLOCKS[_clock[0]]
    calls: dict[str, int] = {}
    for name, fn in fns.items():
        t0 = now()
        for _ in range(max(1, warmup)):
            fn()
        one = (now() - t0) / max(1, warmup)
        calls[name] = max(1, math.ceil(MIN_SAMPLE_S / max(one, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = now()
            for _ in range(calls[name]):
                fn()
            samples[name].append((now() - t0) / calls[name])
    return samples


def median(xs: list[float]) -> float:
    return statistics.median(xs)


@dataclass
class Target:
    """A claim with its measured value: ``value <= limit`` (or ``>=`` when ``at_least``)."""

    text: str
    value: float
    limit: float
    at_least: bool = False

    @property
    def holds(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        op = ">=" if self.at_least else "<="
        return f"[{'ok' if self.holds else 'MISSED'}] {self.text}: {self.value:.2f} (target {op} {self.limit:g})"


@dataclass
class Result:
    """One benchmark's outcome: a table (``rows`` shown under ``columns``), targets, notes, raw data."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the benchmark did not run (the rest of the fields are then empty)

    def table(self) -> str:
        """The rows as a Markdown table."""
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(_cell(r.get(c, "")) for c in self.columns) + " |" for r in self.rows]
        return "\n".join([head, rule, *body])

    def text(self) -> str:
        """Title, table, targets and notes, as printed."""
        if self.skipped:
            return f"## {self.name}: {self.title}\n\nskipped: {self.skipped}\n"
        lines = [f"## {self.name}: {self.title}", "", self.table(), ""]
        lines += [t.line() for t in self.targets]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"figure: {f}" for f in self.figures]
        return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "—"
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def write(result: Result, out: Path, mach: dict[str, Any]) -> Path:
    """``out/<name>.json``: machine, parameters, table rows, targets (with whether they hold), raw numbers."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": result.name, "title": result.title, "machine": mach, "params": result.params,
        "rows": result.rows, "targets": [{**asdict(t), "holds": t.holds} for t in result.targets],
        "notes": result.notes, "figures": result.figures, "skipped": result.skipped, "raw": result.raw,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = out / f"{result.name}.json"
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n", encoding="utf-8")
    return path


def figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.0, 4.0)) -> tuple[Any, Any]:
    """A matplotlib figure (non-interactive backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), constrained_layout=True)


def log_axes(ax: Any, xs: list[float], logy: bool = True) -> None:
    """Log x with a tick at each measured x, written plainly (4, 16, 64 rather than 4×10⁰, 2×10¹); log y with
    uncluttered ticks (:func:`distclip.plotting.log_ticks`)."""
    from matplotlib import ticker

    from ..plotting import log_ticks

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(set(xs))))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    if logy:
        ax.set_yscale("log")
        ax.autoscale_view()
        log_ticks(ax.yaxis)


def save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def torchrun(module: str, world: int, params: dict[str, Any], timeout_s: float = 1800) -> dict[str, Any]:
    """Run ``python -m distclip.bench.<module> PARAMS RESULT`` on ``world`` gloo ranks; rank 0's result.

    The module's ``__main__`` calls its ``worker(params)`` on every rank and rank 0 writes the JSON
    result. One thread per rank (OMP_NUM_THREADS=1), loopback rendezvous.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p, r = Path(tmp) / "params.json", Path(tmp) / "result.json"
        p.write_text(json.dumps(params), encoding="utf-8")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
               "-m", f"distclip.bench.{module}", str(p), str(r)]
        proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=timeout_s)
        if proc.returncode != 0 or not r.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"torchrun {module} on {world} ranks failed: " + " | ".join(tail))
        return json.loads(r.read_text(encoding="utf-8"))


def worker_main(worker: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Entry point of a torchrun worker module: ``worker(params)``; rank 0's return value is the result."""
    import sys

    from ..engine.distributed import shutdown
    from ..engine.memory import keep_freed_memory

    keep_freed_memory()
    params = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    try:
        result = worker(params)
        if os.environ.get("RANK") == "0":
            Path(sys.argv[2]).write_text(json.dumps(result), encoding="utf-8")
    finally:
        shutdown()
