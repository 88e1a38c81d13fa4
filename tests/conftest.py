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


def py2_pickle(batch: dict) -> bytes:
    """``batch`` pickled the way Python 2's cPickle (protocol 2) wrote the CIFAR-10 files: byte strings as str
    opcodes, numpy arrays through ``numpy.core.multiarray._reconstruct``."""
    import struct

    def s(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b

    def i(v: int) -> bytes:
        return b"J" + struct.pack("<i", v)

    def value(v) -> bytes:
        if isinstance(v, bytes):
            return s(v)
        if isinstance(v, int):
            return i(v)
        if isinstance(v, list):
            return b"](" + b"".join(value(x) for x in v) + b"e"
        dtype = (b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1)
                 + i(0) + b"tb")
        head = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R"
        shape = b"(" + b"".join(i(d) for d in v.shape) + b"t"
        return head + b"(" + i(1) + shape + dtype + b"\x89" + s(v.tobytes()) + b"tb"

    return b"\x80\x02}(" + b"".join(s(k) + value(v) for k, v in batch.items()) + b"u."


def write_fake_cifar10(folder, rows: int = 12, seed: int = 0):
    """A CIFAR-10 python folder in the real format (Python 2 pickles of dicts, uint8 [rows, 3072]), random pixels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        labels = [(b + j) % 10 for j in range(rows)]
        batch = {b"batch_label": name.encode(), b"labels": labels,
                 b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{j}.png".encode() for j in range(rows)]}
        (folder / name).write_bytes(py2_pickle(batch))
    meta = {b"num_cases_per_batch": rows, b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                                            b"dog", b"frog", b"horse", b"ship", b"truck"]}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return folder


@pytest.fixture
def fake_cifar10(tmp_path):
    """Path of a tiny fake ``cifar-10-batches-py`` folder (12 images per batch: 60 train, 12 test)."""
    return write_fake_cifar10(tmp_path / "cifar-10-batches-py")


def assert_csv_matches(out):
    """metrics.csv holds exactly the rows of metrics.jsonl (same order, same values, empty where a key is absent)."""
    import csv
    import math

    from distclip.metrics import read_metrics

    rows = read_metrics(out / "metrics.jsonl")
    with (out / "metrics.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and rows
    for row, cells in zip(rows, table, strict=True):
        assert set(cells) >= set(row)
        for key, cell in cells.items():
            if key not in row:
                assert cell == ""
            elif isinstance(row[key], float) and math.isnan(row[key]):
                assert math.isnan(float(cell))
            else:
                assert float(cell) == row[key], (key, row["step"])
