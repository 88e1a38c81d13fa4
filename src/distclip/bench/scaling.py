"""scaling: time per round and peak memory of the vectorised simulator against the number of clients N.

The workload is simulator-vs-loop's MLP round (CELGC, I = 1, MNIST, B = 32 per client) for
N = 1, 2, 4, ... until ``max_clients`` or until a round needs more memory than ``memory_limit_gb``.
It runs in a child process whose peak resident memory (``VmHWM``, reset before each N) is reported;
memory freed by smaller N stays in the process and is reused, so small N show the larger of their
own peak and what earlier N left. A line a + b·N is fitted by least squares to N <= 64 and
each N's time is compared with it: the growth is linear in N·B while measured / fitted stays near 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.memory import keep_freed_memory
from .common import Result, clock_name, figure, log_axes, measure, median, save, use_clock
from .simulator import simulator_round

NAME = "scaling"
TITLE = "simulator time per round and peak memory vs clients N (MLP on MNIST, B = 32, CELGC I = 1)"
BATCH = 32
FIT_UP_TO = 64


def _status_mb(key: str) -> float:
    """A memory line of /proc/self/status (``VmHWM``: the resident high-water mark) in MB."""
    with open("/proc/self/status", encoding="utf-8") as f:
        line = next(line for line in f if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def child(params: dict[str, Any]) -> dict[str, Any]:
    """Time rounds for growing N in this process; stop at ``max_clients`` or the memory limit."""
    keep_freed_memory()
    use_clock(params["clock"])
    out = []
    n = 1
    while n <= params["max_clients"]:
        _reset_peak()
        one, problem = simulator_round("mlp", n, BATCH)
        s = measure({"sim": one}, params["repeats"])["sim"]
        peak = _status_mb("VmHWM")
        out.append({"N": n, "d": problem.dim, "samples": s, "peak_rss_mb": peak})
        del one, problem
        if peak / 1024 > params["memory_limit_gb"]:
            break
        n *= 2
    return {"points": out}


def run(quick: bool, out: Path, repeats: int, max_clients: int | None = None, memory_limit_gb: float = 8.0) -> Result:
    params = {"max_clients": max_clients or (16 if quick else 256), "repeats": repeats, "clock": clock_name(),
              "memory_limit_gb": memory_limit_gb}
    proc = subprocess.run([sys.executable, "-m", "distclip.bench.scaling", json.dumps(params)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("scaling child failed: " + " | ".join(proc.stderr.strip().splitlines()[-5:]))
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    pts = data["points"]
    ns = np.array([p["N"] for p in pts], dtype=float)
    ms = np.array([median(p["samples"]) * 1e3 for p in pts])
    fit = ns <= FIT_UP_TO
    b, a = np.polyfit(ns[fit], ms[fit], 1) if fit.sum() >= 2 else (float("nan"), float("nan"))
    rows = [{"N": int(n), "N·B rows": int(n) * BATCH, "ms per round": t, "ms per client": t / n,
             "fit a + b·N ms": a + b * n, "measured / fit": t / (a + b * n),
             "peak RSS MB": p["peak_rss_mb"]} for n, t, p in zip(ns, ms, pts, strict=True)]
    res = Result(NAME, TITLE, list(rows[0]), rows, raw=data,
                 params={**params, "batch": BATCH, "fit_up_to": FIT_UP_TO, "d": pts[0]["d"]})
    res.notes.append(f"fit on N <= {FIT_UP_TO}: time per round = {a:.3g} ms + {b:.3g} ms x N "
                     f"({b / BATCH * 1e3:.3g} us per row of N·B)")
    off = [r["N"] for r in rows if abs(r["measured / fit"] - 1) > 0.25]
    res.notes.append("measured within 25% of the line at every N" if not off else
                     f"measured deviates from the line by more than 25% at N = {', '.join(map(str, off))}")
    res.figures += draw({"rows": rows, "params": res.params}, out)
    return res


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))


def draw(doc: dict[str, Any], out: Path) -> list[str]:
    """The figure from the benchmark's JSON: ms per round and peak memory against N, with the linear fit."""
    rows, fit_up_to = doc["rows"], doc["params"]["fit_up_to"]
    ns = [r["N"] for r in rows]
    (n1, f1), (n2, f2) = [(r["N"], r["fit a + b·N ms"]) for r in rows[:2]]
    b = (f2 - f1) / (n2 - n1)
    a = f1 - b * n1
    fig, axes = figure(1, 2, (6.2, 4.2))
    axes[0].plot(ns, [r["ms per round"] for r in rows], "o-", label="measured (median)")
    axes[0].plot(ns, [r["fit a + b·N ms"] for r in rows], "--", label=f"fit on N ≤ {fit_up_to}: {a:.2g} + {b:.2g}·N ms")
    axes[0].set(xlabel="clients N", ylabel="ms per round", title="time per CELGC round")
    axes[1].plot(ns, [r["peak RSS MB"] for r in rows], "o-", label="peak resident memory of the process")
    axes[1].set(xlabel="clients N", ylabel="MB", title="memory")
    for ax in axes:
        log_axes(ax, ns)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Scaling in the number of clients: MLP on MNIST, B = {doc['params']['batch']} rows per client, "
                 "one process")
    return [save(fig, out / f"{NAME}.png")]
