"""The config sections every experiment has whatever its algorithm and problem: ``[partition]`` (how
labelled rows are split into clients), ``[sampling]`` (which clients take part in each round) and ``[run]``
(length, logging, precision, placement, engine)."""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from typing import Any

from .data.partition import SCHEMES
from .errors import DistclipError
from .schema import choice, in_range, key

MAX_BATCH = 1_000_000  # rows per client per step


@dataclass
class PartitionConfig:
    clients: int = key(20, "number of clients N")
    scheme: str = key("sorted", "contiguous | sorted | iid | similarity | dirichlet")
    similarity: float | None = key(None, "similarity scheme: share s in the common pool")
    alpha: float | None = key(None, "dirichlet scheme: concentration α > 0")

    def validate(self, cfg: Any) -> None:
        if self.clients < 1:
            raise DistclipError(f"partition.clients = {self.clients} must be >= 1")
        choice("partition.scheme", self.scheme, SCHEMES)
        for name, scheme in (("similarity", "similarity"), ("alpha", "dirichlet")):
            if (getattr(self, name) is not None) != (self.scheme == scheme):
                raise DistclipError(f"partition.{name} goes with scheme = '{scheme}' (and that scheme needs it)")
        if self.similarity is not None:
            in_range("partition.similarity", self.similarity, 0, 1, closed="[]",
                     note=" (1 - H in EPISODE's terms)")
        if self.alpha is not None and not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise DistclipError(f"partition.alpha = {self.alpha} must be a finite number > 0")


SAMPLING_SCHEMES = ("all", "fixed", "poisson")


@dataclass
class SamplingConfig:
    """Client sampling (docs/algorithms.md §13): one cohort S_r per communication round r, drawn from (seed, r).

    A section of its own, not keys of ``[algorithm]``: it is the federated setting (which clients are
    reachable in a round), the same for every rule, and the engine applies it around any rule
    (:mod:`distclip.engine.cohort`); the rules only see the cohort."""

    scheme: str = key("all", "all (every client, every round) | fixed (m clients without replacement) | poisson "
                      "(each client independently with rate q)")
    clients: int | None = key(None, "fixed: cohort size m per round (1 <= m <= partition.clients)")
    rate: float | None = key(None, "poisson: probability q in (0, 1] that a client takes part in a round")
    state: str = key("device", "device | host: where per-client state of all N clients is kept (host: the "
                     "cohort's rows travel to run.device when its round starts, and back when it ends)")

    @property
    def active(self) -> bool:
        return self.scheme != "all"

    def validate(self, cfg: Any) -> None:
        choice("sampling.scheme", self.scheme, SAMPLING_SCHEMES)
        choice("sampling.state", self.state, ("device", "host"))
        for name, scheme in (("clients", "fixed"), ("rate", "poisson")):
            if (getattr(self, name) is not None) != (self.scheme == scheme):
                raise DistclipError(f"sampling.{name} goes with scheme = '{scheme}' (and that scheme needs it)")
        n = cfg.partition.clients
        if self.clients is not None and not 1 <= self.clients <= n:
            raise DistclipError(f"sampling.clients = {self.clients} must be in [1, {n}] (partition.clients = {n})")
        if self.rate is not None:
            in_range("sampling.rate", self.rate, 0, 1, closed="(]", note=" (1: every client, every round)")


@dataclass
class RunConfig:
    steps: int = key(1000, "server steps K")
    batch_size: int = key(0, "minibatch per client; 0 = full gradients")
    log_every: int = key(1, "log every this many steps (step 0 and the last always)")
    epochs: float = key(0.0, "run length in epochs instead of run.steps; an epoch is floor(rows per client / "
                        "batch_size) steps (1 step with full gradients)")
    log_every_epochs: float = key(0.0, "log (evaluate the averaged model) every this many epochs instead of "
                                  "every run.log_every steps")
    dtype: str = key("float64", "float64 | float32")
    device: str = key("cpu", "cpu | cuda | cuda:N")
    name: str | None = key(None, "run name (default: algorithm and problem)")
    engine: str = key("auto", "simulator | distributed | auto (torchrun)")
    backend: str = key("auto", "auto (nccl on cuda) | gloo | nccl")
    timeout_s: float = key(300.0, "collective timeout: a hung worker fails after this")
    checkpoint_every: int = key(0, "write checkpoint.pt every N steps (0: never)")
    tensorboard: bool = key(False, "also write TensorBoard event files to DIR/tensorboard (needs the tensorboard "
                            "package: pip install 'distclip[tensorboard]')")
    threads: int = key(0, "intra-op threads of each process (torch.set_num_threads, restored after the run); 0: "
                       "$OMP_NUM_THREADS if set, else 1. One is the default: a round of small per-client ops gains "
                       "little from more, and on a machine whose cores are busy more threads are many times slower "
                       "(docs/performance.md §7, peers)")

    def validate(self, cfg: Any) -> None:
        if self.steps < 0:
            raise DistclipError(f"run.steps = {self.steps} must be >= 0")
        if not 0 <= self.batch_size <= MAX_BATCH:
            raise DistclipError(f"run.batch_size = {self.batch_size} must be in [0, {MAX_BATCH:,}] (0 = full "
                                "gradients; the limit bounds the rows each client draws per step)")
        if self.log_every < 1:
            raise DistclipError(f"run.log_every = {self.log_every} must be >= 1")
        for name, steps_key in (("epochs", "steps"), ("log_every_epochs", "log_every")):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise DistclipError(f"run.{name} = {value} must be a finite number >= 0 (0: use run.{steps_key})")
            if value > 0 and f"run.{steps_key}" in cfg.given:
                raise DistclipError(f"run.{name} and run.{steps_key} both given; keep one of them")
        choice("run.dtype", self.dtype, ("float64", "float32"))
        choice("run.engine", self.engine, ("auto", "simulator", "distributed"))
        choice("run.backend", self.backend, ("auto", "gloo", "nccl"))
        if not 0 < self.timeout_s < math.inf:
            raise DistclipError(f"run.timeout_s = {self.timeout_s} must be a finite number of seconds > 0")
        if self.threads < 0:
            raise DistclipError(f"run.threads = {self.threads} must be >= 0 (0: $OMP_NUM_THREADS, else 1)")
        if self.checkpoint_every < 0:
            raise DistclipError(f"run.checkpoint_every = {self.checkpoint_every} must be >= 0 (0: no checkpoints)")
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise DistclipError("run.tensorboard = true needs the tensorboard package: pip install "
                                "'distclip[tensorboard]' (or pip install tensorboard), or set run.tensorboard = false")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise DistclipError(f"run.device = {self.device!r} is not allowed; use cpu, cuda or cuda:N")
