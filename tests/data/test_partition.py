"""Splitting dataset rows into equal client shards."""

from __future__ import annotations

import numpy as np
import pytest

from distclip.data.partition import SCHEMES, partition
from distclip.errors import DistclipError

LABELS = np.array([1, -1, 1, 1, -1, -1, 1, -1, -1, 1, -1], dtype=np.float64)  # m = 11


EXTRA = {"similarity": {"similarity": 0.5}, "dirichlet": {"alpha": 1.0}}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shapes_dropped_and_label_counts(scheme: str) -> None:
    part = partition(LABELS, 3, scheme, seed=0, **EXTRA.get(scheme, {}))
    assert part.rows.shape[0] == 3 and part.rows.dtype == np.int64
    assert part.dropped == 11 - part.rows.size and part.scheme == scheme
    assert len(set(part.rows.ravel().tolist())) == part.rows.size
    assert part.label_counts.dtype == np.int64
    for i in range(3):
        shard = LABELS[part.rows[i]]
        assert part.label_counts[i].tolist() == [(shard < 0).sum(), (shard > 0).sum()]


def test_contiguous_keeps_file_order() -> None:
    part = partition(LABELS, 2, "contiguous", seed=0)
    assert part.rows.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert part.dropped == 1


def test_sorted_is_stable_label_sort() -> None:
    part = partition(LABELS, 2, "sorted", seed=0)
    order = part.rows.ravel()
    assert np.all(np.diff(LABELS[order]) >= 0)
    assert order.tolist() == [1, 4, 5, 7, 8, 10, 0, 2, 3, 6]
    assert part.label_counts.tolist() == [[5, 0], [1, 4]]


def test_iid_deterministic_permutation() -> None:
    labels = np.where(np.arange(1000) % 3 == 0, 1.0, -1.0)
    first = partition(labels, 7, "iid", seed=42)
    again = partition(labels, 7, "iid", seed=42)
    other = partition(labels, 7, "iid", seed=43)
    np.testing.assert_array_equal(first.rows, again.rows)
    assert not np.array_equal(first.rows, other.rows)
    expected = np.random.default_rng(42).permutation(1000)[: 7 * 142].reshape(7, 142)
    np.testing.assert_array_equal(first.rows, expected)
    assert first.dropped == 1000 - 7 * 142


def test_one_row_per_client() -> None:
    part = partition(LABELS, 11, "contiguous", seed=0)
    assert part.rows.shape == (11, 1) and part.dropped == 0


@pytest.mark.parametrize(
    ("n_clients", "scheme", "match"),
    [
        (0, "iid", "partition.clients = 0 is too small"),
        (12, "iid", "partition.clients = 12 exceeds the 11 rows of dataset; use at most 11 clients"),
        (2, "shards", "unknown: use one of contiguous, sorted, iid, similarity, dirichlet"),
        (2, "dirichlet", "needs partition.alpha > 0"),
        (2, "similarity", "needs partition.similarity in"),
    ],
)
def test_errors(n_clients: int, scheme: str, match: str) -> None:
    with pytest.raises(DistclipError, match=match):
        partition(LABELS, n_clients, scheme, seed=0)


def test_any_labels_and_histogram_report() -> None:
    labels = np.repeat(np.arange(10), 30)  # 10 classes x 30 rows
    part = partition(labels, 5, "sorted", seed=0)
    assert part.classes.tolist() == list(range(10))
    assert part.label_counts.tolist()[0] == [30, 30] + [0] * 8  # each client: two whole classes
    assert "client" in part.report() and "5 clients x 60 rows (sorted); 0 rows dropped" in part.report()
    with pytest.raises(DistclipError, match="1-D"):
        partition(np.zeros((2, 2)), 1, "iid", seed=0)


DIGITS_LIKE = np.repeat(np.arange(10), 100)


@pytest.mark.parametrize("s", [0.0, 0.3, 1.0])
def test_similarity_mixes_a_common_pool_and_a_sorted_pool(s: float) -> None:
    part = partition(DIGITS_LIKE, 10, "similarity", seed=1, similarity=s)
    assert part.rows.shape == (10, 100) and part.dropped == 0
    assert len(set(part.rows.ravel().tolist())) == 1000
    common = int(round(100 * s)) * 10 // 10  # rows per client from the shuffled pool
    for i in range(10):
        tail = DIGITS_LIKE[part.rows[i, common:]]
        assert np.all(np.diff(tail) >= 0)  # the sorted pool's slice
    if s == 0.0:  # no common pool: exactly the sorted split
        assert all(len(set(DIGITS_LIKE[r])) == 1 for r in part.rows)
    if s == 1.0:  # all shuffled: every client sees many labels
        assert min(len(set(DIGITS_LIKE[r])) for r in part.rows) >= 8
    again = partition(DIGITS_LIKE, 10, "similarity", seed=1, similarity=s)
    assert np.array_equal(again.rows, part.rows)


def test_dirichlet_concentration_controls_heterogeneity() -> None:
    def labels_per_client(alpha: float) -> float:
        part = partition(DIGITS_LIKE, 10, "dirichlet", seed=2, alpha=alpha)
        assert part.rows.shape == (10, 100) and len(set(part.rows.ravel().tolist())) == 1000
        return float(np.mean([(c > 0).sum() for c in part.label_counts]))

    assert labels_per_client(0.05) < 4 < 9 < labels_per_client(100.0)
    a = partition(DIGITS_LIKE, 10, "dirichlet", seed=3, alpha=0.5)
    b = partition(DIGITS_LIKE, 10, "dirichlet", seed=3, alpha=0.5)
    assert np.array_equal(a.rows, b.rows)
