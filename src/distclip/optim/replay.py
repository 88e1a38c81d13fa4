"""A rule run one gradient at a time: how an optimizer's ``step()`` drives distclip's rules.

A rule's ``init``/``step`` (:mod:`distclip.algorithms.base`) asks ``ctx.oracle`` for gradients at points it
computes itself; a training loop computes one gradient (``loss.backward()``) at the model's current
parameters and then calls ``step()``. :class:`Stepper` runs the rule from a saved position until it asks for
a gradient it has not been given: the oracle raises :class:`Pending` with that :class:`Request`, the caller
puts the requested point into the parameters and returns. The next ``step()`` runs the same rule step again
from the same saved state, and every effect already performed in it (gradients given, averages received,
objects broadcast) is taken from the :class:`Log` instead of being done again. So each collective runs
exactly once and the rerun is exact, because rules are pure functions of their state, the gradients and the
averages. (state at the start of the step, step number, log) is the whole position; it is checkpointed.

Step sizes: a rule step uses the learning rate that the param group has when the step first runs. A step
whose start does not depend on the step size (CELGC's model average before its gradient) is rerun with the
learning rate current at its first gradient, if a scheduler changed it in between and the requested point
is unchanged by it; so each step's arithmetic uses the learning rate of the ``optimizer.step()`` call in
which it is done, as ``torch.optim.lr_scheduler`` expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from ..algorithms.base import Context, StepInfo, scaled
from ..errors import DistclipError


@dataclass(frozen=True)
class Request:
    """A gradient the rule waits for: at ``x`` (``[d]``, this client's point) for evaluation number ``draw``,
    on ``batch_size`` rows (None: the loop's own minibatch; 0: the full local data) from minibatch stream
    ``stream`` (0: the steps' own batches; 1: EPISODE's resampled gradient at the start of a round)."""

    x: Tensor
    draw: int
    batch_size: int | None
    stream: int


class Pending(Exception):  # noqa: N818 (a signal, not an error)
    """Raised through the rule by the oracle when it needs a gradient it has not been given."""

    def __init__(self, request: Request) -> None:
        super().__init__("gradient pending")
        self.request = request


@dataclass
class Log:
    """The effects performed so far in the current rule step: (kind, input, output), in order.

    Entries are recorded by reference: rules never write into their states, nor into what ``transport.mean``
    returns; the gradients the oracle returns are theirs to overwrite, so a logged gradient is copied once, by
    :meth:`freeze`, when the step stops at a pending gradient, and again for each rerun that reads it."""

    entries: list[tuple[str, Any, Any]] = field(default_factory=list)
    cursor: int = 0
    frozen: int = 0  # entries[:frozen] are private copies

    def replay(self, kind: str, given: Any) -> tuple[bool, Any]:
        """(True, the logged output) if the next effect is logged (its input must be the same), else (False, None)."""
        if self.cursor == len(self.entries):
            return False, None
        k, logged_in, out = self.entries[self.cursor]
        if k != kind or not _equal(logged_in, given):
            raise _Diverged(kind)
        self.cursor += 1
        return True, out.clone() if kind == "grad" else out

    def record(self, kind: str, given: Any, out: Any) -> None:
        self.entries.append((kind, given, out))
        self.cursor += 1

    def freeze(self) -> None:
        for i in range(self.frozen, len(self.entries)):
            kind, given, out = self.entries[i]
            if kind == "grad":
                self.entries[i] = (kind, given, out.clone())
        self.frozen = len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.cursor = self.frozen = 0

    def gradients(self) -> int:
        return sum(k == "grad" for k, _, _ in self.entries)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Tensor):
        if not (isinstance(b, Tensor) and a.shape == b.shape and a.dtype == b.dtype):
            return False
        same_view = a.data_ptr() == b.data_ptr() and a.stride() == b.stride() and a.is_contiguous()
        return same_view or torch.equal(_bits(a), _bits(b))
    return bool(a == b)


def _bits(t: Tensor) -> Tensor:
    """``t``'s bits as integers, so that equal NaNs compare equal (a rerun is bitwise the same)."""
    if not t.is_floating_point():
        return t
    return t.contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


class _Diverged(Exception):  # noqa: N818
    """A rerun asked for a different effect than the one logged (its inputs changed)."""


class ReplayOracle:
    """The rule's oracle: logged gradients, then the one gradient supplied, then :class:`Pending`."""

    def __init__(self, seed: int, clients: Tensor, log: Log) -> None:
        self.seed, self.clients, self.log = seed, clients, log
        self.supply: tuple[Tensor, Tensor] | None = None  # (point, gradient) given for the pending request

    def grads(self, x: Tensor, draw: int, *, batch_size: int | None = None, stream: int = 0) -> Tensor:
        point = x.reshape(-1)
        key = (draw, batch_size, stream)
        done, out = self.log.replay("grad", (point, key))
        if done:
            return out
        if self.supply is None or not _equal(self.supply[0], point):
            raise Pending(Request(point, draw, batch_size, stream))
        g = self.supply[1].to(x.dtype).reshape(1, -1)  # the caller's fresh tensor: the rule may overwrite it
        self.supply = None
        self.log.record("grad", (point, key), g)
        return g


class ReplayTransport:
    """The rule's transport: logged averages and broadcasts are returned again, new ones are performed once."""

    def __init__(self, inner: Any, log: Log) -> None:
        self.inner, self.log = inner, log

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        done, out = self.log.replay("mean", t)
        if done:
            return out
        out = self.inner.mean(t, down=down, sparse_k=sparse_k)
        self.log.record("mean", t, out)
        return out

    def broadcast(self, obj: Any) -> Any:
        done, out = self.log.replay("broadcast", None)
        if done:
            return out
        out = self.inner.broadcast(obj)
        self.log.record("broadcast", None, out)
        return out

    def __getattr__(self, name: str) -> Any:  # clients, n_clients, counter, observe, ...
        return getattr(self.inner, name)


class Stepper:
    """The position of a rule driven one gradient at a time (see the module docstring)."""

    def __init__(self, name: str, rules: ModuleType, ctx: Context, transport: Any, seed: int,
                 scale: Callable[[Any, float], Any] = scaled) -> None:
        self.name, self.rules = name, rules
        self.log = Log()
        self.oracle = ReplayOracle(seed, transport.clients, self.log)
        self.ctx = dataclasses.replace(ctx, transport=ReplayTransport(ctx.transport, self.log), oracle=self.oracle)
        self.base_hp, self.scale = ctx.hp, scale
        self.state: Any = None  # the state at the start of the current step (None: init is current)
        self.t = 0  # the current step (after init)
        self.factor = 1.0  # the step-size factor of the current step
        self.infos: list[StepInfo] = []  # what the steps completed by the latest advance() reported
        self.request: Request | None = None

    def _run(self, factor: float) -> tuple[Any, StepInfo]:
        self.log.cursor = 0
        if self.state is None:
            return self.rules.init(self.ctx)
        ctx = self.ctx if factor == 1.0 else dataclasses.replace(self.ctx, hp=self.scale(self.base_hp, factor))
        return self.rules.step(self.state, ctx, self.t)

    def _probe(self, factor: float) -> Request | None:
        """The point the current step asks for first when run with ``factor`` (None if its start diverges)."""
        try:
            self._run(factor)
        except Pending as p:
            return p.request
        except _Diverged:
            return None
        return None

    def advance(self, supply: tuple[Tensor, Tensor] | None, factor: float) -> Request:
        """Give the gradient ``supply`` = (point, gradient) for the pending request (None: none yet) and run on
        until the rule asks for a gradient it does not have; return that request."""
        self.infos = []
        if self.state is not None and factor != self.factor and not self.log.gradients():
            probe = self._probe(factor)
            if probe is not None and self.request is not None and _equal(probe.x, self.request.x):
                self.factor = factor
        self.oracle.supply = supply
        while True:
            try:
                state, info = self._run(self.factor)
            except Pending as p:
                if self.oracle.supply is not None and supply is not None:
                    raise DistclipError(f"{self.name}: internal: the gradient given was not asked for") from None
                self.log.freeze()
                self.request = p.request
                return p.request
            except _Diverged as e:
                raise DistclipError(f"{self.name}: a rerun of step {self.t} asked for another {e} than logged; "
                                    "the rule is not a pure function of its state") from None
            if self.state is not None and not self.log.gradients():
                raise DistclipError(f"{self.name} completed a step without a gradient; it is not an optimizer")
            self.infos.append(info)
            if self.state is not None:
                self.t += 1
            self.state, self.factor = state, factor
            self.log.clear()

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def position(self) -> dict[str, Any]:
        state = None if self.state is None else {f.name: getattr(self.state, f.name)
                                                 for f in dataclasses.fields(self.state)}
        return {"state": state, "t": self.t, "factor": self.factor, "log": list(self.log.entries)}

    def restore(self, pos: dict[str, Any]) -> Request:
        """Back to a saved position; returns its pending request (found by rerunning the log: no communication)."""
        self.state = None if pos["state"] is None else self.rules.State(**pos["state"])
        self.t, self.factor = int(pos["t"]), float(pos["factor"])
        self.log.clear()
        self.log.entries[:] = list(pos["log"])
        self.log.frozen = len(self.log.entries)
        self.oracle.supply = None
        try:
            self._run(self.factor)
        except Pending as p:
            if self.log.cursor != len(self.log.entries):
                raise DistclipError(f"{self.name}: the saved optimizer state does not rerun to its pending "
                                    "gradient; it was saved by another version or algorithm") from None
            self.request = p.request
            return p.request
        except _Diverged:
            pass
        raise DistclipError(f"{self.name}: the saved optimizer state does not rerun to its pending gradient; it "
                            "was saved by another version or algorithm")
