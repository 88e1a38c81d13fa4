"""Labelled image data for the network problems: scikit-learn's digits (bundled) and MNIST (by path).

Images come as float arrays ``[M, C, H, W]`` scaled to [0, 1] with integer labels. The CPU stand-in
for the papers' image experiments is the MNIST *test* set (10,000 images; the training images are not
available offline) or the 1,797 digits (spec: experiments.md §1), split train/test by the config.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..errors import DistclipError

DIGITS_SHA256 = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"
IMAGE_DATASETS = ("digits", "mnist")


@dataclass(frozen=True, eq=False)
class Images:
    x: np.ndarray  # [M, C, H, W] float32 in [0, 1]
    labels: np.ndarray  # [M] int64
    name: str

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1


@functools.lru_cache(maxsize=2)
def load_digits() -> Images:
    raw = gzip.decompress((files("distclip") / "data" / "images" / "digits.csv.gz").read_bytes())
    if hashlib.sha256(raw).hexdigest() != DIGITS_SHA256:
        raise DistclipError("bundled digits.csv.gz is corrupt (sha256 mismatch); reinstall distclip")
    table = np.loadtxt(raw.decode().splitlines(), delimiter=",", dtype=np.float32)
    return Images(table[:, :64].reshape(-1, 1, 8, 8) / 16.0, table[:, 64].astype(np.int64), "digits")


def _idx(path: Path, magic: int) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DistclipError(f"MNIST file {path} not found; give problem.path = the folder of the idx files") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DistclipError(f"cannot read MNIST file {path}: {e}") from None
    dims = raw[3]
    if int.from_bytes(raw[:4], "big") != magic:
        raise DistclipError(f"{path} is not an MNIST idx file (bad magic number)")
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


@functools.lru_cache(maxsize=2)
def load_mnist(folder: str) -> Images:
    """The MNIST test split from ``folder`` (``t10k-{images-idx3,labels-idx1}-ubyte[.gz]``)."""
    root = Path(folder)
    if not root.is_dir():
        raise DistclipError(f"MNIST folder {root} not found; give problem.path = the folder with the idx files")

    def find(stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (root / name).exists():
                return root / name
        return root / f"{stem}.gz"

    images = _idx(find("t10k-images-idx3-ubyte"), 2051)
    labels = _idx(find("t10k-labels-idx1-ubyte"), 2049)
    if len(images) != len(labels):
        raise DistclipError(f"MNIST in {root}: {len(images)} images but {len(labels)} labels")
    return Images(images[:, None].astype(np.float32) / 255.0, labels.astype(np.int64), "mnist")


def load_images(dataset: str, path: str | None) -> Images:
    if dataset == "digits":
        return load_digits()
    if dataset == "mnist":
        if path is None:
            raise DistclipError("dataset 'mnist' needs problem.path, the folder holding the MNIST idx files")
        return load_mnist(str(Path(path).resolve()))
    raise DistclipError(f"problem.dataset = {dataset!r} is not an image dataset; choose one of: digits, mnist")


def train_test_split(m: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row indices: (train, test), the test part of size round(test_fraction·m)."""
    order = np.random.default_rng(seed + 7919).permutation(m)
    k = int(round(test_fraction * m))
    return np.sort(order[k:]), np.sort(order[:k])
