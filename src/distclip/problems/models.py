"""Networks written for stacked client weights: one call computes all clients' forward passes.

Each model declares its per-client parameter shapes and a ``forward(params, x, grads=None)`` where
every parameter carries a leading client dimension ``[n, *shape]`` and ``x`` is ``[n, B, C, H, W]``;
``grads`` (views of the caller's gradient stack, by parameter name) lets dense layers compute their
weight gradients in place.
Dense layers are batched matmuls (``baddbmm``); convolutions put the clients into channel groups
(``conv2d(..., groups=n)``), so n clients cost one convolution. There is no BatchNorm: its running
statistics would be per-client state outside the algorithms' view, so these models use none (the
documented policy; the ResNets and VGG-11 of :mod:`.resnet` use per-client GroupNorm).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class _Dense(torch.autograd.Function):
    """w·hᵀ + b with the backward pass of ``baddbmm``, the weight gradient optionally written into ``grad_w``."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, w: Tensor, b: Tensor, grad_w: Tensor | None) -> Tensor:
        ctx.save_for_backward(h, w)
        ctx.grad_w = grad_w
        return torch.baddbmm(b.unsqueeze(2), w, h.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, w = ctx.saved_tensors
        g = grad.transpose(1, 2)  # [n, out, B]
        need_h, need_w, need_b, _ = ctx.needs_input_grad
        gh = torch.bmm(w.transpose(1, 2), g).transpose(1, 2) if need_h else None
        gw = (torch.bmm(g, h) if ctx.grad_w is None else torch.bmm(g, h, out=ctx.grad_w)) if need_w else None
        gb = g.sum(2) if need_b else None
        return gh, gw, gb, None


def dense(h: Tensor, w: Tensor, b: Tensor, grad_w: Tensor | None = None) -> Tensor:
    """[n, B, in] x weights [n, out, in] + bias [n, out] -> [n, B, out] (a transposed view).

    Computed as w·hᵀ so that the weight gradient comes out in w's own layout (no transposing copy of
    an ``[n, out, in]`` tensor in the backward pass). With ``grad_w`` (a view of the caller's ``[n, d]``
    gradient stack) the backward pass computes w's gradient straight into it and returns that view, so
    the gradient of a dense network needs no concatenation of per-layer gradients (see docs/performance.md).
    """
    return _Dense.apply(h, w, b, grad_w)


def conv(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """[n, B, C, H, W] conv (padding 'same') with weights [n, O, C, k, k] -> [n, B, O, H, W]."""
    n, batch, c, hh, ww = x.shape
    out = F.conv2d(x.transpose(0, 1).reshape(batch, n * c, hh, ww), w.reshape(-1, *w.shape[2:]),
                   b.reshape(-1), padding=w.shape[-1] // 2, groups=n)
    return out.reshape(batch, n, w.shape[1], hh, ww).transpose(0, 1)


def pool(x: Tensor) -> Tensor:
    n, batch = x.shape[:2]
    y = F.max_pool2d(x.reshape(n * batch, *x.shape[2:]), 2)
    return y.reshape(n, batch, *y.shape[1:])


class MLP:
    """Fully connected ReLU network: in -> hidden... -> classes."""

    def __init__(self, in_shape: tuple[int, ...], hidden: list[int], classes: int) -> None:
        sizes = [math.prod(in_shape), *hidden, classes]
        self.shapes: dict[str, tuple[int, ...]] = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            self.shapes[f"w{i}"] = (b, a)
            self.shapes[f"b{i}"] = (b,)
        self.layers = len(sizes) - 1

    def forward(self, p: dict[str, Tensor], x: Tensor, grads: dict[str, Tensor] | None = None) -> Tensor:
        h = x.flatten(2)
        for i in range(self.layers):
            h = dense(h, p[f"w{i}"], p[f"b{i}"], None if grads is None else grads[f"w{i}"])
            if i < self.layers - 1:
                h = torch.relu(h)
        return h


class CNN:
    """Two 3x3 conv layers (ReLU, 2x2 max-pool each) and a linear classifier."""

    def __init__(self, in_shape: tuple[int, int, int], channels: list[int], classes: int) -> None:
        c, h, w = in_shape
        c1, c2 = channels
        self.shapes = {"c1": (c1, c, 3, 3), "cb1": (c1,), "c2": (c2, c1, 3, 3), "cb2": (c2,),
                       "w": (classes, c2 * (h // 4) * (w // 4)), "b": (classes,)}

    def forward(self, p: dict[str, Tensor], x: Tensor, grads: dict[str, Tensor] | None = None) -> Tensor:
        h = pool(torch.relu(conv(x, p["c1"], p["cb1"])))
        h = pool(torch.relu(conv(h, p["c2"], p["cb2"])))
        return dense(h.flatten(2), p["w"], p["b"], None if grads is None else grads["w"])


class Layout:
    """Where each named parameter lives in the flat vector x, and the views of a ``[n, d]`` stack."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self.names = list(shapes)
        self.sizes = [math.prod(shapes[k]) for k in self.names]
        self.dim = sum(self.sizes)

    def split(self, stack: Tensor) -> dict[str, Tensor]:
        chunks = torch.split(stack, self.sizes, dim=1)
        return {k: c.reshape(len(stack), *self.shapes[k]) for k, c in zip(self.names, chunks, strict=True)}


def fan_in(shape: tuple[int, ...], shapes: dict[str, tuple[int, ...]], name: str) -> int:
    """PyTorch's default init bound 1/sqrt(fan_in); a bias uses its layer's weight fan-in."""
    if len(shape) == 1:
        weight = {"b": "w", "cb1": "c1", "cb2": "c2"}.get(name, "w" + name[1:])
        return math.prod(shapes[weight][1:])
    return math.prod(shape[1:])
