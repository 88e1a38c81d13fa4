"""A ``torch.nn.Module`` as a distclip problem over stacked client parameters (kind ``torch``; see
:mod:`.torch_module` for the configuration and the choice between the vmap and loop paths)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from ..errors import DistclipError
from ..rng import counter_bits, derive_seed
from .base import take_rows

DROPOUT_STREAM = 7  # seeds of a client's random layers, from (seed, client, step)
EVAL_CHUNK = 1024  # rows per forward pass of the logged loss and gradient
RECURRENT = (nn.RNNBase,)
STOCHASTIC = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class ModuleProblem:
    def __init__(self, module: nn.Module, inputs: Tensor, labels: Tensor, test: tuple[Tensor, Tensor] | None,
                 loss: Any, classify: bool, seed: int, dtype: torch.dtype, device: torch.device, vectorise: str,
                 chunk: int, info: dict[str, Any], eval_rows: int = 0) -> None:
        self.module = module.to(device=device, dtype=dtype)
        self.dtype, self.device, self.seed, self.classify, self._loss = dtype, device, seed, classify, loss
        self.names = [n for n, p in self.module.named_parameters() if p.requires_grad]
        params = dict(self.module.named_parameters())
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [params[n].numel() for n in self.names]
        self.frozen = {n: p.detach() for n, p in params.items() if not p.requires_grad}
        self.buffers = {n: b for n, b in self.module.named_buffers()}
        self.dim = sum(self.sizes)
        self.X, self.Y = self._to(inputs), labels.to(device)  # [N, m, ...]
        self.n_clients, self.m = labels.shape[:2]
        self.test = None if test is None else (self._to(test[0]), test[1].to(device))
        self.eval = (self.X.flatten(0, 1), self.Y.flatten(0, 1))
        if eval_rows:  # fixed seeded samples of the logged rows (as the built-in image kinds' eval_rows)
            pick = np.random.default_rng(seed + 104729)
            self.eval = tuple(t[torch.from_numpy(np.sort(pick.permutation(len(t))[:eval_rows])).to(device)]
                              for t in self.eval)
            if self.test is not None:
                rows = torch.from_numpy(np.sort(pick.permutation(len(self.test[1]))[:eval_rows])).to(device)
                self.test = (self.test[0][rows], self.test[1][rows])
        self._x0 = torch.cat([params[n].detach().reshape(-1) for n in self.names]).clone()
        self._info, self.chunk, self.sources = info, chunk, {}
        self._grads = {r: vmap(grad(self._batch_loss), randomness=r) for r in ("error", "different")}
        self.path, self.reason = self._choose(vectorise)
        self._logged: tuple[Tensor, float, float, Tensor] | None = None

    def _to(self, x: Tensor) -> Tensor:
        return x.to(device=self.device, dtype=self.dtype if x.is_floating_point() else x.dtype)

    # -- the user's loss at flat parameters ------------------------------------------------------------------
    def _unflat(self, flat: Tensor) -> dict[str, Tensor]:
        parts = flat.split(self.sizes)
        return {**self.frozen, **{n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)}}

    def _batch_loss(self, flat: Tensor, x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(self.module, (self._unflat(flat), self.buffers), (x,))
        value = self._loss(out, y)
        if not isinstance(value, Tensor) or value.dim() != 0:
            shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise DistclipError(f"problem.loss returned {shape}, not a scalar; it must return the mean loss over "
                                "the batch (reduce with .mean())")
        return value

    # -- which path -------------------------------------------------------------------------------------------
    def _choose(self, vectorise: str) -> tuple[str, str]:
        layers = list(self.module.modules())
        if vectorise == "loop":
            return "loop", "problem.vectorise = 'loop'"
        why_not = None
        if any(isinstance(m, RECURRENT) for m in layers):
            why_not = "recurrent layers: vmap over nn.LSTM/GRU/RNN is slower than a per-client loop on CPU (7x)"
        elif any(isinstance(m, STOCHASTIC) and m.p > 0 for m in layers):
            why_not = "dropout: the loop seeds each client's masks from (seed, client, step), not from placement"
        if why_not and vectorise == "auto":
            return "loop", why_not
        probe = self._probe()
        if probe is not None:
            if vectorise == "vmap":
                raise DistclipError(f"problem.vectorise = 'vmap' but vmap cannot batch this model ({probe}); use "
                                    "'auto' or 'loop'")
            return "loop", f"vmap cannot batch this model ({probe})"
        return "vmap", "problem.vectorise = 'vmap'" if vectorise == "vmap" else "no recurrent or dropout layers, and " \
            "vmap batches the model"

    def _probe(self) -> str | None:
        """None when vmap of the gradient runs on two clients' first rows (else the reason it does not)."""
        clients = torch.arange(min(2, self.n_clients), device=self.device)
        x = self._x0.expand(len(clients), -1)
        try:
            self._vmap_grads(x, self.X[clients, :2], self.Y[clients, :2], randomness="error")
        except DistclipError:
            raise
        except Exception as e:  # no batching rule, data-dependent control flow, .item(), random ops, ...
            return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        return None

    def _vmap_grads(self, x: Tensor, inputs: Tensor, labels: Tensor, randomness: str = "error") -> Tensor:
        return self._grads[randomness](x, inputs, labels)

    # -- the Problem interface --------------------------------------------------------------------------------
    def x0(self) -> Tensor:
        return self._x0.clone()

    def with_x0(self, x0: Tensor) -> ModuleProblem:
        self._x0 = x0
        return self


    def _seed(self, client: int, draw: int) -> int:
        ids = np.array([client], dtype=np.uint64)
        return int(counter_bits(derive_seed(self.seed, DROPOUT_STREAM), ids, draw, 1)[0, 0])

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        point = x.expand(len(clients), -1) if x.dim() == 1 else x
        inputs, labels = take_rows(self.X, clients, batch), take_rows(self.Y, clients, batch)
        self.module.train()
        step = self.chunk or len(clients)
        if self.path == "vmap" and step >= len(clients):  # one call: its result is the new stack
            with torch.enable_grad():
                return self._vmap_grads(point, inputs, labels)
        out = point.new_empty(len(clients), self.dim)
        with torch.enable_grad():
            if self.path == "vmap":
                for s in range(0, len(clients), step):
                    out[s: s + step] = self._vmap_grads(point[s: s + step], inputs[s: s + step], labels[s: s + step])
            else:
                devices = [self.device.index or 0] if self.device.type == "cuda" else []
                g = grad(self._batch_loss)
                for j, c in enumerate(clients.tolist()):
                    with torch.random.fork_rng(devices=devices):
                        torch.manual_seed(self._seed(c, draw))
                        out[j] = g(point[j], inputs[j], labels[j])
        return out

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        stack = x.expand(len(clients), -1) if x.dim() == 1 else x
        self.module.eval()
        with torch.no_grad():
            return torch.stack([self._batch_loss(stack[j], self.X[c], self.Y[c])
                                for j, c in enumerate(clients.tolist())])

    def _eval(self, x: Tensor, X: Tensor, Y: Tensor, want_grad: bool) -> tuple[float, float, Tensor | None]:
        """Mean loss, accuracy (classification) and optionally the gradient at ``x`` over rows X, Y (eval mode)."""
        self.module.eval()
        total, correct, g = 0.0, 0, torch.zeros_like(x) if want_grad else None
        for s in range(0, len(Y), EVAL_CHUNK):
            xb, yb = X[s: s + EVAL_CHUNK], Y[s: s + EVAL_CHUNK]
            with torch.enable_grad() if want_grad else torch.no_grad():
                p = x.detach().requires_grad_(want_grad)
                out = functional_call(self.module, (self._unflat(p), self.buffers), (xb,))
                loss = self._loss(out, yb)
                if want_grad:
                    g += torch.autograd.grad(loss, p)[0] * len(yb)
            total += float(loss.detach()) * len(yb)
            if self.classify:
                correct += int((out.detach().argmax(-1) == yb).sum()) / (yb.numel() / len(yb))
        n = len(Y)
        return total / n, correct / n, None if g is None else g / n

    def _train_metrics(self, x: Tensor) -> tuple[float, float, Tensor]:
        if self._logged is None or not torch.equal(self._logged[0], x):
            loss, acc, g = self._eval(x, *self.eval, True)
            self._logged = (x.detach().clone(), loss, acc, g)
        return self._logged[1], self._logged[2], self._logged[3].clone()

    def loss(self, x: Tensor) -> float:
        return self._train_metrics(x)[0]

    def grad(self, x: Tensor) -> Tensor:
        return self._train_metrics(x)[2]

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        out = {"train_acc": self._train_metrics(x)[1]} if self.classify else {}
        if self.test is not None:
            loss, acc, _ = self._eval(x, *self.test, False)
            out["test_loss"] = loss
            if self.classify:
                out["test_acc"] = acc
        return out

    def smoothness(self) -> float:
        raise DistclipError("a torch module has no known smoothness constant L; give algorithm.lr as a number")

    def rows_per_client(self) -> int:
        return self.m

    def targets(self) -> None:
        return None

    def as_module(self, x: Tensor) -> nn.Module:
        """A copy of the user's module holding the parameters ``x``."""
        module = copy.deepcopy(self.module)
        with torch.no_grad():
            params = dict(module.named_parameters())
            for n, t in self._unflat(x.detach()).items():
                if n in self.names:
                    params[n].copy_(t)
        return module

    def describe_objects(self, from_config: dict[str, bool]) -> None:
        self.sources = {k: "config" if v else "python object" for k, v in from_config.items()}

    def info(self) -> dict[str, Any]:
        return {"dim": self.dim, **self._info, "vectorise": self.path, "vectorise_reason": self.reason,
                "eval_rows": len(self.eval[1]), "test_rows": 0 if self.test is None else len(self.test[1]),
                "objects": self.sources}
