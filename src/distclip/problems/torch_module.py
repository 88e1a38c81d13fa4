"""Problem kind ``torch``: the user's own ``torch.nn.Module``, data and loss (README "Bring your own model").

x is the module's trainable parameters flattened in ``named_parameters()`` order, x^0 its own initialisation
(the factory is called under ``torch.manual_seed(seed)``). Client i's loss on a batch is the user's loss of
``functional_call(module, x_i, inputs)`` against the labels; all clients a process holds are computed together:

- ``vmap`` path: ``torch.func.vmap(grad(loss))`` over the stacked client parameters, ``chunk`` clients at a time;
- ``loop`` path: one ``torch.func.grad`` call per client, under ``torch.manual_seed`` of (seed, client, step) so
  that dropout masks depend on nothing else (not on placement, chunks or ranks).

``vectorise = "auto"`` takes the loop for models with recurrent layers (measured: vmap over ``nn.LSTM`` on CPU
is 7x slower than a per-client loop), for models with dropout (placement-independent masks), and wherever a
probe shows that vmap cannot batch the model; otherwise vmap. summary.json says which path ran and why.
Buffers are constants shared by every client (not trained, averaged or checkpointed); BatchNorm's running
statistics would be per-client state, so BatchNorm layers are refused (:func:`batchnorm_to_groupnorm`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DistclipError
from ..schema import choice, key
from . import module_problem
from .kinds import ProblemKind, start_key, with_start
from .user_code import LOSSES, absolute, as_tensors, builtin_loss, call, load_object


@dataclass(frozen=True)
class TorchConfig:
    model: str | None = key(None, "'FILE.py:NAME' or 'package.module:NAME': a callable returning the nn.Module "
                            "(or distclip.run(config, model=...))")
    data: str | None = key(None, "'FILE.py:NAME' or 'package.module:NAME': a callable returning a Dataset of (input, "
                           "label) pairs, a list of per-client Datasets, or a tuple (train, test)")
    loss: str = key("cross_entropy", "cross_entropy | mse | 'FILE.py:NAME' taking (output, target), returning the "
                    "mean loss over the batch")
    vectorise: str = key("auto", "auto | vmap | loop: how the clients of a process are computed")
    chunk: int = key(0, "clients per vmap call (bounds memory; 0: all clients of the process at once)")
    eval_rows: int = key(0, "log f, ∇f and test metrics on this many seeded train (and test) rows (0: all)")
    x0: float | list[float] | None = start_key(None)

    def validate(self, cfg: Any) -> TorchConfig:
        choice("problem.vectorise", self.vectorise, ("auto", "vmap", "loop"))
        if self.chunk < 0 or self.eval_rows < 0:
            raise DistclipError("problem.chunk and problem.eval_rows must be >= 0 (0: all clients, all rows)")
        if self.loss not in LOSSES and ":" not in self.loss:
            raise DistclipError(f"problem.loss = {self.loss!r}: choose one of {', '.join(LOSSES)} or 'FILE.py:NAME'")
        base = getattr(cfg, "origin", None)
        return dataclasses.replace(self, model=absolute(self.model, base), data=absolute(self.data, base),
                                   loss=absolute(self.loss, base))


def batchnorm_to_groupnorm(module: nn.Module, groups: int = 2) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by GroupNorm with ``groups`` groups (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            g = groups if child.num_features % groups == 0 else 1
            setattr(module, name, nn.GroupNorm(g, child.num_features, affine=child.affine))
        else:
            batchnorm_to_groupnorm(child, groups)
    return module


def _check_module(module: Any) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise DistclipError(f"problem.model returned {type(module).__name__}, not a torch.nn.Module")
    for name, layer in module.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
            raise DistclipError(
                f"problem.model: layer {name!r} ({type(layer).__name__}) keeps running statistics, per-client state "
                "the algorithms would neither average nor checkpoint; use GroupNorm (distclip.problems.torch_module."
                "batchnorm_to_groupnorm(model)) or track_running_stats=False")
    for name, p in module.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise DistclipError(f"problem.model: parameter {name!r} is uninitialised (a lazy module); give its "
                                "sizes or run one forward pass in the factory")
    if not any(p.requires_grad for p in module.parameters()):
        raise DistclipError("problem.model has no trainable parameters")
    return module


def make_module(factory: Any, seed: int) -> nn.Module:
    """The module from ``factory()`` under ``torch.manual_seed(seed)``, checked to build the same parameters twice."""
    if isinstance(factory, nn.Module):
        return _check_module(factory)
    built = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            built.append(_check_module(call(factory, "problem.model")))
    shapes = [[(n, tuple(p.shape)) for n, p in m.named_parameters()] for m in built]
    if shapes[0] != shapes[1]:
        raise DistclipError("problem.model: the factory's parameters change between calls "
                            f"({len(shapes[0])} vs {len(shapes[1])} tensors or other shapes); make it deterministic")
    if not all(torch.equal(a, b) for a, b in zip(built[0].parameters(), built[1].parameters(), strict=True)):
        raise DistclipError("problem.model: the factory's initial weights differ between two calls under the same "
                            "torch.manual_seed; draw them from torch's global generator only")
    return built[0]


def _split(data: Any, cfg: Any) -> tuple[Any, Any]:
    """(training data, test data or None) from what the data factory returned."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise DistclipError(f"problem.data returned a tuple of {len(data)}; return (train, test) or one dataset")
        return data
    return data, None


def _rows(inputs: Tensor, labels: Tensor | None, cfg: Any) -> tuple[np.ndarray, Any]:
    """Client rows ``[N, m]`` of a pooled dataset, split by the configured partition scheme."""
    from ..data.partition import partition

    p = cfg.partition
    label_based = p.scheme in ("sorted", "similarity", "dirichlet")
    if labels is None or labels.dim() != 1:
        if label_based:
            what = "no labels" if labels is None else f"labels of shape {list(labels.shape[1:])} per row"
            raise DistclipError(f"partition.scheme = {p.scheme!r} splits by label, but problem.data gives {what}; "
                                "use scheme = 'iid' or 'contiguous', or return (input, label) pairs, one label each")
        keys = np.zeros(len(inputs), dtype=np.int64)
    else:
        keys = labels.cpu().numpy()
    part = partition(keys, p.clients, p.scheme, cfg.seed, similarity=p.similarity, alpha=p.alpha)
    return part.rows, part


def build(cfg: Any, dtype: torch.dtype, device: torch.device, objects: dict[str, Any] | None = None) -> Any:
    p, objects = cfg.problem, objects or {}
    given = {k: objects.get(k) if objects.get(k) is not None else getattr(p, k) for k in ("model", "data", "loss")}
    for k in ("model", "data"):
        if given[k] is None:
            raise DistclipError(f"problem.{k} is not set: give problem.{k} = 'FILE.py:NAME' or "
                                f"distclip.run(config, {k}=...)")

    def resolve(k: str, v: Any) -> Any:
        return load_object(v, f"problem.{k}") if isinstance(v, str) else v

    module = make_module(resolve("model", given["model"]), cfg.seed)
    loss = given["loss"]
    loss_fn = builtin_loss(loss) if isinstance(loss, str) and loss in LOSSES else resolve("loss", loss)
    train, test = _split(call(resolve("data", given["data"]), "problem.data"), cfg)
    if isinstance(train, list):  # natural partition: one dataset per client
        if len(train) != cfg.partition.clients:
            raise DistclipError(f"problem.data gives {len(train)} client datasets but partition.clients = "
                                f"{cfg.partition.clients}; make them agree")
        parts = [as_tensors(d, f"problem.data (client {i})") for i, d in enumerate(train)]
        m = min(len(x) for x, _ in parts)
        inputs = torch.stack([x[:m] for x, _ in parts])
        labels = None if parts[0][1] is None else torch.stack([y[:m] for _, y in parts])
        info = {"partition": "natural", "rows_per_client": m, "rows_dropped": sum(len(x) - m for x, _ in parts)}
    else:
        flat_x, flat_y = as_tensors(train, "problem.data")
        rows, part = _rows(flat_x, flat_y, cfg)
        index = torch.from_numpy(np.array(rows))
        inputs, labels = flat_x[index], None if flat_y is None else flat_y[index]
        info = part.info()
    if labels is None:
        raise DistclipError("problem.data gives inputs without labels; the loss needs (input, label) pairs")
    test_t = None if test is None else as_tensors(test, "problem.data (test)")
    problem = module_problem.ModuleProblem(module, inputs, labels, test_t, loss_fn, loss == "cross_entropy",
                                           cfg.seed, dtype, device, p.vectorise, p.chunk, info, p.eval_rows)
    problem.describe_objects({k: isinstance(given[k], str) for k in given})
    return with_start(problem, p.x0, dtype, device)


KINDS = {"torch": ProblemKind("torch", "your own torch.nn.Module, data and loss (problem.model, problem.data, "
                              "problem.loss)", TorchConfig, build, no_rows="its rows come from problem.data")}

__all__ = ["TorchConfig", "batchnorm_to_groupnorm", "build", "make_module"]
