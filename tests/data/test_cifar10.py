"""CIFAR-10 loader on fake folders in the real pickle format; its augmentation's seeding and geometry."""

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_fake_cifar10

from distclip.config import from_dict
from distclip.data.cifar10 import MEAN, STD, crop_flip, load_cifar10
from distclip.data.images import load_images, split_rows
from distclip.errors import DistclipError


def test_loads_train_then_test_in_the_python_format(fake_cifar10):
    data = load_images("cifar10", str(fake_cifar10))
    assert data.x.shape == (72, 3, 32, 32) and data.x.dtype == np.uint8 and data.n_train == 60
    assert data.labels.tolist()[:3] == [0, 1, 2] and data.labels.tolist()[12:14] == [1, 2]  # batch b starts at b
    assert data.labels.tolist()[60:62] == [5, 6] and data.n_classes == 10
    raw = pickle.loads((fake_cifar10 / "data_batch_2").read_bytes(), encoding="bytes")[b"data"]
    c, i, j = 2, 5, 7  # 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 image
    assert data.x[12 + 3, c, i, j] == raw[3, c * 1024 + i * 32 + j]
    assert (data.mean, data.std) == (MEAN, STD)
    train, test = split_rows(data, 0.2, seed=0)
    assert train.tolist() == list(range(60)) and test.tolist() == list(range(60, 72))
    parent = load_cifar10(str(fake_cifar10.parent))  # the folder that holds cifar-10-batches-py works too
    assert np.array_equal(parent.x, data.x) and np.array_equal(parent.labels, data.labels)


def test_missing_or_wrong_folders_say_what_to_do(tmp_path):
    with pytest.raises(DistclipError, match=r"CIFAR-10 not found at .*nowhere: download cifar-10-python.tar.gz from "
                                            r"https://www.cs.toronto.edu/~kriz/cifar.html and extract it, then set "
                                            r"problem.path=.../cifar-10-batches-py"):
        load_cifar10(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistclipError, match="holds no data_batch_1.*not the CIFAR-10 python folder"):
        load_cifar10(str(tmp_path / "empty"))
    with pytest.raises(DistclipError, match="not bundled.*problem.path"):
        load_images("cifar10", None)
    with pytest.raises(DistclipError, match="not bundled.*cs.toronto.edu"):
        from_dict({"problem": {"kind": "resnet20", "dataset": "cifar10"}, "algorithm": {"name": "sgd", "lr": 0.1}})


@pytest.mark.parametrize("damage, message", [
    ("missing", "lacks test_batch: re-extract"),
    ("truncated", "cannot read CIFAR-10 file .*test_batch.*damaged"),
    ("code", "cannot read CIFAR-10 file .*unexpected object"),
    ("shape", r"b'data' is uint8 \(12, 100\), expected uint8 \[rows, 3072\]"),
    ("labels", "b'labels' must be 12 integers in 0..9"),
    ("not a dict", "not a batch dict"),
])
def test_damaged_files_are_named(tmp_path, damage, message):
    folder = write_fake_cifar10(tmp_path / "cifar-10-batches-py")
    target = folder / "test_batch"
    batch = pickle.loads(target.read_bytes(), encoding="bytes")
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:500])
    elif damage == "code":  # a pickle that would run a command is refused, not executed
        target.write_bytes(pickle.dumps({b"data": os.system, b"labels": []}))
    elif damage == "shape":
        target.write_bytes(pickle.dumps({**batch, b"data": batch[b"data"][:, :100].copy()}))
    elif damage == "labels":
        target.write_bytes(pickle.dumps({**batch, b"labels": [10] * 12}))
    else:
        target.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DistclipError, match=message):
        load_cifar10(str(folder))


def test_crops_and_flips_are_windows_of_the_padded_image_seeded_per_client_and_draw():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 5, 3, 8, 8), generator=g, dtype=torch.uint8)
    clients = np.array([4, 7, 9])
    out = crop_flip(x, 11, clients, draw=2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    # the same rows come out wherever the client sits in the block, and whatever else the block holds
    assert torch.equal(crop_flip(x[1:2], 11, clients[1:2], draw=2)[0], out[1])
    assert not torch.equal(crop_flip(x, 11, clients, draw=3), out)
    assert not torch.equal(crop_flip(x, 12, clients, draw=2), out)
    # every image is one of the 2 x 9 x 9 (flip, offset) windows of the zero-padded original
    padded = F.pad(x, (4, 4, 4, 4))
    seen = set()
    for i in range(3):
        for j in range(5):
            crops = {(dy, dx): padded[i, j, :, dy:dy + 8, dx:dx + 8] for dy in range(9) for dx in range(9)}
            windows = {(f, *k) for k, c in crops.items() for f in (0, 1)
                       if torch.equal(out[i, j], c.flip(-1) if f else c)}
            assert windows
            seen |= windows
    assert {f for f, _, _ in seen} == {0, 1}
