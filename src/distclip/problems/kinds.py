"""Registry of problem kinds: ``problem.kind`` -> the module that owns its configuration and builder.

Each kind lives in one module that defines ``KINDS``, a dict of :class:`ProblemKind` (its config dataclass,
whose fields are the kind's ``[problem]`` keys, and its build function). Modules are imported when a kind
is first used, so reading a config of one kind never loads another kind's models or data. Adding a kind
is its module plus one line in :data:`MODULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import DistclipError
from ..schema import key

if TYPE_CHECKING:
    from ..config import Config
    from ..data.partition import Partition
    from .base import Problem

#: the kind of a config that names none
DEFAULT = "logreg"

#: problem.kind -> module of distclip.problems that defines it
MODULES: dict[str, str] = {
    "logreg": "logreg",
    "quadratic": "quadratic",
    "quartic": "quartic",
    "mlp": "classifiers",
    "cnn": "classifiers",
    "resnet20": "classifiers",
    "resnet32": "classifiers",
    "resnet56": "classifiers",
    "vgg11": "classifiers",
    "lstm": "lstm",
    "torch": "torch_module",
}


@dataclass(frozen=True)
class ProblemKind:
    """A problem kind: its config class, how to build it, and (for labelled data) how to load its rows.

    ``build(cfg, dtype, device)`` returns the :class:`~distclip.problems.base.Problem` (a kind that takes Python
    objects, ``torch``, also gets ``objects``, e.g. the user's model given to ``distclip.run``); ``labelled(cfg)``
    returns (dataset with ``labels``, the row indices that are split into clients), or the kind has
    ``no_rows``, the reason it has none; ``targets``: it provides per-client vectors (mean estimation)."""

    name: str
    summary: str
    config: type
    build: Callable[[Config, torch.dtype, torch.device], Problem]
    labelled: Callable[[Config], tuple[Any, Any]] | None = None
    no_rows: str = ""
    targets: bool = False


def get(kind: str) -> ProblemKind:
    if kind not in MODULES:
        raise DistclipError(f"problem.kind = {kind!r} is not allowed; choose one of: {', '.join(MODULES)}")
    module = importlib.import_module(f"{__package__}.{MODULES[kind]}")
    return module.KINDS[kind]


def not_applicable(kind: str) -> Callable[[str], None]:
    """For a key kind ``kind`` lacks: raise "does not apply" when another kind has it."""
    from ..schema import keys

    def check(name: str) -> None:
        users = sorted(k for k in MODULES if name in keys(get(k).config))
        if users:
            raise DistclipError(f"problem.{name} does not apply to kind = '{kind}'; it applies to: "
                                f"{', '.join(users)}")

    return check


def start_key(default: float | None) -> Any:
    """``x0``, which every kind has: a number (every coordinate), a list, or unset for a network's own init."""
    what = "the model's seeded initialisation" if default is None else f"{default:g} everywhere"
    return key(default, f"start x^0: a number (all coordinates) or a list of d numbers (default: {what})")


def local_path(path: str | None, cfg: Any) -> str | None:
    """A data path made absolute against the config file's folder (so config.toml reruns anywhere); a relative
    path that exists only from the current directory (configs written before paths were resolved) is kept so."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    base = getattr(cfg, "origin", None) or Path.cwd()
    here = (base / p).resolve()
    return str(here if here.exists() or not p.exists() else p.resolve())


def start(value: float | list[float], dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """x^0 of dimension ``dim`` from the ``x0`` key."""
    if not all(math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
        raise DistclipError(f"problem.x0 = {value!r} is not finite; give finite numbers")
    if isinstance(value, list):
        if len(value) != dim:
            raise DistclipError(f"problem.x0 has {len(value)} entries but the problem has dimension {dim}")
        return torch.tensor(value, dtype=dtype, device=device)
    return torch.full((dim,), float(value), dtype=dtype, device=device)


def with_start(problem: Any, x0: float | list[float] | None, dtype: torch.dtype, device: torch.device) -> Any:
    """A network problem started from ``x0`` when given (else from its own initialisation)."""
    return problem if x0 is None else problem.with_x0(start(x0, problem.dim, dtype, device))


def build_partition(cfg: Config) -> tuple[Any, Partition]:
    """The dataset of ``cfg`` and its split into clients (kinds with labelled rows only).

    Only the rows ``labelled`` names (e.g. the training split) are split; partition rows index the whole set."""
    from ..data.partition import partition

    kind = get(cfg.problem.kind)
    if kind.labelled is None:
        raise DistclipError(f"problem kind '{kind.name}' has no labelled rows to partition; {kind.no_rows}")
    data, train = kind.labelled(cfg)
    p = cfg.partition
    part = partition(data.labels[train], p.clients, p.scheme, cfg.seed, similarity=p.similarity, alpha=p.alpha)
    rows = train[part.rows]
    rows.setflags(write=False)
    return data, dataclasses.replace(part, rows=rows)


def build_problem(cfg: Config, device: torch.device | None = None, objects: dict[str, Any] | None = None) -> Problem:
    """The problem of ``cfg`` (data loaded, partitioned) in its dtype, on ``device`` or ``run.device``;
    ``objects`` are Python objects standing in for config keys (``model``, ``data``, ``loss`` of kind torch)."""
    dtype, device = getattr(torch, cfg.run.dtype), device or run_device(cfg.run.device)
    kind = get(cfg.problem.kind)
    if not objects:
        return kind.build(cfg, dtype, device)
    if "objects" not in inspect.signature(kind.build).parameters:
        raise DistclipError(f"{', '.join(sorted(objects))} given as Python objects, but problem kind '{kind.name}' "
                            "takes none; set problem.kind = 'torch'")
    return kind.build(cfg, dtype, device, objects=objects)


def run_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DistclipError(f"run.device = {name!r} but CUDA is not available here; set run.device = 'cpu' (a "
                            "reproduce suite's full version needs a GPU: run its --quick version on a CPU)")
    return torch.device(name)
