"""The contract between algorithm rules and engines, and how a rule's hyperparameters are resolved.

An algorithm is a module (see :class:`Rule`) with a frozen hyperparameter dataclass ``Params`` and three
pure functions over a state of stacked tensors:

- ``init(ctx) -> (state, StepInfo)``: the state at step 0 (server model, client memories, ...),
  including any initial communication round and what it clipped;
- ``step(state, ctx, t) -> (state, StepInfo)``: one server step t → t + 1, made of the algorithm's
  client rule (what each client computes and sends) and server rule (how the averaged messages move
  the model); it talks to other clients only through ``ctx.transport`` (see
  :mod:`distclip.engine.transport`);
- ``model(state, ctx) -> x``: the point at which the objective is logged.

``ctx.hp`` is the rule's own ``Params``, resolved for the clients a process holds (:func:`resolve`):
a step size written ``"c/L"`` becomes a number, keys marked ``per_client`` (thresholds) become
``[n_block]`` tensors. Per-client tensors carry a leading client dimension ``[n_block, ...]`` so every
client held by a process is updated in one vectorised call. Engines never branch on the algorithm.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from .. import schema
from ..engine.transport import Transport, participation
from ..errors import DistclipError
from ..problems.base import ClientOracle

if TYPE_CHECKING:
    from ..config import Config


def per_client(*, restart: str = "", **kwargs: Any) -> Any:
    """A state field with a leading client dimension: gathered into checkpoints, split on resume.

    With client sampling (docs/algorithms.md §13) a plain per-client field is the client's own memory (g_i, c_i, a
    momentum buffer), kept for every client while it is not sampled. ``restart`` marks fields that live for one
    round only and exist for the round's participants alone: ``"model"`` (a local model, which restarts from the
    server model when its client is next sampled) or ``"zeros"`` (recomputed by the rule when the round starts)."""
    return field(metadata={"per_client": True, "restart": restart}, **kwargs)


def local_model(**kwargs: Any) -> Any:
    """A per-client local model: under client sampling it restarts from the server model every round."""
    return per_client(restart="model", **kwargs)


def is_per_client(f: Any) -> bool:
    return bool(f.metadata.get("per_client"))


def restart(f: Any) -> str:
    """How a per-client field starts a round under client sampling: "" (kept per client), "model" or "zeros"."""
    return f.metadata.get("restart", "")


def step_size(help: str = "step size η: a number > 0, or 'c/L' (e.g. '1/L') with L the problem's smoothness") -> Any:
    """The ``lr`` key: required, scaled by the step-size schedule."""
    return schema.key(None, help, lr=True, scales=True)


def threshold(help: str, *, scales: bool = False, required: bool = True) -> Any:
    """A key holding one number or one per client; resolved to a ``[n_block]`` tensor of the clients held here.
    ``required``: the rule needs it (a clipping threshold τ; ``inf`` disables clipping)."""
    return schema.key(None, help, per_client=True, scales=scales, required=required)


def memory_mean(transport: Transport, t: Tensor, **kwargs: Any) -> Tensor:
    """(1/N) Σ_{i∈S} t_i, by which a server aggregate (1/N) Σ_i g_i of per-client memories moves when the round's
    participants S add t_i to theirs: the plain mean without sampling, |S|/N times the participants' mean with it
    (EF21-PP, docs/algorithms.md §13). ``kwargs`` go to ``transport.mean``."""
    avg = transport.mean(t, **kwargs)
    share = participation(transport)
    return avg if share == 1 else share * avg


@runtime_checkable
class Rule(Protocol):
    """What an algorithm module provides (checked when it is registered).

    Optional: ``releases(hp, steps) -> int``, the noisy messages per client in ``steps`` steps (private
    algorithms); ``sample_rate(hp) -> float``, the accountant's sampling rate (default 1);
    ``own_sampling(hp)``, the client sampling a rule asks for itself (a :class:`~distclip.sections.SamplingConfig`
    or None; its rounds run even without participants, DP-FedAvg's noise)."""

    Params: type
    State: type

    def init(self, ctx: Context) -> tuple[Any, StepInfo]: ...

    def step(self, state: Any, ctx: Context, t: int) -> tuple[Any, StepInfo]: ...

    def model(self, state: Any, ctx: Context) -> Tensor: ...


@dataclass(frozen=True)
class Context:
    transport: Transport
    oracle: ClientOracle
    hp: Any  # the rule's own Params, resolved
    x0: Tensor


@dataclass(frozen=True)
class StepInfo:
    """What a step reports: per-client clip flags ``[n_block]`` (None when nothing is clipped), and how many clients
    took part (None: all N; client sampling sets |S_r|, docs/algorithms.md §13)."""

    clipped: Tensor | None = None
    participants: int | None = None


@dataclass(frozen=True)
class Algorithm:
    """Registry entry: the rule module, one line of description, and facts the engine-independent checks use."""

    name: str
    rules: ModuleType
    summary: str
    batch: str = "any"  # "full" (run.batch_size must be 0), "minibatch" (> 0) or "any"
    privacy: str = ""  # "local" (noise on each client message) or "central" (on the aggregate)
    needs_targets: bool = False  # averages per-client vectors of the problem (mean estimation)

    def __post_init__(self) -> None:
        r = self.rules
        if not isinstance(r, Rule):
            raise TypeError(f"{self.name}: {r.__name__} lacks Params, State, init, step or model")
        for cls in (r.Params, r.State):
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{self.name}: {r.__name__}.{cls.__name__} must be a dataclass")
        if not r.Params.__dataclass_params__.frozen:
            raise TypeError(f"{self.name}: {r.__name__}.Params must be frozen")
        if bool(self.privacy) != hasattr(r, "releases"):
            raise TypeError(f"{self.name}: a private rule defines releases(hp, steps), and only a private one")
        schema.keys(r.Params)  # groups and keys are consistent

    @property
    def Params(self) -> type:  # noqa: N802 (the class)
        return self.rules.Params

    @property
    def uses_lr(self) -> bool:
        return any(k.meta.get("lr") for k in schema.keys(self.Params).values())


# -- validation shared by every rule ----------------------------------------------------------------------------
def lr_factor(lr: float | str) -> tuple[float, bool]:
    """(value, relative): ``0.5`` -> (0.5, False); ``"2/L"`` -> (2.0, True) meaning 2/L."""
    if isinstance(lr, str):
        m = re.fullmatch(r"\s*([0-9.eE+-]*)\s*/\s*L\s*", lr)
        try:
            c = float(m.group(1)) if m and m.group(1) else (1.0 if m else None)
        except ValueError:
            c = None
        if c is None or not c > 0 or math.isinf(c):
            raise DistclipError(f"algorithm.lr = {lr!r} must be a number > 0 or 'c/L' with c > 0 (e.g. '1/L')")
        return c, True
    schema.positive("algorithm.lr", lr, allow_inf=False)
    return float(lr), False


def validate(spec: Algorithm, params: Any, cfg: Config) -> Any:
    """The checks every rule shares (step size, thresholds, batches, groups), then the rule's own
    ``Params.validate(cfg)``, which may fill defaults; returns the validated ``Params``."""
    for name, k in schema.keys(type(params)).items():
        value = schema.get(params, k)
        if k.meta.get("lr"):
            if value is None:
                raise DistclipError(f"{spec.name} needs algorithm.lr (a number > 0, or 'c/L' such as '1/L')")
            lr_factor(value)
        if k.meta.get("required") and value is None:
            raise DistclipError(f"{spec.name} needs algorithm.{name}, the clipping threshold (> 0; inf disables "
                                "clipping)")
        if k.meta.get("per_client") and value is not None:
            schema.positive(f"algorithm.{name}", value)
            if isinstance(value, list) and len(value) != cfg.partition.clients:
                raise DistclipError(f"algorithm.{name} lists {len(value)} values for {cfg.partition.clients} "
                                    "clients; give one per client")
    for f in dataclasses.fields(params):
        if f.metadata.get("group") and hasattr(getattr(params, f.name), "validate"):
            getattr(params, f.name).validate(cfg)
    b = cfg.run.batch_size
    if spec.batch == "full" and b > 0:
        raise DistclipError(f"{spec.name} uses full gradients; set run.batch_size = 0 or use algorithm "
                            f"{spec.name.replace('gd', 'sgd')}")
    if spec.batch == "minibatch" and b == 0:
        raise DistclipError(f"{spec.name} needs run.batch_size > 0; for full gradients use algorithm "
                            f"{spec.name.replace('sgd', 'gd')}")
    if spec.needs_targets and not getattr(cfg.problem.entry, "targets", False):
        raise DistclipError(f"{spec.name} averages the vectors a_i of a problem with per-client targets (such as "
                            f"quadratic's centres); kind '{cfg.problem.kind}' has none")
    return params.validate(cfg) if hasattr(params, "validate") else params


# -- resolution for the clients a process holds -----------------------------------------------------------------
@dataclass(frozen=True)
class Env:
    """What resolving hyperparameters may use: the clients held here, the run's batch, the problem's L."""

    clients: Tensor
    n_clients: int
    batch_size: int
    dtype: torch.dtype
    device: torch.device
    smoothness: Callable[[], float]
    facts: dict[str, Any] = field(default_factory=dict)  # reported in summary.json (L, lr)

    def per_client(self, value: float | list[float]) -> Tensor:
        full = torch.as_tensor(value, dtype=self.dtype, device=self.device).expand(self.n_clients)
        return full[self.clients].contiguous()


def resolve(params: Any, env: Env) -> Any:
    """``params`` for the rules: ``lr`` a number (``c/L`` resolved), per-client keys ``[n_block]`` tensors,
    then the rule's own ``Params.resolve(env)`` (derived values such as CELGC's γ from τ)."""
    changes: dict[str, Any] = {}
    for name, k in schema.keys(type(params)).items():
        value = schema.get(params, k)
        if k.meta.get("lr"):
            c, relative = lr_factor(value)
            if relative:
                env.facts["L"] = env.smoothness()
                c = c / env.facts["L"]
            env.facts["lr"] = changes[name] = c
        elif k.meta.get("per_client") and value is not None:
            changes[name] = env.per_client(value)
    params = schema.replace(params, **changes)
    return params.resolve(env) if hasattr(params, "resolve") else params


def scaled(hp: Any, s: float) -> Any:
    """``hp`` with every key marked ``scales`` (η, CELGC's γ) multiplied by s: the joint decay of §3.2."""
    if s == 1.0:
        return hp
    table = schema.keys(type(hp))
    return schema.replace(hp, **{n: schema.get(hp, k) * s for n, k in table.items()
                                 if k.meta.get("scales") and schema.get(hp, k) is not None})
