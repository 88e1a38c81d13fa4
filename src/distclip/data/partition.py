"""Split the rows of a dataset into equal shards, one per client."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distclip.errors import DistclipError

SCHEMES = ("contiguous", "sorted", "iid")


@dataclass(frozen=True, eq=False)
class Partition:
    """Row indices per client (``rows[i]`` is client i's shard) and what was left out."""

    rows: np.ndarray
    dropped: int
    scheme: str
    label_counts: np.ndarray

    @property
    def n_clients(self) -> int:
        """Number of clients."""
        return int(self.rows.shape[0])

    @property
    def shard_size(self) -> int:
        """Rows per client."""
        return int(self.rows.shape[1])


def partition(labels: np.ndarray, n_clients: int, scheme: str, seed: int) -> Partition:
    """Give each of ``n_clients`` clients floor(m / n_clients) rows of a ±1-labelled dataset.

    The rows are first ordered by ``scheme``: ``contiguous`` keeps file order, ``sorted`` sorts
    stably by label (-1 first, the most heterogeneous split), ``iid`` shuffles with
    ``np.random.default_rng(seed)`` (``seed`` is unused by the other schemes). Client i then gets
    ``order[i*s:(i+1)*s]`` and the last ``m - n_clients*s`` rows of the order are dropped.
    ``label_counts[i]`` holds client i's number of -1 and +1 labels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.isin(labels, (-1.0, 1.0)).all():
        raise DistclipError("partition needs a 1-D array of ±1 labels: load the data with load_dataset")
    m = labels.shape[0]
    if scheme not in SCHEMES:
        raise DistclipError(f"partition.scheme = {scheme!r} is unknown: use one of {', '.join(SCHEMES)}")
    if n_clients < 1:
        raise DistclipError(f"partition.clients = {n_clients} is too small: use at least 1 client")
    if n_clients > m:
        raise DistclipError(
            f"partition.clients = {n_clients} exceeds the {m} rows of dataset; use at most {m} clients"
        )
    if scheme == "contiguous":
        order = np.arange(m, dtype=np.int64)
    elif scheme == "sorted":
        order = np.argsort(labels, kind="stable").astype(np.int64)
    else:
        order = np.random.default_rng(seed).permutation(m).astype(np.int64)
    shard = m // n_clients
    rows = order[: n_clients * shard].reshape(n_clients, shard)
    positive = (labels[rows] > 0).sum(axis=1)
    label_counts = np.stack([shard - positive, positive], axis=1).astype(np.int64)
    rows.setflags(write=False)
    label_counts.setflags(write=False)
    return Partition(rows=rows, dropped=int(m - n_clients * shard), scheme=scheme, label_counts=label_counts)
