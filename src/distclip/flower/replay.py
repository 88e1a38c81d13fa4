"""Suspending a rule at an exchange and resuming it by deterministic replay (no Flower needed here).

A Flower client handler answers one message and returns; a distclip rule is a straight-line function
that calls ``transport.mean`` in the middle of a step. A node therefore runs one *stage* (``init``, a
step, or the model evaluation) of the rule for its own client (``n_block = 1``) from the state at the
start of that stage, with every effect routed through :class:`Effects`:

- an oracle gradient is computed once and logged;
- an exchange (``mean``, ``observe``, ``broadcast``) whose result is logged returns it; the first one
  without a result takes the server's reply if the message brought one, else raises :class:`Suspend`
  carrying the tensor to send.

The next message brings the server's average; the node reruns the stage from the same state, the logged
effects return the same tensors, so the rule reaches the same exchange with the same message and now gets
its result. The rules are pure functions of (state, effects), so the replayed stage computes exactly what an
uninterrupted one would: no second copy of any update rule exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..engine.transport import CommCounter
from ..errors import DistclipError
from ..problems.base import ClientOracle


class Suspend(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """The stage stopped at an exchange with no result yet: ``payload`` (this client's row) is to be sent."""

    def __init__(self, kind: str, payload: Tensor, down: bool = True, sparse_k: int | None = None) -> None:
        super().__init__(kind)
        self.kind, self.payload, self.down, self.sparse_k = kind, payload, down, sparse_k


class Effects:
    """The logged results of the current stage's effects, replayed in order, then extended."""

    def __init__(self, log: list[Tensor], reply: Tensor | None = None) -> None:
        self.log = list(log)
        self.pos = 0
        self.reply = reply  # the server's result for the exchange the stage was suspended at

    def perform(self, compute: Callable[[], Tensor]) -> Tensor:
        if self.pos == len(self.log):
            self.log.append(compute().clone())
        self.pos += 1
        return self.log[self.pos - 1].clone()  # the rules may overwrite what they are given

    def exchange(self, kind: str, payload: Tensor, down: bool = True, sparse_k: int | None = None) -> Tensor:
        def receive() -> Tensor:
            if self.reply is None:
                raise Suspend(kind, payload.detach().clone(), down, sparse_k)
            result, self.reply = self.reply, None
            return result.to(payload.dtype).view(payload.shape) if kind != "broadcast" else result

        return self.perform(receive)

    def finished(self) -> None:
        """The stage ran to its end: the server's reply must have been used."""
        if self.reply is not None:
            raise DistclipError("the server sent a result this node never asked for; restart the run (the node's "
                                "state does not match the server's)")


class Replayed:
    """The transport of one client on a Flower node: counted and logging exchanges go through ``effects``."""

    rank = 0
    world = 1

    def __init__(self, n_clients: int, client: int, counter: CommCounter, effects: Effects,
                 device: torch.device | str = "cpu") -> None:
        self.n_clients = self.population = n_clients  # every client takes part in every round (flower.sampling)
        self.clients = torch.tensor([client], device=device)
        self.counter = counter
        self.effects = effects

    def mean(self, t: Tensor, *, down: bool = True, sparse_k: int | None = None) -> Tensor:
        self.counter.record(t[0].numel(), t.element_size(), down, sparse_k)
        if not down:
            raise DistclipError("this algorithm keeps an average on the server only (transport.mean(down=False)); "
                                "distclip.flower replicates the server state on every node, run it in distclip's "
                                "simulator or under torchrun")
        return self.effects.exchange("mean", t[0], down, sparse_k)

    def observe(self, t: Tensor) -> Tensor:
        return self.effects.exchange("observe", t[0])

    def broadcast(self, obj: Any) -> Any:
        if not isinstance(obj, Tensor):
            raise DistclipError(f"distclip.flower broadcasts tensors only, not {type(obj).__name__}")
        return self.effects.exchange("broadcast", obj)

    def agree(self, error: str | None) -> None:
        if error is not None:
            raise DistclipError(error)


class ReplayedOracle:
    """A :class:`ClientOracle` whose gradients are logged effects (computed once per stage)."""

    def __init__(self, inner: ClientOracle, effects: Effects) -> None:
        self.inner = inner
        self.effects = effects

    def grads(self, x: Tensor, draw: int, **kwargs: Any) -> Tensor:
        return self.effects.perform(lambda: self.inner.grads(x, draw, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
