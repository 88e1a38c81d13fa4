"""Splitting dataset rows into equal client shards."""

from __future__ import annotations

import numpy as np
import pytest

from distclip.data.partition import SCHEMES, partition
from distclip.errors import DistclipError

LABELS = np.array([1, -1, 1, 1, -1, -1, 1, -1, -1, 1, -1], dtype=np.float64)  # m = 11


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shapes_dropped_and_label_counts(scheme: str) -> None:
    part = partition(LABELS, 3, scheme, seed=0)
    assert part.rows.shape == (3, 3) and part.rows.dtype == np.int64
    assert part.dropped == 2 and part.scheme == scheme
    assert len(set(part.rows.ravel().tolist())) == 9
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
        (2, "dirichlet", "unknown: use one of contiguous, sorted, iid"),
    ],
)
def test_errors(n_clients: int, scheme: str, match: str) -> None:
    with pytest.raises(DistclipError, match=match):
        partition(LABELS, n_clients, scheme, seed=0)


def test_labels_must_be_plus_minus_one() -> None:
    with pytest.raises(DistclipError, match="±1 labels"):
        partition(np.array([0.0, 1.0]), 1, "iid", seed=0)
