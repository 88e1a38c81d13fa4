"""Split the rows of a labelled dataset into equal shards, one per client (spec: experiments.md §6).

Every scheme gives each client the same number of rows (what stacked client tensors need) and reports
how many rows it left out and each client's label histogram. Schemes:

- ``contiguous``: file order.
- ``sorted``: stable sort by label, then contiguous (maximal label skew).
- ``iid``: a seeded shuffle.
- ``similarity`` (SCAFFOLD / EPISODE ``data_loader.py``): for each label a fraction s of its rows
  (``partition.similarity``) goes to a shuffled common pool and the rest to a pool sorted by label;
  every client gets an equal slice of both. s = 1 is ``iid``, s = 0 is ``sorted``; EPISODE's
  heterogeneity is H = 1 − s (their s = 30% is H = 0.7).
- ``dirichlet``: client i draws label proportions q_i ~ Dir(α·K·p), p the dataset's frequencies of
  its K labels (``partition.alpha``; uniform p gives Dir(α, …, α); small α: few labels per client,
  large α: i.i.d.), then fills its shard with rows of each label in those proportions, without
  replacement; when a label runs out, the rest comes from the labels left, in proportion to q_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from distclip.errors import DistclipError

SCHEMES = ("contiguous", "sorted", "iid", "similarity", "dirichlet")


@dataclass(frozen=True, eq=False)
class Partition:
    """Row indices per client (``rows[i]`` is client i's shard) and what was left out.

    ``label_counts[i, c]`` counts client i's rows with label ``classes[c]``.
    """

    rows: np.ndarray
    dropped: int
    scheme: str
    label_counts: np.ndarray
    classes: np.ndarray

    @property
    def n_clients(self) -> int:
        return int(self.rows.shape[0])

    @property
    def shard_size(self) -> int:
        return int(self.rows.shape[1])

    def info(self) -> dict[str, Any]:
        """What a run's summary records of its partition: rows per client, rows dropped, scheme, histograms."""
        return {"rows_per_client": self.shard_size, "rows_dropped": int(self.dropped), "partition": self.scheme,
                "label_counts": self.label_counts.tolist()}

    def report(self) -> str:
        """A plain-text table of the label histogram of every client."""
        names = [f"{c:g}" for c in self.classes]
        width = max(6, *(len(n) for n in names))
        head = "client " + " ".join(n.rjust(width) for n in names)
        lines = [head, "-" * len(head)]
        for i, counts in enumerate(self.label_counts):
            lines.append(f"{i:>6} " + " ".join(str(c).rjust(width) for c in counts))
        lines.append(f"{self.n_clients} clients x {self.shard_size} rows ({self.scheme}); {self.dropped} rows dropped")
        return "\n".join(lines)


def partition(labels: np.ndarray, n_clients: int, scheme: str, seed: int, *,
              similarity: float | None = None, alpha: float | None = None) -> Partition:
    """Give each of ``n_clients`` clients an equal shard of the rows, ordered by ``scheme``."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DistclipError("partition needs a 1-D array of labels, one per row")
    m = labels.shape[0]
    if scheme not in SCHEMES:
        raise DistclipError(f"partition.scheme = {scheme!r} is unknown: use one of {', '.join(SCHEMES)}")
    if n_clients < 1:
        raise DistclipError(f"partition.clients = {n_clients} is too small: use at least 1 client")
    if n_clients > m:
        raise DistclipError(
            f"partition.clients = {n_clients} exceeds the {m} rows of dataset; use at most {m} clients"
        )
    rng = np.random.default_rng(seed)
    classes, codes = np.unique(labels, return_inverse=True)
    if scheme == "similarity":
        if similarity is None or not 0 <= similarity <= 1:
            raise DistclipError("partition scheme 'similarity' needs partition.similarity in [0, 1]")
        rows = _similarity(codes, n_clients, similarity, rng)
    elif scheme == "dirichlet":
        if alpha is None or not alpha > 0:
            raise DistclipError("partition scheme 'dirichlet' needs partition.alpha > 0")
        rows = _dirichlet(codes, len(classes), n_clients, alpha, rng)
    else:
        if scheme == "contiguous":
            order = np.arange(m, dtype=np.int64)
        elif scheme == "sorted":
            order = np.argsort(codes, kind="stable").astype(np.int64)
        else:
            order = rng.permutation(m).astype(np.int64)
        shard = m // n_clients
        rows = order[: n_clients * shard].reshape(n_clients, shard)
    counts = np.stack([np.bincount(codes[r], minlength=len(classes)) for r in rows]).astype(np.int64)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    rows.setflags(write=False)
    counts.setflags(write=False)
    return Partition(rows=rows, dropped=int(m - rows.size), scheme=scheme, label_counts=counts, classes=classes)


def _similarity(codes: np.ndarray, n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    common, rest = [], []
    for c in range(codes.max() + 1):
        idx = rng.permutation(np.flatnonzero(codes == c))
        k = int(round(s * len(idx)))
        common.append(idx[:k])
        rest.append(np.sort(idx[k:]))  # file order within a label, labels in order: the sorted pool
    common = rng.permutation(np.concatenate(common))
    rest = np.concatenate(rest)
    a, b = len(common) // n, len(rest) // n
    return np.concatenate([common[: n * a].reshape(n, a), rest[: n * b].reshape(n, b)], axis=1)


def _dirichlet(codes: np.ndarray, k: int, n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    shard = len(codes) // n
    pools = [list(rng.permutation(np.flatnonzero(codes == c))) for c in range(k)]
    prior = np.bincount(codes, minlength=k) / len(codes)
    rows = np.empty((n, shard), dtype=np.int64)
    for i in range(n):
        q = rng.dirichlet(alpha * prior * k)
        want = rng.multinomial(shard, q)
        take = np.minimum(want, [len(p) for p in pools])
        short = shard - int(take.sum())
        while short > 0:  # labels ran out: fill from those left, in proportion to q
            left = np.array([len(p) for p in pools]) - take
            weights = np.where(left > 0, q + 1e-12, 0.0)
            extra = np.minimum(rng.multinomial(short, weights / weights.sum()), left)
            take += extra
            short -= int(extra.sum())
        picked = []
        for c in range(k):
            picked += pools[c][: take[c]]
            del pools[c][: take[c]]
        rows[i] = picked
    return rows
