"""distclip's algorithms as drop-in ``torch.optim`` optimizers for your own (torchrun) training loop.

    model = MyModel()                                    # no DistributedDataParallel: the optimizer communicates
    opt = distclip.optim.CELGC(model.parameters(), lr=0.5, gamma=0.05, local_steps=8)
    for batch in loader:
        opt.zero_grad()
        loss_fn(model(batch.x), batch.y).backward()
        opt.step()
    with opt.averaged():                                 # the averaged model, on every rank
        evaluate(model)

Every torchrun rank is one client; one process alone is the single-client algorithm. Each class takes the
model's parameters and its algorithm's ``[algorithm]`` keys as keywords (``distclip list NAME``), plus the
keywords of :class:`DistclipOptimizer`. The update rules are the engine's (docs/algorithms.md).
"""

from __future__ import annotations

import inspect
from typing import Any

from .. import schema
from ..algorithms import get
from .optimizer import OWN_KEYS, SCHEDULE_KEYS, DistclipOptimizer
from .replay import Request

#: class name -> algorithm name
NAMES = {
    "DistributedSGD": "sgd", "ClipSGD": "clip-sgd", "NaiveParallelClip": "naive-parallel-clip", "CELGC": "celgc",
    "LocalSGD": "local-sgd", "Clip21": "clip21", "EF21": "ef21", "Clip21SGD2M": "clip21-sgd2m",
    "EPISODE": "episode", "SCAFFOLD": "scaffold", "FedProx": "fedprox", "DPFedAvg": "dp-fedavg",
}


def create(name: str, params: Any, **keys: Any) -> DistclipOptimizer:
    """The optimizer of algorithm ``name`` (``celgc``, ``clip21``, ...) over ``params`` with its keys."""
    return DistclipOptimizer(params, name, **keys)


def _signature(algorithm: str) -> inspect.Signature:
    own = inspect.signature(DistclipOptimizer.__init__).parameters
    params = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for name, k in schema.keys(get(algorithm).Params).items():
        if name not in SCHEDULE_KEYS:
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=k.default))
    params += [own[n] for n in OWN_KEYS]
    return inspect.Signature(params)


def _optimizer_class(cls_name: str, algorithm: str) -> type:
    spec = get(algorithm)

    def __init__(self: DistclipOptimizer, params: Any, **keys: Any) -> None:  # noqa: N807
        DistclipOptimizer.__init__(self, params, algorithm, **keys)

    __init__.__signature__ = _signature(algorithm)  # type: ignore[attr-defined]
    keys = "\n".join(f"    {n}: {k.help}" for n, k in schema.keys(spec.Params).items() if n not in SCHEDULE_KEYS)
    doc = (f"{spec.summary} as a torch.optim optimizer (algorithm '{algorithm}').\n\n{spec.rules.__doc__}\n"
           f"Keywords (its [algorithm] keys):\n{keys}\n\nSee DistclipOptimizer for seed, batch_size, steps, "
           "decay_gamma and timeout_s.")
    return type(cls_name, (DistclipOptimizer,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


globals().update({cls: _optimizer_class(cls, alg) for cls, alg in NAMES.items()})

__all__ = ["NAMES", "DistclipOptimizer", "Request", "create", *NAMES]  # noqa: PLE0604
