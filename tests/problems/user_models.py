"""User code for the ``torch`` problem kind tests, as a user would write it: models, data and losses in a file
outside the package, named in configs as ``user_models.py:NAME``."""

from __future__ import annotations

import torch
from torch import nn

from distclip.data.images import load_images, split_rows

SEED = 0
HIDDEN = 16


def mlp() -> nn.Module:
    """The built-in MLP's architecture (64 -> 16 -> 10) as an nn.Module: the same parameters in the same order."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def cnn() -> nn.Module:
    """The built-in CNN (channels [4, 8]) on 8x8 digits."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 2 * 2, 10))


def with_dropout() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, HIDDEN), nn.ReLU(), nn.Dropout(0.5), nn.Linear(HIDDEN, 10))


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x.flatten(1))
        return h if float(h.detach().sum()) > 0 else -h


def batchnorm() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 64, 10))


_calls = {"n": 0}


def unstable() -> nn.Module:
    """A factory whose parameters change shape from one call to the next."""
    _calls["n"] += 1
    return nn.Linear(64, 10 + _calls["n"])


def broken() -> nn.Module:
    raise ValueError("no GPU found")


def digits(test_fraction: float = 0.2) -> tuple:
    """The bundled digits split as the built-in image kinds split them (seed 0): (train, test) datasets."""
    data = load_images("digits", None)
    train, test = split_rows(data, test_fraction, SEED)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.labels)
    return (torch.utils.data.TensorDataset(x[train], y[train]), torch.utils.data.TensorDataset(x[test], y[test]))


class Unlabelled(torch.utils.data.Dataset):
    """Images without labels."""

    def __init__(self) -> None:
        self.x = torch.from_numpy(load_images("digits", None).x[:200])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def digits_unlabelled() -> torch.utils.data.Dataset:
    return Unlabelled()


def per_client() -> list:
    """A natural partition: 4 clients, each the digits of two labels, of unequal sizes."""
    data = load_images("digits", None)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.labels)
    return [torch.utils.data.TensorDataset(x[(y // 2) == c], y[(y // 2) == c]) for c in range(4)]


def summed_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Not a mean over the batch: a per-row vector (refused)."""
    return nn.functional.cross_entropy(out, y, reduction="none")
