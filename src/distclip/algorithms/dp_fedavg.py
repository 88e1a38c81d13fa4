"""DP-FedAvg: FedAvg with flat update clipping and Gaussian noise on the average (docs/algorithms.md §9).

round r = steps rI .. rI + I − 1 (the round ends with the aggregation); S_r: each client independently with
probability q (Poisson sampling, ``client_rate``; q = 1, all clients, by default), m = qN expected clients:
  client i: I ``torch.optim.SGD`` steps from x (momentum kept per client) → x_i;  Δ_i = x_i − x
            b_i = 1[‖Δ_i‖ ≤ C] (before clipping);  i ∈ S_r sends clip_C(Δ_i) (+ b_i − ½ if adaptive; one average)
  server:   x ← x + (1/m) Σ_{i∈S_r} clip_C(Δ_i) + N(0, (z_Δ·C/m)² I);  the clients restart from x
            adaptive: b̄ = clamp((Σ_{S_r} (b_i − ½) + N(0, σ_b²))/m + ½, 0, 1), C ← update(C, b̄)  (privacy.quantile)
Round r's noise uses round r's C; z_Δ = z for fixed clipping, the split (z⁻² − (2σ_b)⁻²)^(−1/2) for adaptive.
Server noise is drawn from (seed, round), so every rank agrees; dividing by the expected m follows TF-Privacy.
S_r is the engine's Poisson client sampling (``own_sampling``, :mod:`distclip.engine.cohort`, docs/algorithms.md
§13; i ∈ S_r iff u(seed, i, r) < q): only S_r's clients train and send, the others keep their momentum, and a
round without participants still releases x + noise. z = 0, C = ∞, q = 1 is FedAvg.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..clipping import clip
from ..errors import DistclipError
from ..privacy import quantile
from ..privacy.dp import DPNoise
from ..privacy.noise import CENTRAL, COUNT, SERVER, standard_normal
from ..schedule import StepSchedule
from ..schema import choice, group, in_range, key
from ..sections import SamplingConfig
from .base import Context, StepInfo, local_model, per_client, step_size, threshold
from .descent import descend
from .momentum import SGDDirection, check_client_buffers

_DEFAULT_ADAPTIVE = {"quantile": 0.5, "clip_lr": 0.2, "count_noise": None}


@dataclass(frozen=True)
class Params:
    lr: float | str = step_size("client step size η: a number > 0, or 'c/L'")
    tau: float | list[float] | None = threshold("clipping norm C of each update (inf: no clipping); with "
                                                "adaptive clipping the start C0")
    local_steps: int = key(1, "local steps I per round")
    sgd: SGDDirection = group(SGDDirection)
    schedule: StepSchedule = group(StepSchedule)
    dp: DPNoise = group(DPNoise)
    adaptive_clip: str = key("off", "off | geometric | arithmetic (tau is then C0)")
    quantile: float = key(_DEFAULT_ADAPTIVE["quantile"], "adaptive: target unclipped quantile q in [0, 1]")
    clip_lr: float = key(_DEFAULT_ADAPTIVE["clip_lr"], "adaptive: learning rate η_C of C")
    count_noise: float | None = key(None, "adaptive: std σ_b of the count noise (default m/20 when private)")
    client_rate: float = key(1.0, "each client takes part in a round with this probability (Poisson sampling)")

    def validate(self, cfg: Any) -> Params:
        if self.local_steps < 1:
            raise DistclipError(f"algorithm.local_steps = {self.local_steps} must be >= 1")
        if isinstance(self.tau, list):
            raise DistclipError("dp-fedavg clips every update to one norm C: give algorithm.tau as one number")
        choice("algorithm.adaptive_clip", self.adaptive_clip, ("off", *quantile.RULES))
        changed = [k for k, v in _DEFAULT_ADAPTIVE.items() if getattr(self, k) != v]
        if self.adaptive_clip == "off" and changed:
            raise DistclipError(f"algorithm.{changed[0]} goes with adaptive clipping; set algorithm.adaptive_clip "
                                "= 'geometric' or 'arithmetic'")
        in_range("algorithm.client_rate", self.client_rate, 0, 1, closed="(]",
                 note=" (1: every client, every round)")
        if cfg.sampling.active:
            raise DistclipError("dp-fedavg samples clients itself with algorithm.client_rate (Poisson, as its "
                                "accountant assumes); remove [sampling] and set algorithm.client_rate")
        check_client_buffers(self.sgd, self.client_rate < 1, "algorithm.client_rate < 1")
        in_range("algorithm.quantile", self.quantile, 0, 1, closed="[]", note=" (the target unclipped fraction)")
        if not 0 <= self.clip_lr < math.inf:
            raise DistclipError(f"algorithm.clip_lr = {self.clip_lr} must be a finite number >= 0 (0: fixed clipping)")
        if self.count_noise is not None and not 0 <= self.count_noise < math.inf:
            raise DistclipError(f"algorithm.count_noise = {self.count_noise} must be a finite number >= 0")
        private = self.dp.private
        if private and self.adaptive_clip != "off":
            if self.count_noise == 0:
                raise DistclipError("private adaptive clipping needs count noise: remove algorithm.count_noise = 0 "
                                    "(default N/20) or set it > 0")
            if math.isinf(self.tau):
                raise DistclipError("adaptive clipping starts from algorithm.tau = C0; give a finite C0 such as 0.1")
        if private and self.adaptive_clip == "off" and math.isinf(self.tau):
            raise DistclipError("dp-fedavg with noise needs a finite clipping norm algorithm.tau (noise std z·C/N)")
        return self

    def with_noise(self, z: float, n_clients: int) -> Params:
        """The params with noise multiplier z (calibrated or given) and the count noise σ_b resolved."""
        sigma_b = 0.0
        if self.adaptive_clip != "off":
            expected = n_clients * self.client_rate
            sigma_b = self.count_noise if self.count_noise is not None else quantile.default_count_noise(z, expected)
            if z > 0 and z >= 2 * sigma_b:
                raise DistclipError(f"noise multiplier z = {z:.4g} must be below 2·count_noise = {2 * sigma_b:.4g} "
                                    f"to leave noise for the update; raise algorithm.count_noise above {z / 2:.4g}")
        return dataclasses.replace(self, dp=dataclasses.replace(self.dp, noise_multiplier=z), count_noise=sigma_b)


@dataclass(frozen=True)
class State:
    x: Tensor  # server model [d]
    C: Tensor  # clipping norm (0-dim)
    X: Tensor = local_model()  # local models [n_block, d]
    buf: Tensor | None = per_client(default=None)  # momentum buffers, created at first use


def init(ctx: Context) -> tuple[State, StepInfo]:
    x = ctx.x0.clone()
    C = ctx.hp.tau[:1].reshape(()).clone()
    return State(x, C, x.expand(len(ctx.transport.clients), -1).clone()), StepInfo()


def _server_noise(ctx: Context, stream: int, r: int, dim: int) -> Tensor:
    """N(0, I) drawn identically on every rank (secure noise: rank 0's, broadcast)."""
    z = standard_normal(ctx.oracle.seed, stream, [SERVER], r, dim, dtype=ctx.x0.dtype, device=ctx.x0.device,
                        secure=ctx.hp.dp.secure_noise)[0]
    return ctx.transport.broadcast(z) if ctx.hp.dp.secure_noise else z


def step(state: State, ctx: Context, t: int) -> tuple[State, StepInfo]:
    hp, tr = ctx.hp, ctx.transport
    direction, buf = hp.sgd(ctx.oracle.grads(state.X, t), state.X, state.buf)
    X = descend(state.X, hp.lr, direction)
    if (t + 1) % hp.local_steps:
        return State(state.x, state.C, X, buf), StepInfo()
    r, m, C, d = t // hp.local_steps, tr.population * hp.client_rate, state.C, state.x.numel()
    adaptive = hp.adaptive_clip != "off"
    c = clip(X - state.x, C, "norm")
    msg = torch.cat([c.out, (~c.clipped).to(X.dtype).unsqueeze(1) - 0.5], dim=1) if adaptive else c.out
    total = tr.mean(msg) * tr.n_clients  # Σ over S_r of the messages (the transport holds S_r's clients)
    z = hp.dp.noise_multiplier
    z_upd = quantile.split_noise(z, hp.count_noise) if adaptive else z
    x = state.x + total[:d] / m
    if z_upd > 0:
        x = x + (z_upd * C / m) * _server_noise(ctx, CENTRAL, r, d)
    if adaptive:
        noise = hp.count_noise * _server_noise(ctx, COUNT, r, 1)[0] if hp.count_noise > 0 else 0.0
        C = quantile.update(C, quantile.unclipped_fraction(total[d], m, noise), hp.quantile, hp.clip_lr,
                            hp.adaptive_clip)
    return State(x, C, x.expand_as(X).clone(), buf), StepInfo(c.clipped)


def model(state: State, ctx: Context) -> Tensor:
    return state.x


def releases(hp: Params, steps: int) -> int:
    """Noisy aggregates in ``steps`` steps: one per completed round."""
    return steps // hp.local_steps


def sample_rate(hp: Params) -> float:
    """The accountant's sampling rate: Poisson sampling of clients with rate q."""
    return hp.client_rate


def own_sampling(hp: Params) -> SamplingConfig | None:
    """Poisson sampling with rate q for q < 1 (the engine's, as for any rule; rounds without clients still run)."""
    return SamplingConfig("poisson", rate=hp.client_rate) if hp.client_rate < 1 else None
