"""Your own CNN in distclip, on the bundled MNIST images (the 10,000 test images, split 80/20 here).

``model()`` returns the nn.Module and ``data()`` the (train, test) datasets; cnn_mnist.toml names them. Note
the GroupNorm: BatchNorm keeps running statistics, per-client state that distclip refuses (it would be neither
averaged nor clipped nor checkpointed); ``distclip.problems.torch_module.batchnorm_to_groupnorm`` converts one.
"""

from __future__ import annotations

import torch
from torch import nn

from distclip.data.images import load_images


def model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.GroupNorm(2, 16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )


def data() -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    images = load_images("mnist", None)
    x = torch.from_numpy(images.x).float() / 255 if images.x.dtype.name == "uint8" else torch.from_numpy(images.x)
    y = torch.from_numpy(images.labels)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:8000], order[8000:]
    return torch.utils.data.TensorDataset(x[train], y[train]), torch.utils.data.TensorDataset(x[test], y[test])
