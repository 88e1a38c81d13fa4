"""gpu: three workloads on a CUDA device, each against one model doing the same rows there (scripts/gpu_check.sh).

(a) **awd-lstm**: celgc-ptb's full AWD-LSTM (3 layers, BPTT 70, local batch 3, its regularisations, carried
    hidden states) with 8 clients: the 8 clients' gradients in one call, against one model (the same problem
    with 1 client) on the 8× batch;
(b) **resnet20**: ResNet-20 (per-client GroupNorm) on CIFAR-shaped data (random uint8 images 3×32×32, 10
    classes, CIFAR-10's normalisation) with 8 clients, B = 32: one CELGC step (I = 1) through ``rules.step``,
    against one model's gradient on the 8·B rows;
(c) **fedavg-mlp**: one FedAvg round (``local-sgd``, I = 5, B = 32) of the MLP 784-128-10 on MNIST rows with
    N = 1,000 clients through the training loop, against the floor: one ``nn.Module`` forward and backward
    on the N·B rows of each local step.

Every timed call ends with ``torch.cuda.synchronize()``. Without CUDA the benchmark is skipped; ``quick``
(any device) shrinks every workload to a smoke test (the small LSTM, a narrow ResNet, N = 16).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..algorithms import ALGORITHMS
from ..config import from_dict
from ..engine.loop import train
from ..engine.transport import InProcess
from ..problems.base import ClientOracle
from ..runner import build_context, build_problem
from .common import Result, measure, median

NAME = "gpu"
TITLE = "CUDA: AWD-LSTM with 8 clients, ResNet-20 with 8 clients, FedAvg MLP with N = 1,000, each against one model"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _synced(fn: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return call


def _grads(problem: Any, batch: int, seed: int = 0) -> Callable[[], None]:
    """All clients' gradients at x⁰ through the oracle (minibatches or carried streams as the problem draws them)."""
    clients = torch.arange(problem.n_clients, device=problem.x0().device)
    oracle, X = ClientOracle(problem, clients, batch, seed), problem.x0().expand(problem.n_clients, -1).clone()
    box = {"t": 0}

    def one() -> None:
        oracle.grads(X, box["t"])
        box["t"] += 1
    return one


def awd_lstm(device: torch.device, quick: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    from ..config import expand
    from ..reproduce import load_config, suite_path

    small = ['problem.model="small"', "problem.hidden=[64]", "problem.bptt=10"] if quick else []

    def problem(clients: int, batch: int) -> Any:
        over = [f'run.device="{device}"', f"partition.clients={clients}", f"run.batch_size={batch}", *small]
        return build_problem(expand(load_config(suite_path("celgc-ptb"), over))[0][1])

    b = 3 if not quick else 2
    return _grads(problem(8, b), b), _grads(problem(1, 8 * b), 8 * b)


def _cifar_shaped(clients: int, rows: int, width: int | None, device: torch.device) -> Any:
    from ..data.images import Images
    from ..data.partition import partition
    from ..problems.network import Network
    from ..problems.resnet import deep_model

    gen = np.random.default_rng(0)
    m = clients * rows
    data = Images(gen.integers(0, 256, (m, 3, 32, 32), dtype=np.uint8), gen.integers(0, 10, m), "cifar-shaped",
                  mean=CIFAR_MEAN, std=CIFAR_STD)
    part = partition(data.labels, clients, "iid", 0)
    return Network(deep_model("resnet20", (3, 32, 32), 10, width), data, part, np.zeros(0, dtype=np.int64), 0,
                   torch.float32, device)


def resnet20(device: torch.device, quick: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    n, b, width = 8, 32, 4 if quick else None
    problem = _cifar_shaped(n, 4 * b, width, device)
    cfg = from_dict({"problem": {"kind": "resnet20", "dataset": "digits"}, "partition": {"clients": n},
                     "algorithm": {"name": "celgc", "lr": 0.1, "gamma": 0.3}, "run": {"batch_size": b,
                     "dtype": "float32", "device": str(device)}})
    ctx, _ = build_context(cfg, problem, InProcess(n, device))
    rules = ALGORITHMS["celgc"].rules
    box = {"state": rules.init(ctx)[0], "t": 0}

    def step() -> None:
        box["state"], _ = rules.step(box["state"], ctx, box["t"])
        box["t"] += 1
    return step, _grads(_cifar_shaped(1, n * 4 * b, width, device), n * b)


def fedavg_mlp(device: torch.device, quick: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    n, b, steps = 16 if quick else 1000, 32, 5
    cfg = from_dict({"problem": {"kind": "mlp", "dataset": "mnist", "hidden": [128]},
                     "partition": {"clients": n, "scheme": "iid"},
                     "algorithm": {"name": "local-sgd", "lr": 0.1, "local_steps": steps},
                     "run": {"batch_size": b, "dtype": "float32", "device": str(device)}})
    problem = build_problem(cfg)
    ctx, _ = build_context(cfg, problem, InProcess(n, device))
    rules = ALGORITHMS["local-sgd"].rules
    box: dict[str, Any] = {"resume": None}

    def round_() -> None:
        start = 0 if box["resume"] is None else box["resume"][1].step
        box["resume"] = train(rules, ctx, problem, start + steps, start + steps, lambda row: None, evaluate=False,
                              resume=box["resume"])

    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    rows = problem.X.flatten(0, 1).flatten(1)
    idx = torch.randint(len(rows), (n * b,), generator=gen).to(device)
    x, y = rows[idx], problem.Y.flatten()[idx]

    def floor() -> None:
        for _ in range(steps):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
    return round_, floor


WORKLOADS = {"awd-lstm": (awd_lstm, "8 clients' gradients", "1 model, 8× batch"),
             "resnet20": (resnet20, "CELGC step, 8 clients", "1 model, 8·B rows"),
             "fedavg-mlp": (fedavg_mlp, "FedAvg round, N = 1,000", "floor: 1 model, N·B rows per step")}


def run(quick: bool, out: Path, repeats: int, device: str | None = None) -> Result:
    columns = ["workload", "distclip", "against", "distclip ms", "one model ms", "distclip / one model"]
    if device is None and not torch.cuda.is_available():
        return Result(NAME, TITLE, columns, [], skipped="no CUDA device (torch.cuda.is_available() is False)")
    dev = torch.device(device or "cuda")
    rows, raw = [], {}
    for name, (build, what, against) in WORKLOADS.items():
        ours, one = build(dev, quick)
        s = measure({"distclip": _synced(ours, dev), "one model": _synced(one, dev)}, repeats)
        a, b = median(s["distclip"]), median(s["one model"])
        rows.append({"workload": name, "distclip": what, "against": against, "distclip ms": a * 1e3,
                     "one model ms": b * 1e3, "distclip / one model": a / b})
        raw[name] = s
        del ours, one
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return Result(NAME, TITLE, columns, rows, raw=raw, params={"device": name, "repeats": repeats, "quick": quick},
                  notes=["every timed call ends with torch.cuda.synchronize(); ratios from interleaved samples"])
