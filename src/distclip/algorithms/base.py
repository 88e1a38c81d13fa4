"""The contract between algorithm rules and engines.

An algorithm is a module with three pure functions over a state of stacked tensors:

- ``init(ctx) -> (state, StepInfo)``: the state at step 0 (server model, client memories, ...),
  including any initial communication round and what it clipped;
- ``step(state, ctx, t) -> (state, StepInfo)``: one server step t → t + 1, made of the algorithm's
  client rule (what each client computes and sends) and server rule (how the averaged messages move
  the model); it talks to other clients only through ``ctx.transport`` (see
  :mod:`distclip.engine.transport`);
- ``model(state, ctx) -> x``: the point at which the objective is logged.

Per-client tensors carry a leading client dimension ``[n_block, ...]`` so every client held by a
process is updated in one vectorised call. Engines never branch on the algorithm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from torch import Tensor

from ..compressors import Compressor
from ..engine.transport import Transport
from ..problems.base import ClientOracle


def per_client(**kwargs: Any) -> Any:
    """A state field with a leading client dimension: gathered into checkpoints, split on resume."""
    return field(metadata={"per_client": True}, **kwargs)


def is_per_client(f: Any) -> bool:
    return bool(f.metadata.get("per_client"))


@dataclass(frozen=True)
class Hyper:
    """Resolved hyperparameters handed to the rules (validated by :mod:`distclip.config`)."""

    lr: float
    tau: Tensor  # [n_block] clipping thresholds of the clients held here (inf: no clipping)
    gamma: Tensor | None = None  # [n_block] CELGC's maximal step lengths γ_i (threshold γ_i/η)
    clip: str = "norm"
    clip_at: str = "client"
    local_steps: int = 1
    option: str = "local"
    init: str = "default"
    compressor: Compressor = field(default_factory=lambda: Compressor("identity"))
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    baseline: bool = False
    official: bool = False
    resample_batch: int = 0  # EPISODE: minibatch of the resampled G_r^i (0: full gradient)
    comparison: str = ">"  # EPISODE: clip the round when ‖G_r‖ > γ/η, or >=
    beta1: float = 0.1  # Clip21-SGD2M client momentum
    beta2: float = 1.0  # Clip21-SGD2M error-feedback step
    noise_multiplier: float = 0.0  # z: Gaussian noise std z·τ (local DP) or z·C/N on the average (DP-FedAvg)
    secure_noise: bool = False  # draw the noise from OS entropy (not reproducible)
    adaptive_clip: str = "off"  # DP-FedAvg: off | geometric | arithmetic
    quantile: float = 0.5  # target unclipped quantile q
    clip_lr: float = 0.2  # η_C
    count_noise: float = 0.0  # σ_b, std of the noise on the unclipped count
    client_rate: float = 1.0  # DP-FedAvg: Poisson sampling rate q of the clients in a round

    def scaled(self, s: float) -> Hyper:
        """η and γ multiplied by s (the threshold γ/η, and τ, unchanged)."""
        if s == 1.0:
            return self
        return dataclasses.replace(self, lr=self.lr * s, gamma=None if self.gamma is None else self.gamma * s)


@dataclass(frozen=True)
class Context:
    transport: Transport
    oracle: ClientOracle
    hp: Hyper
    x0: Tensor


@dataclass(frozen=True)
class StepInfo:
    """What a step reports: per-client clip flags ``[n_block]`` (None when nothing is clipped)."""

    clipped: Tensor | None = None


@dataclass(frozen=True)
class AlgorithmSpec:
    """Registry entry: the rule module and what the config may set for it."""

    name: str
    rules: ModuleType
    summary: str
    params: frozenset[str]  # [algorithm] keys this algorithm reads besides name and lr
    batch: str = "any"  # "full" (batch_size must be 0), "minibatch" (> 0) or "any"
    clip_at: tuple[str, ...] = ("client",)
    inits: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    needs_targets: bool = False
    uses_lr: bool = True
    privacy: str = ""  # "local" (noise on each client message) or "central" (on the aggregate); rules define releases()
