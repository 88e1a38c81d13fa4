import pytest

TOY = """
[problem]
kind = "quadratic"
centres = [3.0, -3.0]
x0 = 1.0

[algorithm]
name = "clip21"
lr = 0.5
tau = 1.0

[run]
steps = 30
"""


@pytest.fixture
def toy_config(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY)
    return path


def write_fake_cifar10(folder, rows: int = 12, seed: int = 0):
    """A CIFAR-10 python folder in the real format (pickled dicts, uint8 [rows, 3072]) with random pixels."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        labels = [(b + j) % 10 for j in range(rows)]
        batch = {b"batch_label": name.encode(), b"labels": labels,
                 b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{j}.png".encode() for j in range(rows)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": rows, b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                                            b"dog", b"frog", b"horse", b"ship", b"truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture
def fake_cifar10(tmp_path):
    """Path of a tiny fake ``cifar-10-batches-py`` folder (12 images per batch: 60 train, 12 test)."""
    return write_fake_cifar10(tmp_path / "cifar-10-batches-py")
