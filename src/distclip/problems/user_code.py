"""The user's own code named in a config: ``"FILE.py:NAME"`` or ``"package.module:NAME"``, and what it returns.

A relative FILE is read relative to the config file's folder (the path is made absolute when the config is
validated, so the run's config.toml reruns from anywhere). Every failure is one line naming the key, what
went wrong and the fix: a missing file or module, a missing name, a factory that raises, a dataset whose
items are not (input, label) pairs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import DistclipError

#: built-in losses: (output, target) -> the mean loss over the batch
LOSSES = ("cross_entropy", "mse")


def absolute(spec: str | None, base: Path | None) -> str | None:
    """``spec`` with a relative ``FILE.py`` made absolute against ``base`` (the config's folder, or the cwd)."""
    if spec is None or ":" not in spec:
        return spec
    where, _, name = spec.rpartition(":")
    if not where.endswith(".py"):
        return spec
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"{path.resolve()}:{name}"


def load_object(spec: str, key: str) -> Any:
    """The object ``NAME`` of ``FILE.py:NAME`` or ``package.module:NAME``."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise DistclipError(f"{key} = {spec!r} must look like 'FILE.py:NAME' or 'package.module:NAME'")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise DistclipError(f"{key}: file {path} not found; give a path relative to the config file's folder")
        module_name = "distclip_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module = sys.modules.get(module_name)
        if module is None:
            loader = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[module_name] = module
            try:
                loader.loader.exec_module(module)
            except Exception as e:
                del sys.modules[module_name]
                raise DistclipError(f"{key}: importing {path} failed ({type(e).__name__}: {e}); fix that "
                                    "file") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise DistclipError(f"{key}: module {where!r} cannot be imported ({e}); check the name and that it is "
                                "installed or on PYTHONPATH") from None
    if not hasattr(module, name):
        raise DistclipError(f"{key}: {where} has no {name!r}; name a function or class defined there")
    return getattr(module, name)


def call(factory: Any, key: str) -> Any:
    """``factory()`` (a module or dataset given as an object is returned as is)."""
    if isinstance(factory, torch.nn.Module | torch.utils.data.Dataset | list | tuple) or not callable(factory):
        return factory
    try:
        return factory()
    except Exception as e:
        name = getattr(factory, "__name__", type(factory).__name__)
        raise DistclipError(f"{key}: {name}() raised {type(e).__name__}: {e}; fix the factory") from None


def builtin_loss(name: str) -> Any:
    """The built-in loss ``name``: logits ``[..., C]`` with integer labels ``[...]``, or MSE on equal shapes."""
    if name == "cross_entropy":
        def cross_entropy(out: Tensor, y: Tensor) -> Tensor:
            return torch.nn.functional.cross_entropy(out.flatten(0, -2) if out.dim() > 2 else out, y.flatten()
                                                     if out.dim() > 2 else y)
        return cross_entropy
    if name == "mse":
        def mse(out: Tensor, y: Tensor) -> Tensor:
            return torch.nn.functional.mse_loss(out, y.view_as(out))
        return mse
    raise DistclipError(f"problem.loss = {name!r}: choose one of {', '.join(LOSSES)} or give 'FILE.py:NAME'")


def as_tensors(dataset: Any, key: str) -> tuple[Tensor, Tensor | None]:
    """(inputs ``[M, ...]``, labels ``[M, ...]`` or None when the items carry none) of a map-style dataset."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        ts = dataset.tensors
        return ts[0], ts[1] if len(ts) > 1 else None
    try:
        n = len(dataset)
    except TypeError:
        raise DistclipError(f"{key}: {type(dataset).__name__} has no len(); return a map-style "
                            "torch.utils.data.Dataset (or a list of them, one per client)") from None
    if n == 0:
        raise DistclipError(f"{key}: the dataset is empty")
    items = [dataset[i] for i in range(n)]
    if not all(isinstance(it, tuple | list) and len(it) == 2 for it in items):
        return torch.stack([torch.as_tensor(it) for it in items]), None
    inputs = torch.stack([torch.as_tensor(a) for a, _ in items])
    labels = torch.stack([torch.as_tensor(b) for _, b in items])
    return inputs, labels
