"""Classification with a neural network: f_i(x) = mean cross-entropy of client i's rows (spec: experiments.md §1).

x is the flat vector of all network parameters. Client gradients come from one forward and one
backward pass over the stacked client weights ``[n, d]`` (see :mod:`.models`): the clients'
parameters are independent, so the gradient of the summed client losses is every client's own
gradient. The objective f is logged on the clients' training rows; ``extra_metrics`` adds the loss
and accuracy on the held-out test rows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.images import Images
from ..data.partition import Partition
from ..errors import DistclipError
from .models import Layout, fan_in

EVAL_CHUNK = 4096


class Network:
    def __init__(self, model: Any, data: Images, part: Partition, test_rows: Any, seed: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        self.model = model
        self.layout = Layout(model.shapes)
        self.dim = self.layout.dim
        self.n_clients, self.m = part.rows.shape
        self.dtype, self.device = dtype, device
        x = torch.as_tensor(data.x, dtype=dtype)
        y = torch.as_tensor(data.labels)
        rows = torch.tensor(part.rows)
        self.X = x[rows].to(device)  # [N, m, C, H, W]
        self.Y = y[rows].to(device)  # [N, m]
        test = torch.tensor(test_rows)
        self.X_test, self.Y_test = x[test].to(device), y[test].to(device)
        self._part = part
        self._x0 = self._init(seed)

    def with_x0(self, x0: Tensor) -> Network:
        """This problem started from ``x0`` instead of the seeded initialisation."""
        self._x0 = x0
        return self

    def _init(self, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        parts = []
        for name, size in zip(self.layout.names, self.layout.sizes, strict=True):
            bound = 1 / math.sqrt(fan_in(self.model.shapes[name], self.model.shapes, name))
            parts.append((torch.rand(size, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        return torch.cat(parts).to(self.dtype).to(self.device)

    def _params(self, stack: Tensor) -> dict[str, Tensor]:
        return self.layout.split(stack)

    def _take(self, t: Tensor, clients: Tensor, batch: Tensor | None) -> Tensor:
        return t[clients] if batch is None else t[clients.unsqueeze(1), batch]

    # -- the Problem interface ---------------------------------------------------------------------
    def x0(self) -> Tensor:
        return self._x0.clone()

    def client_grads(self, x: Tensor, clients: Tensor, batch: Tensor | None, draw: int = 0) -> Tensor:
        stack = (x.expand(len(clients), -1) if x.dim() == 1 else x).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model.forward(self._params(stack), self._take(self.X, clients, batch))
            y = self._take(self.Y, clients, batch)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]
            (grad,) = torch.autograd.grad(loss, stack)
        return grad

    def client_losses(self, x: Tensor, clients: Tensor) -> Tensor:
        stack = x.expand(len(clients), -1) if x.dim() == 1 else x
        logits = self.model.forward(self._params(stack), self.X[clients])
        y = self.Y[clients]
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(dim=1)

    def _eval(self, x: Tensor, X: Tensor, Y: Tensor, grad: bool) -> tuple[float, float, Tensor | None]:
        """Mean loss, accuracy and (optionally) gradient of the loss at one point over rows X, Y."""
        p = x.detach().clone().unsqueeze(0).requires_grad_(grad)
        total, correct, g = 0.0, 0, torch.zeros_like(x) if grad else None
        with torch.set_grad_enabled(grad):
            for s in range(0, len(Y), EVAL_CHUNK):
                logits = self.model.forward(self._params(p), X[s: s + EVAL_CHUNK].unsqueeze(0))[0]
                y = Y[s: s + EVAL_CHUNK]
                loss = F.cross_entropy(logits, y, reduction="sum")
                if grad:
                    g += torch.autograd.grad(loss, p)[0][0]
                total += float(loss.detach())
                correct += int((logits.argmax(1) == y).sum())
        n = len(Y)
        return total / n, correct / n, None if g is None else g / n

    def loss(self, x: Tensor) -> float:
        return self._eval(x, self.X.flatten(0, 1), self.Y.flatten(), False)[0]

    def grad(self, x: Tensor) -> Tensor:
        return self._eval(x, self.X.flatten(0, 1), self.Y.flatten(), True)[2]

    def extra_metrics(self, x: Tensor) -> dict[str, float]:
        _, train_acc, _ = self._eval(x, self.X.flatten(0, 1), self.Y.flatten(), False)
        out = {"train_acc": train_acc}
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
            "dim": self.dim, "rows_per_client": self.m, "rows_dropped": int(self._part.dropped),
            "partition": self._part.scheme, "label_counts": self._part.label_counts.tolist(),
            "test_rows": len(self.Y_test),
        }
