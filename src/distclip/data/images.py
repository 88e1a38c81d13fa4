"""Labelled image data for the network problems: scikit-learn's digits and the MNIST test set (bundled),
and CIFAR-10 from a user path (:mod:`.cifar10`, which keeps its official train/test split).

Images come as float arrays ``[M, C, H, W]`` scaled to [0, 1] with integer labels. The CPU stand-in
for the papers' image experiments is the MNIST *test* set (10,000 images, bundled; the training
images are not available offline) or the 1,797 digits (spec: experiments.md §1), split train/test by
the config. ``problem.path`` may point to another folder of MNIST-format idx files.
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
MNIST_SHA256 = {  # of the decompressed bundled files
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IMAGE_DATASETS = ("digits", "mnist", "cifar10")


@dataclass(frozen=True, eq=False)
class Images:
    x: np.ndarray  # [M, C, H, W] float32 in [0, 1], or uint8 in 0..255 (scaled to [0, 1] when used)
    labels: np.ndarray  # [M] int64
    name: str
    n_train: int | None = None  # rows [0, n_train) are the official training split, the rest the test split
    mean: tuple[float, ...] | None = None  # per-channel normalisation (x - mean) / std of the [0, 1] pixels
    std: tuple[float, ...] | None = None

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


def _parse_idx(raw: bytes, magic: int, where: str) -> np.ndarray:
    if len(raw) < 8 or int.from_bytes(raw[:4], "big") != magic:
        raise DistclipError(f"{where} is not an MNIST idx file (bad magic number)")
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except FileNotFoundError:
        raise DistclipError(f"MNIST file {path} not found; give problem.path = the folder of the idx files") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DistclipError(f"cannot read MNIST file {path}: {e}") from None


def _images(images: bytes, labels: bytes, where: str) -> Images:
    x = _parse_idx(images, 2051, f"{where} images")
    y = _parse_idx(labels, 2049, f"{where} labels")
    if len(x) != len(y):
        raise DistclipError(f"MNIST in {where}: {len(x)} images but {len(y)} labels")
    return Images(x[:, None].astype(np.float32) / 255.0, y.astype(np.int64), "mnist")


@functools.lru_cache(maxsize=2)
def load_mnist(folder: str | None = None) -> Images:
    """The MNIST test split (10,000 images): bundled, or from ``folder`` holding the LeCun idx files."""
    if folder is None:
        raw = {}
        for stem, digest in MNIST_SHA256.items():
            raw[stem] = gzip.decompress((files("distclip") / "data" / "images" / f"{stem}.gz").read_bytes())
            if hashlib.sha256(raw[stem]).hexdigest() != digest:
                raise DistclipError(f"bundled {stem}.gz is corrupt (sha256 mismatch); reinstall distclip")
        return _images(raw["t10k-images-idx3-ubyte"], raw["t10k-labels-idx1-ubyte"], "bundled MNIST")
    root = Path(folder)
    if not root.is_dir():
        raise DistclipError(f"MNIST folder {root} not found; give problem.path = the folder with the idx files")

    def find(stem: str) -> Path:
        return next((root / n for n in (f"{stem}.gz", stem) if (root / n).exists()), root / f"{stem}.gz")

    return _images(_read(find("t10k-images-idx3-ubyte")), _read(find("t10k-labels-idx1-ubyte")), str(root))


def load_images(dataset: str, path: str | None) -> Images:
    if dataset == "digits":
        return load_digits()
    if dataset == "mnist":
        return load_mnist(None if path is None else str(Path(path).resolve()))
    if dataset == "cifar10":
        from .cifar10 import load_cifar10

        return load_cifar10(None if path is None else str(Path(path).expanduser().resolve()))
    raise DistclipError(f"problem.dataset = {dataset!r} is not an image dataset; choose one of: "
                        f"{', '.join(IMAGE_DATASETS)}")


def split_rows(data: Images, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices: the dataset's official split if it has one, else ``train_test_split``."""
    if data.n_train is not None:
        return np.arange(data.n_train), np.arange(data.n_train, data.n_rows)
    return train_test_split(data.n_rows, test_fraction, seed)


def train_test_split(m: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row indices: (train, test), the test part of size round(test_fraction·m)."""
    order = np.random.default_rng(seed + 7919).permutation(m)
    k = int(round(test_fraction * m))
    return np.sort(order[k:]), np.sort(order[:k])
