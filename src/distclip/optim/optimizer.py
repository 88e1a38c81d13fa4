"""distclip's algorithms as ``torch.optim`` optimizers in the user's own training loop (README "Use distclip in
your own training loop").

Under torchrun every rank is one client i of N = world size; outside torchrun (one process) N = 1 and the
optimizer is the single-client algorithm. The rule is the engine's own (:mod:`distclip.algorithms`), run through
the engine's transport (:class:`~distclip.engine.distributed.TorchDistributed`, one flattened ``all_reduce`` per
average, gloo on CPU and NCCL on CUDA) and driven one gradient at a time by :class:`~.replay.Stepper`.

The optimizer owns the parameters' values: after each ``step()`` they hold the point where the algorithm
wants its next gradient (a client's local model for CELGC, x^{k+1} for Clip21, the average of the models at
the start of a CELGC or EPISODE round). At construction rank 0's parameters are broadcast, as DDP does, so
every client starts from the same x^0. ``averaged()`` swaps in the algorithm's model (the average of the
clients' models) for evaluation.
"""

from __future__ import annotations

import gc
import math
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import ledger, schema
from ..algorithms import ALGORITHMS, get
from ..algorithms.base import Context, Env, resolve, scaled
from ..config import from_dict
from ..engine import distributed
from ..engine.memory import keep_freed_memory
from ..engine.transport import CommCounter, InProcess
from ..errors import DistclipError
from ..schedule import StepSchedule
from ..version import __version__
from .replay import Request, Stepper

OWN_KEYS = ("seed", "batch_size", "steps", "decay_gamma", "timeout_s")
SCHEDULE_KEYS = tuple(schema.keys(StepSchedule))  # the engine's step-size schedule: a torch scheduler's job here


def _no_smoothness() -> float:
    raise DistclipError("lr written as 'c/L' needs the problem's smoothness L, which an optimizer does not know; "
                        "give lr as a number")


class DistclipOptimizer(torch.optim.Optimizer):
    """A distclip algorithm over the flattened parameters of the model, one client per torchrun rank.

    ``algorithm``: a name from ``distclip list`` (``celgc``, ``clip21``, ...); ``keys``: its ``[algorithm]``
    keys as keywords (``lr``, ``gamma``, ``local_steps``, ``momentum``, ...; ``distclip list NAME``).
    Own keywords: ``seed`` (noise and sampling streams), ``batch_size`` (the loop's minibatch per rank: EPISODE's
    resampled gradient takes ``batch_size·local_steps`` rows by default), ``steps`` (the run length a
    ``target_epsilon`` is calibrated over), ``decay_gamma`` (when a scheduler changes ``lr`` by a factor s,
    scale γ and every other step-size key by s too: the joint decay of the official CELGC code, §3.2; False
    keeps γ fixed), ``timeout_s`` (collective timeout).
    """

    def __init__(self, params: Iterable[Any], algorithm: str, *, seed: int = 0, batch_size: int = 0,
                 steps: int = 0, decay_gamma: bool = True, timeout_s: float = 300.0, **keys: Any) -> None:
        _refuse_modules(params)
        spec = get(algorithm)
        keep_freed_memory()  # reuse freed buffers instead of faulting in fresh pages every step (engine.memory)
        super().__init__(params, {"lr": keys.get("lr")})
        self.algorithm, self.decay_gamma = algorithm, decay_gamma
        self._params = [p for g in self.param_groups for p in g["params"]]
        self._sizes = [p.numel() for p in self._params]
        self._check_params()
        x0 = torch.cat([p.detach().reshape(-1) for p in self._params]).clone()
        self.transport = _transport(x0.device, timeout_s)
        self._agree_across_ranks()
        cfg = _config(algorithm, spec, keys, seed, batch_size, steps, self.transport.n_clients)
        env = Env(self.transport.clients, self.transport.n_clients, cfg.run.batch_size, x0.dtype, x0.device,
                  _no_smoothness)
        hp = ledger.resolve(spec, resolve(cfg.algorithm.params, env), steps, self.transport.n_clients)
        self.lr = float(hp.lr)
        for g in self.param_groups:
            g["lr"] = self.lr if g["lr"] is None else g["lr"]
        if self.transport.world > 1:
            dist.broadcast(x0, src=0)  # every client starts from rank 0's x^0, as with DDP
        channel = ledger.channel(spec, hp, self.transport, seed)
        self.stepper = Stepper(algorithm, spec.rules, Context(channel, None, hp, x0), self.transport, seed,
                               scaled if decay_gamma else _scale_lr)
        self.request = self.stepper.advance(None, self._factor())
        self._write(self.request.x)
        self._clips = [0, 0, 0]  # clipped steps, completed steps, latest step clipped (this rank's client)
        self._seen: list[tuple[weakref.ref, int]] = []  # the gradients the latest step used, and their versions

    # -- the torch.optim interface ---------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Use the gradient in ``.grad`` (or the ``closure``'s) at the current parameters, run the algorithm on to
        the point of its next gradient and put that point into the parameters.

        Without a closure a call uses one gradient (EPISODE's round start takes one call for the resampled
        gradient, see :attr:`request`). With a closure, it is called (with gradients enabled) for every gradient
        until one step of the algorithm is complete, and the first loss it returned is returned."""
        loss = None
        while True:
            if closure is not None:
                with torch.enable_grad():
                    value = closure()
                loss = value if loss is None else loss
            self._check_point()
            self.request = self.stepper.advance((self.request.x, self._gradient()), self._factor())
            self._count()
            self._write(self.request.x)
            if closure is None or self.stepper.infos:
                return loss

    def state_dict(self) -> dict[str, Any]:
        """The param groups and this rank's position in the algorithm (its client's state): save one file per rank."""
        sd = super().state_dict()
        sd["distclip"] = {
            "algorithm": self.algorithm, "world": self.transport.world, "rank": self.transport.rank,
            "dim": self.request.x.numel(), "version": __version__, "position": self.stepper.position(),
            "counter": self.transport.counter.as_dict(), "clips": list(self._clips),
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue exactly where ``state_dict`` was saved (by this rank, with the same world size and model); the
        parameters are set to the point of the pending gradient."""
        mine = state_dict.get("distclip") if isinstance(state_dict, dict) else None
        if mine is None:
            raise DistclipError("this state_dict was not saved by a distclip.optim optimizer")
        w, r = self.transport.world, self.transport.rank
        for what, saved, now, fix in (
            ("algorithm", mine["algorithm"], self.algorithm, "create the optimizer with the algorithm it was saved by"),
            ("world size", mine["world"], w, f"resume with torchrun --nproc-per-node={mine['world']}"),
            ("rank", mine["rank"], r, "load each rank's own file"),
            ("parameter count", mine["dim"], self.request.x.numel(), "load it into the same model"),
        ):
            if saved != now:
                raise DistclipError(f"the optimizer state was saved with {what} {saved}, now {now}; {fix}")
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        self.transport.counter = CommCounter(**mine["counter"])
        self._clips = list(mine["clips"])
        self.request = self.stepper.restore(_to(mine["position"], self.request.x.device))
        self._write(self.request.x)
        self._seen = []

    # -- what a training loop may read ----------------------------------------------------------------------------
    @property
    def steps_done(self) -> int:
        """Completed steps of the algorithm (not counting the initial round)."""
        return self.stepper.t

    def stats(self) -> dict[str, float]:
        """This rank's counters, as the engine's: communication rounds, floats and bytes sent per client, and the
        fraction of this client's steps that clipped (``clip_frac``; ``clipped``: the latest step's flag)."""
        clipped, done, latest = self._clips
        return {"step": self.stepper.t, **self.transport.counter.as_dict(),
                "clip_frac": clipped / done if done else 0.0, "clipped": float(latest)}

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Within the block the parameters hold the algorithm's model (for CELGC, EPISODE, ...: the average of
        the clients' models, one uncounted all_reduce, so call it on every rank); restored afterwards."""
        s = self.stepper
        x = s.ctx.x0 if s.state is None else s.rules.model(s.state, s.ctx).reshape(-1)
        self._write(x)
        try:
            yield
        finally:
            self._write(self.request.x)

    # -- internals --------------------------------------------------------------------------------------------
    def _factor(self) -> float:
        lrs = {float(g["lr"]) for g in self.param_groups}
        if len(lrs) > 1:
            raise DistclipError(f"{self.algorithm}: the param groups have different learning rates {sorted(lrs)}; "
                                "distclip.optim runs one algorithm over all parameters: give them one lr")
        s = lrs.pop() / self.lr
        if not s > 0 or math.isinf(s):
            raise DistclipError(f"{self.algorithm}: the learning rate became {s * self.lr}; it must stay > 0")
        return s

    def _check_params(self) -> None:
        if not self._params:
            raise DistclipError("the optimizer got no parameters; pass model.parameters()")
        dtypes = {p.dtype for p in self._params}
        devices = {p.device for p in self._params}
        if len(dtypes) > 1 or len(devices) > 1:
            raise DistclipError(f"distclip.optim flattens all parameters into one vector; they have dtypes "
                                f"{sorted(map(str, dtypes))} on {sorted(map(str, devices))}: use one dtype and device")
        if not next(iter(dtypes)).is_floating_point:
            raise DistclipError("distclip.optim needs floating-point parameters")
        if dist.is_available() and dist.is_initialized():
            _refuse_ddp(self._params)

    def _agree_across_ranks(self) -> None:
        if self.transport.world == 1:
            return
        mine = [(tuple(p.shape), str(p.dtype)) for p in self._params]
        everyone: list[Any] = [None] * self.transport.world
        dist.all_gather_object(everyone, mine)
        error = None
        if mine != everyone[0]:
            error = (f"its model has {len(mine)} parameter tensors of {sum(math.prod(s) for s, _ in mine)} numbers, "
                     f"rank 0's {len(everyone[0])} of {sum(math.prod(s) for s, _ in everyone[0])} (or other shapes); "
                     "build the same model on every rank")
        distributed.agree(error)

    def _gradient(self) -> Tensor:
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads):
            raise DistclipError(f"{self.algorithm}: step() found no gradients; call loss.backward() before "
                                "optimizer.step()")
        if any(g is not None and g.is_sparse for g in grads):
            raise DistclipError(f"{self.algorithm}: sparse gradients are not supported (use dense embeddings)")
        seen = [(weakref.ref(g), g._version) for g in grads if g is not None]
        old = self._seen or []
        if len(old) == len(seen) and all(a() is b() and u == v for (a, u), (b, v) in zip(old, seen, strict=True)):
            raise DistclipError(f"{self.algorithm}: step() was called again without a new backward(); compute the "
                                "gradient at the parameters the previous step() left")
        self._seen = seen
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(self._params, grads,
                                                                                           strict=True)])

    def _check_point(self) -> None:
        if [p._version for p in self._params] != self._versions:
            raise DistclipError(f"{self.algorithm}: the parameters changed since the last step(); the optimizer "
                                "sets them to the point of the next gradient: load model and optimizer state together "
                                "(optimizer last), and do not change the parameters in between")

    def _write(self, x: Tensor) -> None:
        with torch.no_grad():
            for p, v in zip(self._params, x.split(self._sizes), strict=True):
                p.copy_(v.view_as(p))
        self._versions = [p._version for p in self._params]  # any other in-place change shows as a new version

    def _count(self) -> None:
        for info in self.stepper.infos:
            flag = 0 if info.clipped is None else int(info.clipped.sum())
            self._clips = [self._clips[0] + flag, self._clips[1] + 1, flag]


def _scale_lr(hp: Any, s: float) -> Any:
    """``hp`` with only η scaled by s (``decay_gamma=False``: γ and the other step bounds stay as given)."""
    return hp if s == 1.0 else schema.replace(hp, lr=hp.lr * s)


def _transport(device: torch.device, timeout_s: float) -> Any:
    if not (dist.is_available() and dist.is_initialized()) and distributed.launched():
        distributed.init("auto", device.type, timeout_s)
    if dist.is_available() and dist.is_initialized():
        return distributed.TorchDistributed(dist.get_world_size(), device, timeout_s)
    return InProcess(1, device)


def _config(algorithm: str, spec: Any, keys: dict[str, Any], seed: int, batch_size: int, steps: int,
            clients: int) -> Any:
    if spec.needs_targets or spec.batch == "full":
        usable = ", ".join(n for n, a in ALGORITHMS.items() if not a.needs_targets and a.batch != "full")
        raise DistclipError(f"{algorithm} is not available as an optimizer; choose one of: {usable}")
    given = sorted(set(keys) & set(SCHEDULE_KEYS))
    if given:
        raise DistclipError(f"distclip.optim takes no {', '.join(given)}; use a torch.optim.lr_scheduler on the "
                            "optimizer (with decay_gamma=True it scales γ with lr, as algorithm.lr_schedule does)")
    if batch_size < 0 or steps < 0:
        raise DistclipError("batch_size and steps must be >= 0")
    if algorithm == "episode" and not batch_size and keys.get("resample_batch") is None:
        raise DistclipError("episode needs batch_size= (the loop's minibatch per rank; its resampled gradient "
                            "takes batch_size*local_steps rows) or resample_batch=")
    if keys.get("target_epsilon") is not None and not steps:
        raise DistclipError(f"{algorithm} with target_epsilon needs steps= (the optimizer steps the budget covers)")
    raw = {"seed": seed, "problem": {"kind": "torch"}, "partition": {"clients": clients, "scheme": "contiguous"},
           "algorithm": {"name": algorithm, **keys}, "run": {"batch_size": batch_size or 1, "steps": steps}}
    cfg = from_dict(raw)
    own = getattr(spec.rules, "own_sampling", None)  # client sampling is the engine's (engine/cohort.py)
    if own is not None and own(cfg.algorithm.params) is not None:
        raise DistclipError(f"{algorithm} as an optimizer steps every rank's client in every round; client sampling "
                            "(client_rate < 1) needs distclip run: set client_rate = 1")
    return cfg


def _refuse_modules(params: Any) -> None:
    if isinstance(params, nn.Module):
        wrapped = " (and not a DistributedDataParallel wrapper: distclip.optim does the communication)" if isinstance(
            params, nn.parallel.DistributedDataParallel) else ""
        raise DistclipError(f"pass model.parameters() to the optimizer, not the module{wrapped}")


def _refuse_ddp(params: list[Tensor]) -> None:
    ids = {id(p) for p in params}
    with warnings.catch_warnings():  # isinstance on every live object touches deprecated aliases (reduce_op)
        warnings.simplefilter("ignore")
        wrappers = [o for o in gc.get_objects() if isinstance(o, nn.parallel.DistributedDataParallel)]
    for obj in wrappers:
        if any(id(p) in ids for p in obj.parameters()):
            raise DistclipError("these parameters belong to a DistributedDataParallel model, which already averages "
                                "gradients across ranks; give distclip.optim the plain model (model.module)")


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to(v, device) for v in obj)
    return obj


__all__ = ["OWN_KEYS", "SCHEDULE_KEYS", "DistclipOptimizer", "Request"]
