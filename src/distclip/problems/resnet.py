"""CIFAR ResNet-20/32/56 and VGG-11 on stacked client weights, normalised by per-client GroupNorm.

As in :mod:`.models`, every parameter carries a leading client dimension ``[n, *shape]``, ``x`` is
``[n, B, C, H, W]`` and ``forward`` returns logits ``[n, B, classes]``. Inside the network the
activations are kept client-major in the channels, ``[B, n·C, H, W]``: a convolution is one
``conv2d(..., groups=n)`` and the n clients' GroupNorms with G groups each are one
``group_norm(..., n·G groups)``, since client i's channels are the contiguous block i.

- **ResNet-d** (He et al. 2016, §4.2, the CIFAR variant): a 3x3 conv to ``w`` channels, then 3
  stages of (d − 2)/6 basic blocks with w, 2w, 4w channels (w = 16), stride 2 at the first block of
  stages 2 and 3, global average pooling and a linear classifier. Shortcuts are option A: identity,
  or at a stride-2 block the input subsampled by 2 and zero-padded in the channels, so they carry no
  parameters (ResNet-20: 269,722 parameters, ResNet-32: 464,154, ResNet-56: 853,018).
- **VGG-11** (the CIFAR variant of ``kuangliu/pytorch-cifar``): 3x3 convs (with bias) of
  64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M channels (M = 2x2 max-pool), each followed by
  the normalisation and ReLU, then one linear layer on the 512 features (9,231,114 parameters).

Normalisation policy: GroupNorm instead of BatchNorm. BatchNorm's running mean and variance are
per-client buffers updated outside the gradient step: the algorithms only see (and average,
clip, compress) the parameter vector x, so these buffers would need their own per-client state,
their own rule at communication rounds and checkpointing. GroupNorm normalises each sample by
its own statistics, is the same in training and evaluation, and has only the affine weights, which
are ordinary parameters in x (as many as BatchNorm's, so the counts above match the BatchNorm
models). Each normalisation uses ``groups`` groups (default 2, library choice).

Initialisation (library choice): convolutions Kaiming-normal (fan-in, ReLU gain; He et al. 2015),
conv biases 0, GroupNorm weight 1 and bias 0, the linear layer PyTorch's default U(±1/√fan-in).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DistclipError
from .models import dense

RESNETS = {"resnet20": 20, "resnet32": 32, "resnet56": 56}
DEEP_MODELS = (*RESNETS, "vgg11")
STANDARD_WIDTH = {"resnet": 16, "vgg11": 64}
#: VGG-11's conv channels as multiples of its first width; "M" is a 2x2 max-pool
VGG11_PLAN = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")

Shapes = dict[str, tuple[int, ...]]


def grouped(x: Tensor) -> Tensor:
    """[n, B, C, H, W] -> client-major channels [B, n·C, H, W]."""
    n, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, n * c, h, w)


def conv(h: Tensor, w: Tensor, b: Tensor | None = None, stride: int = 1) -> Tensor:
    """Every client's conv (padding k // 2) with weights [n, O, C, k, k] on [B, n·C, H, W]."""
    return F.conv2d(h, w.flatten(0, 1), None if b is None else b.flatten(), stride, w.shape[-1] // 2,
                    groups=w.shape[0])


def norm(h: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
    """Every client's GroupNorm (``groups`` groups, affine [n, C]) on [B, n·C, H, W]."""
    return F.group_norm(h, weight.shape[0] * groups, weight.flatten(), bias.flatten())


def classify(h: Tensor, w: Tensor, b: Tensor, grad_w: Tensor | None = None) -> Tensor:
    """Features [B, n·F] (or [B, n·C, H', W'], flattened per client) -> logits [n, B, classes]."""
    n = w.shape[0]
    return dense(h.reshape(h.shape[0], n, -1).transpose(0, 1), w, b, grad_w)


def _gn(shapes: Shapes, name: str, channels: int, groups: int) -> None:
    if channels % groups:
        raise DistclipError(f"GroupNorm with problem.groups = {groups} needs channel counts divisible by it, "
                            f"but a layer has {channels}; change problem.width or problem.groups")
    shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (channels,)


def initial(shapes: Shapes, g: torch.Generator) -> dict[str, Tensor]:
    """The library's initialisation (module docstring), float64, per parameter name."""
    out = {}
    for name, shape in shapes.items():
        if name.endswith(".weight") and len(shape) == 1:  # GroupNorm scale
            out[name] = torch.ones(shape, dtype=torch.float64)
        elif len(shape) == 4:  # conv kernel
            out[name] = torch.randn(shape, generator=g, dtype=torch.float64) * math.sqrt(2 / math.prod(shape[1:]))
        elif name.startswith("fc."):
            bound = 1 / math.sqrt(shapes["fc.w"][1])
            out[name] = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound
        else:  # conv bias, GroupNorm shift
            out[name] = torch.zeros(shape, dtype=torch.float64)
    return out


class ResNet:
    """CIFAR ResNet-``depth`` with option-A shortcuts and per-client GroupNorm (module docstring)."""

    def __init__(self, depth: int, in_shape: tuple[int, int, int], classes: int, width: int = 16,
                 groups: int = 2) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise DistclipError(f"a CIFAR ResNet has depth 6k + 2 (20, 32, 56, ...), not {depth}")
        if width % 2:
            raise DistclipError(f"problem.width = {width} must be even (option-A shortcuts pad half the channels)")
        self.blocks, self.groups = (depth - 2) // 6, groups
        shapes: Shapes = {"conv": (width, in_shape[0], 3, 3)}
        _gn(shapes, "gn", width, groups)
        for s in range(3):
            c = width << s
            for i in range(self.blocks):
                key = f"s{s}.b{i}"
                shapes[f"{key}.conv1"] = (c, c // 2 if s and not i else c, 3, 3)
                _gn(shapes, f"{key}.gn1", c, groups)
                shapes[f"{key}.conv2"] = (c, c, 3, 3)
                _gn(shapes, f"{key}.gn2", c, groups)
        shapes["fc.w"], shapes["fc.b"] = (classes, 4 * width), (classes,)
        self.shapes = shapes

    def init(self, g: torch.Generator) -> dict[str, Tensor]:
        return initial(self.shapes, g)

    def forward(self, p: dict[str, Tensor], x: Tensor, grads: dict[str, Tensor] | None = None) -> Tensor:
        n, G = x.shape[0], self.groups
        h = torch.relu(norm(conv(grouped(x), p["conv"]), p["gn.weight"], p["gn.bias"], G))
        for s in range(3):
            for i in range(self.blocks):
                key, stride = f"s{s}.b{i}", 2 if s and not i else 1
                out = torch.relu(norm(conv(h, p[f"{key}.conv1"], stride=stride), p[f"{key}.gn1.weight"],
                                      p[f"{key}.gn1.bias"], G))
                out = norm(conv(out, p[f"{key}.conv2"]), p[f"{key}.gn2.weight"], p[f"{key}.gn2.bias"], G)
                h = torch.relu(out + (h if stride == 1 else self._shortcut(h, n)))
        return classify(h.mean(dim=(2, 3)), p["fc.w"], p["fc.b"], None if grads is None else grads["fc.w"])

    @staticmethod
    def _shortcut(h: Tensor, n: int) -> Tensor:
        """Option A: subsample by 2 and pad every client's C channels with C/2 zeros on each side."""
        sub = h[:, :, ::2, ::2]
        b, nc, hh, ww = sub.shape
        c = nc // n
        padded = F.pad(sub.reshape(b, n, c, hh, ww), (0, 0, 0, 0, c // 2, c // 2))
        return padded.reshape(b, 2 * nc, hh, ww)


class VGG11:
    """VGG-11 for 32x32 images (``kuangliu/pytorch-cifar``) with per-client GroupNorm (module docstring)."""

    def __init__(self, in_shape: tuple[int, int, int], classes: int, width: int = 64, groups: int = 2) -> None:
        c, hh, ww = in_shape
        if hh % 32 or ww % 32:
            raise DistclipError(f"vgg11 pools 5 times by 2 and needs image sides divisible by 32, not {hh}x{ww}; "
                                "use a resnet kind or the cnn kind for smaller images")
        shapes: Shapes = {}
        self.plan: list[int | None] = []  # conv index, or None for a max-pool
        for item in VGG11_PLAN:
            if item == "M":
                self.plan.append(None)
                continue
            i, out = sum(q is not None for q in self.plan), width * item
            shapes[f"conv{i}.w"], shapes[f"conv{i}.b"] = (out, c, 3, 3), (out,)
            _gn(shapes, f"gn{i}", out, groups)
            self.plan.append(i)
            c = out
        shapes["fc.w"], shapes["fc.b"] = (classes, c * (hh // 32) * (ww // 32)), (classes,)
        self.shapes, self.groups = shapes, groups

    def init(self, g: torch.Generator) -> dict[str, Tensor]:
        return initial(self.shapes, g)

    def forward(self, p: dict[str, Tensor], x: Tensor, grads: dict[str, Tensor] | None = None) -> Tensor:
        h = grouped(x)
        for i in self.plan:
            if i is None:
                h = F.max_pool2d(h, 2)
            else:
                h = conv(h, p[f"conv{i}.w"], p[f"conv{i}.b"])
                h = torch.relu(norm(h, p[f"gn{i}.weight"], p[f"gn{i}.bias"], self.groups))
        return classify(h, p["fc.w"], p["fc.b"], None if grads is None else grads["fc.w"])


def deep_model(kind: str, in_shape: tuple[int, int, int], classes: int, width: int | None = None,
               groups: int = 2) -> ResNet | VGG11:
    """The model of problem kind ``kind`` (resnet20/32/56, vgg11) at its standard width unless ``width``."""
    if kind == "vgg11":
        return VGG11(in_shape, classes, width or STANDARD_WIDTH["vgg11"], groups)
    if kind in RESNETS:
        return ResNet(RESNETS[kind], in_shape, classes, width or STANDARD_WIDTH["resnet"], groups)
    raise DistclipError(f"problem.kind = {kind!r} is not a deep image model; choose one of: {', '.join(DEEP_MODELS)}")
