"""Problem kinds that train an image classifier: ``mlp``, ``cnn``, ``resnet20/32/56`` and ``vgg11``.

Every kind reads labelled images (:class:`ImageData`: digits and MNIST bundled, CIFAR-10 from a path),
holds out a test split, partitions the training rows into clients and trains its network on stacked client
weights (:class:`~distclip.problems.network.Network`). The kinds differ only in the network and its keys:
``hidden`` (MLP), ``channels`` (CNN), ``width`` and ``groups`` (ResNets, VGG-11; per-client GroupNorm).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..data.cifar10 import MISSING_PATH
from ..data.images import IMAGE_DATASETS, load_images, split_rows
from ..errors import DistclipError
from ..schema import choice, group, in_range, key
from .kinds import ProblemKind, build_partition, local_path, start_key, with_start
from .models import CNN, MLP
from .network import Network
from .resnet import DEEP_MODELS, deep_model


@dataclass(frozen=True)
class ImageData:
    """The data keys of every image kind."""

    dataset: str | None = key(None, "digits | mnist (bundled) | cifar10 (needs path)")
    path: str | None = key(None, "folder of MNIST idx files or of cifar-10-batches-py")
    test_fraction: float = key(0.2, "share of rows held out for test metrics (cifar10 has its own split)")
    augment: bool = key(False, "cifar10: random 4-pad crops and flips in training")
    eval_rows: int = key(0, "log f, ∇f and accuracies on this many train (and test) rows (0: all)")

    def validate(self, cfg: Any) -> ImageData:
        choice(f"problem.dataset (for {cfg.problem.kind})", self.dataset, IMAGE_DATASETS)
        in_range("problem.test_fraction", self.test_fraction, 0, 1)
        if self.dataset == "cifar10":
            if self.path is None:
                raise DistclipError(MISSING_PATH)
            if "problem.test_fraction" in cfg.given:
                raise DistclipError("cifar10 keeps its own 10,000-image test split; remove problem.test_fraction")
        elif self.augment:
            raise DistclipError(f"problem.augment (crops and flips) is for cifar10, not {self.dataset}; remove it")
        if self.eval_rows < 0:
            raise DistclipError("problem.eval_rows must be >= 0 (0: all rows)")
        return dataclasses.replace(self, path=local_path(self.path, cfg))


@dataclass(frozen=True)
class MLPConfig:
    data: ImageData = group(ImageData)
    hidden: list[int] = key(help="hidden widths", factory=lambda: [64])
    x0: float | list[float] | None = start_key(None)

    def validate(self, cfg: Any) -> MLPConfig:
        if any(w < 1 for w in self.hidden):
            raise DistclipError("problem.hidden must list widths >= 1")
        return dataclasses.replace(self, data=self.data.validate(cfg))

    def network(self, shape: tuple[int, ...], classes: int, kind: str) -> Any:
        return MLP(shape, self.hidden, classes)


@dataclass(frozen=True)
class CNNConfig:
    data: ImageData = group(ImageData)
    channels: list[int] = key(help="channels of its 2 convs", factory=lambda: [8, 16])
    x0: float | list[float] | None = start_key(None)

    def validate(self, cfg: Any) -> CNNConfig:
        if any(w < 1 for w in self.channels) or len(self.channels) != 2:
            raise DistclipError("problem.channels must list two channel counts >= 1")
        return dataclasses.replace(self, data=self.data.validate(cfg))

    def network(self, shape: tuple[int, ...], classes: int, kind: str) -> Any:
        return CNN(shape, self.channels, classes)


@dataclass(frozen=True)
class DeepConfig:
    data: ImageData = group(ImageData)
    width: int | None = key(None, "first-stage channels (ResNet 16, VGG-11 64 by default)")
    groups: int = key(2, "GroupNorm groups per layer")
    x0: float | list[float] | None = start_key(None)

    def validate(self, cfg: Any) -> DeepConfig:
        if (self.width is not None and self.width < 1) or self.groups < 1:
            raise DistclipError("problem.width and problem.groups must be >= 1")
        return dataclasses.replace(self, data=self.data.validate(cfg))

    def network(self, shape: tuple[int, ...], classes: int, kind: str) -> Any:
        return deep_model(kind, shape, classes, self.width, self.groups)


def labelled(cfg: Any) -> tuple[Any, Any]:
    d = cfg.problem.data
    data = load_images(d.dataset, d.path)
    return data, split_rows(data, d.test_fraction, cfg.seed)[0]


def build(cfg: Any, dtype: torch.dtype, device: torch.device) -> Network:
    p = cfg.problem
    data, part = build_partition(cfg)
    model = p.network(data.x.shape[1:], data.n_classes, p.kind)
    test = split_rows(data, p.data.test_fraction, cfg.seed)[1]
    net = Network(model, data, part, test, cfg.seed, dtype, device, p.data.augment, p.data.eval_rows)
    return with_start(net, p.x0, dtype, device)


def _kind(name: str, summary: str, config: type) -> ProblemKind:
    return ProblemKind(name, summary, config, build, labelled)


KINDS = {
    "mlp": _kind("mlp", "MLP classifier (hidden) on digits, mnist or cifar10", MLPConfig),
    "cnn": _kind("cnn", "2-conv CNN classifier (channels) on digits, mnist or cifar10", CNNConfig),
    **{k: _kind(k, f"ResNet-{k[6:]} (option-A shortcuts, per-client GroupNorm) on cifar10 (or digits/mnist)",
                DeepConfig) for k in DEEP_MODELS if k.startswith("resnet")},
    "vgg11": _kind("vgg11", "VGG-11 (per-client GroupNorm) on cifar10 (or digits/mnist)", DeepConfig),
}
