"""CIFAR-10 from the standard python folder at a user path, and its standard training augmentation.

CIFAR-10 is not bundled and never downloaded (spec: experiments.md §1): the loader reads the folder
``cifar-10-batches-py`` extracted from ``cifar-10-python.tar.gz`` (Krizhevsky 2009). Each of
``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` is a pickled dict whose ``b"data"`` is a
uint8 array ``[rows, 3072]`` (1024 red, 1024 green, 1024 blue values of a 32x32 image, row-major)
and whose ``b"labels"`` lists the classes 0..9. The five training batches come first (50,000 rows),
then the test batch (10,000 rows). Images stay uint8 in memory (180 MB instead of 737 MB as float32)
and are scaled and normalised with the per-channel training-set mean and standard deviation when a
batch is used.

Augmentation (``crop_flip``) is the standard CIFAR one (He et al. 2016): pad 4 zero pixels on each
side, crop a random 32x32 window, flip horizontally with probability 1/2. It runs batched on the
tensors; each image's offset and flip are drawn counter-based from (seed, client id, draw, position
in the batch) like the minibatch indices (see :mod:`distclip.rng`), so they do not depend on the
process that holds the client.

Pickle can run code: the files are read with an unpickler that admits only the numpy array
reconstructors a CIFAR batch contains.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DistclipError
from ..rng import sample_indices
from .images import Images

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
#: per-channel mean and standard deviation of the 50,000 training images (pixels scaled to [0, 1])
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
DOWNLOAD = "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it"
FIX = f"{DOWNLOAD}, then set problem.path=.../{FOLDER}"
MISSING_PATH = f"CIFAR-10 is not bundled (no problem.path given): {FIX}"
#: added to the seed so that augmentation draws are independent of the minibatch draws
AUGMENT_STREAM = 0xC1FA_0000_0000


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds dicts, lists, bytes and numpy arrays, and refuses anything else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        return super().find_class(module, name)


def find_folder(path: str | Path) -> Path:
    """The ``cifar-10-batches-py`` folder: ``path`` itself or its child of that name."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DistclipError(f"CIFAR-10 not found at {root}: {FIX}")
    for folder in (root, root / FOLDER):
        if (folder / TRAIN_FILES[0]).is_file():
            return folder
    raise DistclipError(f"{root} holds no data_batch_1 (nor {FOLDER}/data_batch_1), so it is not the CIFAR-10 "
                        f"python folder: {FIX}")


def read_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[rows, 3, 32, 32]`` uint8 and labels ``[rows]`` int64 of one pickled CIFAR-10 batch."""
    if not file.is_file():
        raise DistclipError(f"CIFAR-10 folder {file.parent} lacks {file.name}: re-extract cifar-10-python.tar.gz")
    try:
        with file.open("rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as e:
        raise DistclipError(f"cannot read CIFAR-10 file {file} ({type(e).__name__}: {e}); the file is damaged or "
                            "not from the python version: re-extract cifar-10-python.tar.gz") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DistclipError(f"CIFAR-10 file {file} is not a batch dict with b'data' and b'labels'; "
                            "re-extract cifar-10-python.tar.gz (the python version)")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DistclipError(f"CIFAR-10 file {file}: b'data' is {what}, expected uint8 [rows, 3072]; "
                            "re-extract cifar-10-python.tar.gz")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or not ((labels >= 0) & (labels < 10)).all():
        raise DistclipError(f"CIFAR-10 file {file}: b'labels' must be {len(data)} integers in 0..9; "
                            "re-extract cifar-10-python.tar.gz")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


@functools.lru_cache(maxsize=1)
def load_cifar10(path: str | None) -> Images:
    """The 50,000 training then 10,000 test images (``n_train`` marks the split), uint8, with MEAN/STD."""
    if path is None:
        raise DistclipError(MISSING_PATH)
    folder = find_folder(path)
    parts = [read_batch(folder / name) for name in (*TRAIN_FILES, TEST_FILE)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x.setflags(write=False)
    return Images(x, y, "cifar10", n_train=sum(len(p[1]) for p in parts[:-1]), mean=MEAN, std=STD)


def crop_flip(x: Tensor, seed: int, clients: np.ndarray, draw: int, pad: int = 4) -> Tensor:
    """Random ``pad``-padded crops and horizontal flips of ``x`` ``[n, B, C, H, W]``; row j of client i
    depends only on (seed, clients[i], draw, j)."""
    n, b, c, h, w = x.shape
    side = 2 * pad + 1
    k = torch.from_numpy(sample_indices(seed + AUGMENT_STREAM, clients, draw, b, 2 * side * side)).flatten()
    k = k.pin_memory().to(x.device, non_blocking=True) if x.is_cuda else k  # pinned: no wait for the device
    flip, dy, dx = k % 2, k // 2 // side, k // 2 % side
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None] == 1, cols.flip(1), cols)
    padded = F.pad(x.reshape(n * b, c, h, w), (pad, pad, pad, pad))
    out = padded[torch.arange(n * b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).reshape(n, b, c, h, w)
