"""Registry of algorithms: name -> rule module (its ``Params`` are the ``[algorithm]`` keys it reads).

Adding a method is one rule module (``Params``, ``State``, ``init``/``step``/``model``; see :class:`.base.Rule`)
and one line here; the config validation, ``distclip list``, the generated reference (docs/config.md), the
engines and the CLI pick it up from this table.
"""

from __future__ import annotations

from typing import Any

from .. import schema
from ..errors import DistclipError
from . import (
    celgc,
    clip21,
    clip21_avg,
    clip21_sgd2m,
    clip_sgd,
    dp_fedavg,
    ef21,
    episode,
    fedprox,
    local_sgd,
    naive_parallel_clip,
    scaffold,
    sgd,
)
from .base import Algorithm, Context, StepInfo

#: the algorithm of a config that names none
DEFAULT = "clip21"

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in [
        Algorithm("gd", sgd, "distributed gradient descent (§2.1)", batch="full"),
        Algorithm("sgd", sgd, "distributed minibatch SGD (§2.1)", batch="minibatch"),
        Algorithm("clip-gd", clip_sgd, "naive Clip-GD: clip each client's gradient, average (§2.2)", batch="full",
                  privacy="local"),
        Algorithm("clip-sgd", clip_sgd, "naive Clip-SGD: clip each client's minibatch gradient, average (§2.2)",
                  batch="minibatch", privacy="local"),
        Algorithm("naive-parallel-clip", naive_parallel_clip, "average the gradients, clip the average (§2.3)"),
        Algorithm("clip21", clip21, "Clip21-GD / Clip21-SGD: error feedback for clipping (§5)", privacy="local"),
        Algorithm("ef21", ef21, "EF21 with Top-k or identity compressor (§4)"),
        Algorithm("celgc", celgc, "CELGC: local clipped SGD, models averaged every I steps (§3)"),
        Algorithm("local-sgd", local_sgd, "Local SGD / FedAvg, full participation, no clipping (§2.4)"),
        Algorithm("clip21-avg", clip21_avg, "Clip21-Avg: exact mean estimation with clipped messages (§6)",
                  needs_targets=True),
        Algorithm("episode", episode,
                  "EPISODE: local steps with resampled corrections, one clip decision per round (§7)"),
        Algorithm("clip21-sgd2m", clip21_sgd2m,
                  "Clip21-SGD2M: Clip21 with client momentum, damped EF, local DP noise (§8)", privacy="local"),
        Algorithm("scaffold", scaffold, "SCAFFOLD: local steps corrected by control variates (§11)"),
        Algorithm("fedprox", fedprox, "FedProx: Local SGD on proximal local objectives (§12)"),
        Algorithm("dp-fedavg", dp_fedavg, "DP-FedAvg: flat update clipping, noise on the average, adaptive C (§9)",
                  privacy="central"),
    ]
}


def get(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise DistclipError(f"algorithm.name = {name!r} is not allowed; choose one of: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def not_applicable(name: str) -> Any:
    """For a key algorithm ``name`` lacks: raise "does not apply" when another algorithm has it."""

    def check(key: str) -> None:
        users = sorted(n for n, a in ALGORITHMS.items() if key in schema.keys(a.Params))
        if users:
            raise DistclipError(f"algorithm.{key} does not apply to {name}; it applies to: {', '.join(users)}")

    return check


__all__ = ["ALGORITHMS", "Algorithm", "Context", "StepInfo", "get", "not_applicable"]
