"""Registry of algorithms: name -> rule module and the config keys it reads.

Adding a method is one rule module (``init``/``step``/``model``, see :mod:`.base`) and one entry here;
the config validation, engines and CLI pick it up from this table.
"""

from __future__ import annotations

from . import celgc, clip21, clip21_avg, clip21_sgd2m, clip_sgd, dp_fedavg, ef21, episode, local_sgd, sgd
from .base import AlgorithmSpec, Context, Hyper, StepInfo

_OPT = frozenset({"momentum", "dampening", "nesterov", "weight_decay"})
_CLIP = frozenset({"tau", "clip"})
_DP = frozenset({"noise_multiplier", "target_epsilon", "delta", "accountant", "secure_noise"})

ALGORITHMS: dict[str, AlgorithmSpec] = {
    s.name: s
    for s in [
        AlgorithmSpec("gd", sgd, "distributed gradient descent (§2.1)", _OPT, batch="full"),
        AlgorithmSpec("sgd", sgd, "distributed minibatch SGD (§2.1)", _OPT, batch="minibatch"),
        AlgorithmSpec(
            "clip-gd", clip_sgd, "naive Clip-GD: clip each client's gradient, average (§2.2)",
            _CLIP | _DP | {"clip_at", "official"}, batch="full",
            clip_at=("client", "server"), privacy="local",
        ),
        AlgorithmSpec(
            "clip-sgd", clip_sgd, "naive Clip-SGD: clip each client's minibatch gradient, average (§2.2)",
            _CLIP | _DP | {"clip_at", "official"}, batch="minibatch",
            clip_at=("client", "server"), privacy="local",
        ),
        AlgorithmSpec(
            "naive-parallel-clip", clip_sgd, "average the gradients, clip the average (§2.3)",
            _CLIP | {"clip_at", "official"}, clip_at=("server",),
        ),
        AlgorithmSpec(
            "clip21", clip21, "Clip21-GD / Clip21-SGD: error feedback for clipping (§5)",
            _CLIP | _DP | {"init"}, inits=("clip_grad", "grad", "zero"), privacy="local",
        ),
        AlgorithmSpec(
            "ef21", ef21, "EF21 with Top-k or identity compressor (§4)",
            frozenset({"compressor", "k", "init"}), inits=("compressed_grad", "grad", "zero"),
        ),
        AlgorithmSpec(
            "celgc", celgc, "CELGC: local clipped SGD, models averaged every I steps (§3)",
            _OPT | {"tau", "gamma", "clip", "local_steps", "option", "baseline"},
            options=("local", "max", "global_average"),
        ),
        AlgorithmSpec(
            "local-sgd", local_sgd, "Local SGD / FedAvg, full participation, no clipping (§2.4)",
            _OPT | {"local_steps"},
        ),
        AlgorithmSpec(
            "clip21-avg", clip21_avg, "Clip21-Avg: exact mean estimation with clipped messages (§6)",
            _CLIP, needs_targets=True, uses_lr=False,
        ),
        AlgorithmSpec(
            "episode", episode, "EPISODE: local steps with resampled corrections, one clip decision per round (§7)",
            _OPT | {"tau", "gamma", "local_steps", "resample_batch", "comparison"},
        ),
        AlgorithmSpec(
            "clip21-sgd2m", clip21_sgd2m, "Clip21-SGD2M: Clip21 with client momentum, damped EF, local DP noise (§8)",
            _CLIP | _DP | {"beta1", "beta2"}, privacy="local",
        ),
        AlgorithmSpec(
            "dp-fedavg", dp_fedavg, "DP-FedAvg: flat update clipping, noise on the average, adaptive C (§9)",
            _OPT | _DP | {"tau", "local_steps", "adaptive_clip", "quantile", "clip_lr", "count_noise", "client_rate"},
            privacy="central",
        ),
    ]
}

__all__ = ["ALGORITHMS", "AlgorithmSpec", "Context", "Hyper", "StepInfo"]
