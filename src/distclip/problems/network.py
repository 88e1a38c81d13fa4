"""Classification with a neural network: f_i(x) = mean cross-entropy of client i's rows (spec: experiments.md §1).

x is the flat vector of all network parameters. Client gradients come from one forward and one
backward pass over the stacked client weights ``[n, d]`` (see :mod:`.models`): the clients'
parameters are independent, so the gradient of the summed client losses is every client's own
gradient. The objective f is logged on the clients' training rows; ``extra_metrics`` adds the loss
and accuracy on the held-out test rows. With ``eval_rows`` > 0 these logged numbers use a fixed seeded
sample of that many training rows (and at most that many test rows) instead, to save time.

Images stored as uint8 (CIFAR-10) stay uint8 on the device and are scaled to [0, 1], normalised
with the dataset's mean/std, and (``augment``) randomly cropped and flipped per (seed, client, draw)
only when a batch is used; augmentation applies to the training gradients, never to the metrics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.cifar10 import crop_flip
from ..data.images import Images
from ..data.partition import Partition
from ..errors import DistclipError
from .base import take_rows
from .models import Layout, fan_in

EVAL_CHUNK = 4096
GRAD_CHUNK = 512  # rows per backward pass of the logged gradient (bounds the activations kept: ResNet-56)


class Network:
    def __init__(self, model: Any, data: Images, part: Partition, test_rows: Any, seed: int,
                 dtype: torch.dtype, device: torch.device, augment: bool = False, eval_rows: int = 0) -> None:
        self.model = model
        self.layout = Layout(model.shapes)
        self.dim = self.layout.dim
        self.n_clients, self.m = part.rows.shape
        self.dtype, self.device = dtype, device
        self.seed, self.augment = seed, augment
        self._uint8 = data.x.dtype == np.uint8  # kept as stored; scaled and normalised per batch (_inputs)
        self._mean, self._std = (None, None) if data.mean is None else (
            torch.tensor(v, dtype=dtype, device=device)[:, None, None] for v in (data.mean, data.std))
        x = None if self._uint8 else torch.as_tensor(data.x, dtype=dtype)
        y = torch.as_tensor(data.labels)

        def images(rows: Any) -> Tensor:
            return (torch.from_numpy(data.x[rows]) if x is None else x[torch.tensor(rows)]).to(device)

        self.X = images(part.rows)  # [N, m, C, H, W]
        self.Y = y[torch.tensor(part.rows)].to(device)  # [N, m]
        self.X_test, self.Y_test = images(test_rows), y[torch.tensor(test_rows)].to(device)
        self.X_eval, self.Y_eval = self.X.flatten(0, 1), self.Y.flatten()
        if eval_rows:
            pick = np.random.default_rng(seed + 104729)
            train = torch.from_numpy(np.sort(pick.permutation(len(self.Y_eval))[:eval_rows])).to(device)
            test = torch.from_numpy(np.sort(pick.permutation(len(self.Y_test))[:eval_rows])).to(device)
            self.X_eval, self.Y_eval = self.X_eval[train], self.Y_eval[train]
            self.X_test, self.Y_test = self.X_test[test], self.Y_test[test]
        self._part = part
        self._x0 = self._init(seed)
        self._logged: tuple[Tensor, float, float, Tensor] | None = None
        self._host_clients: dict[int, tuple[Tensor, np.ndarray]] = {}

    def with_x0(self, x0: Tensor) -> Network:
        """This problem started from ``x0`` instead of the seeded initialisation."""
        self._x0 = x0
        return self

    def _init(self, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        if hasattr(self.model, "init"):  # a model with its own initialisation (resnet.py)
            values = self.model.init(g)
            return torch.cat([values[k].flatten() for k in self.layout.names]).to(self.dtype).to(self.device)
        parts = []
        for name, size in zip(self.layout.names, self.layout.sizes, strict=True):
            bound = 1 / math.sqrt(fan_in(self.model.shapes[name], self.model.shapes, name))
            parts.append((torch.rand(size, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        return torch.cat(parts).to(self.dtype).to(self.device)

    def _params(self, stack: Tensor) -> dict[str, Tensor]:
        return self.layout.split(stack)


    def _inputs(self, x: Tensor, clients: Tensor | None = None, draw: int = 0) -> Tensor:
        """Stored images -> network inputs: augmented (training gradients of ``clients``), scaled, normalised."""
        if self.augment and clients is not None:
            x = crop_flip(x, self.seed, self._host(clients), draw)
        x = x.to(self.dtype)
        if self._uint8:
            x = x / 255
        return x if self._mean is None else (x - self._mean) / self._std

    def _host(self, clients: Tensor) -> np.ndarray:
        """``clients`` as numpy, copied from the device once per tensor (the oracle passes the same one each step)."""
        held = self._host_clients.get(id(clients))
        if held is None or held[0] is not clients:
            held = self._host_clients[id(clients)] = (clients, clients.cpu().numpy())
        return held[1]

    # -- the Problem interface ---------------------------------------------------------------------
    def x0(self) -> Tensor:
        return self._x0.clone()

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        """The ``[n, d]`` gradient stack, allocated once: layers that can (``models.dense``) compute their
        gradients straight into their views of it, the other parameters' gradients are copied in."""
        point = x.expand(len(clients), -1) if x.dim() == 1 else x
        grad = point.new_empty(len(clients), self.dim)
        sinks = self._params(grad)
        params = {k: v.detach().requires_grad_(True) for k, v in self._params(point).items()}
        with torch.enable_grad():
            logits = self.model.forward(params, self._inputs(take_rows(self.X, clients, batch), clients, draw),
                                        sinks)
            y = take_rows(self.Y, clients, batch)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]
            parts = torch.autograd.grad(loss, list(params.values()))
        for part, sink in zip(parts, sinks.values(), strict=True):
            if part.data_ptr() != sink.data_ptr():
                sink.copy_(part)
        return grad

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        stack = x.expand(len(clients), -1) if x.dim() == 1 else x
        logits = self.model.forward(self._params(stack), self._inputs(self.X[clients]))
        y = self.Y[clients]
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(dim=1)

    def _eval(self, x: Tensor, X: Tensor, Y: Tensor, grad: bool) -> tuple[float, float, Tensor | None]:
        """Mean loss, accuracy and (optionally) gradient of the loss at one point over rows X, Y."""
        p = x.detach().clone().unsqueeze(0).requires_grad_(grad)
        total, correct, g = 0.0, 0, torch.zeros_like(x) if grad else None
        chunk = GRAD_CHUNK if grad else EVAL_CHUNK
        with torch.set_grad_enabled(grad):
            for s in range(0, len(Y), chunk):
                logits = self.model.forward(self._params(p), self._inputs(X[s: s + chunk].unsqueeze(0)))[0]
                y = Y[s: s + chunk]
                loss = F.cross_entropy(logits, y, reduction="sum")
                if grad:
                    g += torch.autograd.grad(loss, p)[0][0]
                total += float(loss.detach())
                correct += int((logits.argmax(1) == y).sum())
        n = len(Y)
        return total / n, correct / n, None if g is None else g / n

    def _train_metrics(self, x: Tensor) -> tuple[float, float, Tensor]:
        """Loss, accuracy and gradient on the logged training rows from one pass, reused while x is the same
        (the loop asks for all three at each logged step)."""
        if self._logged is None or not torch.equal(self._logged[0], x):
            loss, acc, g = self._eval(x, self.X_eval, self.Y_eval, True)
            self._logged = (x.detach().clone(), loss, acc, g)
        return self._logged[1], self._logged[2], self._logged[3].clone()

    def loss(self, x: Tensor) -> float:
        return self._train_metrics(x)[0]

    def grad(self, x: Tensor) -> Tensor:
        return self._train_metrics(x)[2]

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        out = {"train_acc": self._train_metrics(x)[1]}
        if len(self.Y_test):
            out["test_loss"], out["test_acc"], _ = self._eval(x, self.X_test, self.Y_test, False)
        return out

    def smoothness(self) -> float:
        raise DistclipError("a network has no known smoothness constant L; give algorithm.lr as a number")

    def rows_per_client(self) -> int:
        return self.m

    def targets(self) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {
            "dim": self.dim, **self._part.info(), "test_rows": len(self.Y_test), "eval_rows": len(self.Y_eval),
            "augment": self.augment,
        }
