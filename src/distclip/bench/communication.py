"""communication: rounds, bytes and wall clock to a fixed training loss, CELGC I ∈ {1, 4, 16} vs naive parallel clip.

The LSTM workload is the ``celgc-ptb`` suite (PTB, width 64, 8 clients, 8 windows of 20 tokens per
client step, η = 20, γ = 5). Each method first runs in the simulator (the engine's training loop),
logging the training loss every few steps, until the first logged step at or below the target loss:
it gives the rounds and the bytes per client to reach it. Then the same method runs that many steps
on W gloo ranks through the torch.distributed transport wrapped in a :class:`~distclip.engine.link.SimulatedLink`
(latency + bytes / bandwidth per round, slept), and rank 0's time in algorithm steps is the wall
clock to the target loss. The simulator and the distributed engine produce the same iterates, so the
distributed run ends at the same loss (checked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..algorithms import ALGORITHMS
from ..config import expand, from_dict, to_toml
from ..engine.loop import train
from ..engine.transport import InProcess
from ..reproduce import load_config, suite_path
from ..runner import build_context, build_problem
from .common import Result, figure, save, torchrun, worker_main

NAME = "communication"
TITLE = "rounds, bytes and wall clock to a fixed training loss: CELGC I = 1, 4, 16 vs naive parallel clip (PTB LSTM)"
METHODS = ("celgc-I=1", "celgc-I=4", "celgc-I=16", "naive-parallel-clip")


def configs(steps: int, log_every: int) -> list[tuple[str, Any]]:
    """The suite's runs for the compared methods, with this benchmark's length and logging."""
    cfg = load_config(suite_path("celgc-ptb"), [f"run.steps={steps}", f"run.log_every={log_every}"])
    return [(label, sub) for label, sub in expand(cfg) if label in METHODS]


class _Reached(Exception):
    """The logged training loss reached the target: stop the simulator run there."""


def simulate_to(cfg: Any, target: float) -> list[dict[str, Any]]:
    """The metrics rows of ``cfg`` run in the simulator until its logged loss is <= ``target`` (or its steps end)."""
    problem = build_problem(cfg)
    ctx, _ = build_context(cfg, problem, InProcess(problem.n_clients))
    rows: list[dict[str, Any]] = []

    def log(row: dict[str, Any]) -> None:
        rows.append(row)
        if row["loss"] <= target:
            raise _Reached

    try:
        train(ALGORITHMS[cfg.algorithm.name].rules, ctx, problem, cfg.run.steps, cfg.run.log_every, log)
    except _Reached:
        pass
    return rows


def worker(params: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed as dist

    from ..engine.distributed import TorchDistributed, init
    from ..engine.link import SimulatedLink

    cfg = from_dict(params["config"])
    device = init("gloo", "cpu", 600.0)
    problem = build_problem(cfg, device)
    inner = TorchDistributed(problem.n_clients, device, 600.0)
    link = SimulatedLink(inner, params["latency_s"], params["bandwidth_bps"]) if params["bandwidth_bps"] else inner
    ctx, _ = build_context(cfg, problem, link)
    rows: list[dict[str, Any]] = []
    train(ALGORITHMS[cfg.algorithm.name].rules, ctx, problem, cfg.run.steps, cfg.run.steps, rows.append,
          evaluate=dist.get_rank() == 0)
    return {"final": rows[-1] if rows else None, "link_s": getattr(link, "simulated_s", 0.0)}


def run(quick: bool, out: Path, repeats: int, latency_ms: float = 10.0, bandwidth_gbit: float = 1.0,
        world: int | None = None) -> Result:
    steps, log_every, target = (40, 10, 8.5) if quick else (300, 10, 6.6)
    world = world or (2 if quick else 4)
    rows, raw = [], {}
    for label, cfg in configs(steps, log_every):
        metrics = simulate_to(cfg, target)
        hit = metrics[-1] if metrics[-1]["loss"] <= target else None
        raw[label] = {"simulator": metrics}
        row: dict[str, Any] = {"method": label, "steps": float("nan"), "rounds": float("nan"),
                               "MB per client": float("nan"), "simulator s": float("nan"),
                               f"W={world} s": float("nan"), "of which link s": float("nan")}
        if hit is not None:
            row.update({"steps": hit["step"], "rounds": hit["comm_rounds"],
                        "MB per client": (hit["bytes_up"] + hit["bytes_down"]) / 1e6, "simulator s": hit["wall_s"]})
            doc = cfg.raw | {"run": {**cfg.raw.get("run", {}), "steps": hit["step"]}}
            d = torchrun("communication", world, {
                "config": from_dict(doc).raw, "latency_s": latency_ms / 1e3, "bandwidth_bps": bandwidth_gbit * 1e9})
            raw[label]["distributed"] = d
            row.update({f"W={world} s": d["final"]["wall_s"], "of which link s": d["link_s"],
                        "loss (simulator)": hit["loss"], "loss (W ranks)": d["final"]["loss"]})
        rows.append(row)
    cols = ["method", "steps", "rounds", "MB per client", "simulator s", f"W={world} s", "of which link s"]
    link = f"{latency_ms:g} ms + bytes / {bandwidth_gbit:g} Gbit/s per round" if bandwidth_gbit else "none"
    res = Result(NAME, f"{TITLE}, target loss {target}", cols, rows, raw=raw,
                 params={"suite": "celgc-ptb", "target_loss": target, "max_steps": steps, "log_every": log_every,
                         "world": world, "clock": "wall", "link": link,
                         "config": to_toml(configs(steps, log_every)[0][1])})
    res.notes.append(f"simulated link: {link}; rounds and bytes are per client, read at the first logged step "
                     f"(every {log_every}) with training loss <= {target}")
    differ = [r["method"] for r in rows if "loss (W ranks)" in r
              and abs(r["loss (W ranks)"] - r["loss (simulator)"]) > 1e-4 * abs(r["loss (simulator)"])]
    res.notes.append("the distributed runs end at the simulator's loss" if not differ else
                     f"the distributed runs end at another loss than the simulator's: {', '.join(differ)}")
    missed = [r["method"] for r in rows if r["steps"] != r["steps"]]
    if missed:
        res.notes.append(f"did not reach loss {target} within {steps} steps: {', '.join(missed)}")
    res.figures += draw({"raw": raw, "params": res.params}, out)
    return res


def draw(doc: dict[str, Any], out: Path) -> list[str]:
    """The figure from the benchmark's JSON: training loss against rounds and against MB per client, the target
    loss as a labelled line."""
    from ..plotting import natural_key, palette

    target, raw = doc["params"]["target_loss"], doc["raw"]
    colours = palette(raw)
    fig, axes = figure(1, 2, (6.2, 4.2))
    for label in sorted(raw, key=natural_key):
        m = raw[label]["simulator"]
        axes[0].plot([r["comm_rounds"] for r in m], [r["loss"] for r in m], label=label, **colours[label])
        axes[1].plot([(r["bytes_up"] + r["bytes_down"]) / 1e6 for r in m], [r["loss"] for r in m], label=label,
                     **colours[label])
    for ax, xl in zip(axes, ("communication rounds (log)", "MB sent + received per client (log)"), strict=True):
        ax.axhline(target, color="gray", linestyle=":", label=f"target training loss {target:g}")
        ax.set(xscale="log", xlabel=xl, ylabel="training loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Communication to a training loss of {target:g}: CELGC I = 1, 4, 16 vs naive parallel clipping, "
                 "LSTM on PTB (simulator)")
    return [save(fig, out / f"{NAME}.png")]


if __name__ == "__main__":
    worker_main(worker)
