"""Clipping operators, compressors, counter-based sampling and schedules (spec: algorithms.md §1, §4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distclip.clipping import KINDS, clip, scale
from distclip.compressors import Compressor
from distclip.rng import sample_indices
from distclip.schedule import Every

F64 = torch.float64


def rows(seed: int = 0, n: int = 6, d: int = 4) -> torch.Tensor:
    """Client rows with norms spread over several orders of magnitude (one zero row)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    x = x * torch.logspace(-2, 2, n, dtype=F64).unsqueeze(1)
    x[n // 2] = 0.0
    return x


def norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=1)


# -- norm clipping ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [1e-3, 0.1, 1.0, 3.0, 1e3])
def test_norm_clip_norm_is_min_of_norm_and_tau(tau: float) -> None:
    x = rows()
    c = clip(x, tau)
    expected = torch.minimum(norms(x), torch.tensor(tau, dtype=F64))
    torch.testing.assert_close(norms(c.out), expected, rtol=1e-14, atol=0.0)
    torch.testing.assert_close(c.norms, norms(x), rtol=0.0, atol=0.0)


def test_norm_clip_keeps_direction_and_formula() -> None:
    x = rows(1)
    tau = 0.7
    c = clip(x, tau)
    for i in range(x.shape[0]):
        n = math.sqrt(sum(v * v for v in x[i].tolist()))
        s = 1.0 if n <= tau else tau / n
        torch.testing.assert_close(c.out[i], torch.tensor([s * v for v in x[i].tolist()], dtype=F64), rtol=1e-14,
                                   atol=0.0)
        if n > 0:  # positive multiple of x: cosine 1
            cos = float(c.out[i] @ x[i]) / (float(norms(c.out)[i]) * n)
            assert cos == pytest.approx(1.0, abs=1e-14)


def test_norm_clip_identity_iff_within_threshold_and_flags() -> None:
    x = rows(2)
    tau = 1.0
    c = clip(x, tau)
    inside = norms(x) <= tau
    assert torch.equal(c.clipped, norms(x) > tau)
    assert torch.equal(c.out[inside], x[inside])  # exactly unchanged
    assert not torch.equal(c.out[~inside], x[~inside])
    assert c.clipped.dtype == torch.bool and c.clipped.shape == (x.shape[0],)


def test_norm_clip_idempotent() -> None:
    x = rows(3)
    once = clip(x, 0.5).out
    twice = clip(once, 0.5).out
    torch.testing.assert_close(twice, once, rtol=1e-15, atol=1e-300)


def test_norm_clip_zero_is_zero_and_unflagged() -> None:
    x = torch.zeros(3, 5, dtype=F64)
    for tau in (1e-8, 1.0, math.inf):
        c = clip(x, tau)
        assert torch.equal(c.out, x)
        assert not bool(torch.isnan(c.out).any())
        assert not bool(c.clipped.any())
        assert torch.equal(c.norms, torch.zeros(3, dtype=F64))


def test_norm_clip_infinite_tau_is_identity() -> None:
    x = rows(4) * 1e100  # even huge rows pass through untouched
    c = clip(x, math.inf)
    assert torch.equal(c.out, x)
    assert not bool(c.clipped.any())


def test_norm_clip_infinite_tau_is_identity_when_norm_overflows() -> None:
    x = torch.tensor([[1e200, -1e200]], dtype=F64)  # finite entries, ‖x‖ overflows float64
    c = clip(x, math.inf)
    assert torch.equal(c.out, x)


def test_norm_clip_per_client_tau_tensor() -> None:
    x = torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.3, 0.4], [6.0, 8.0]], dtype=F64)  # norms 5, 5, 0.5, 10
    tau = torch.tensor([1.0, 10.0, 0.25, math.inf], dtype=F64)
    c = clip(x, tau)
    expected = torch.tensor([[0.6, 0.8], [3.0, 4.0], [0.15, 0.2], [6.0, 8.0]], dtype=F64)
    torch.testing.assert_close(c.out, expected, rtol=1e-15, atol=0.0)
    assert c.clipped.tolist() == [True, False, True, False]
    torch.testing.assert_close(c.norms, torch.tensor([5.0, 5.0, 0.5, 10.0], dtype=F64))
    # a per-client threshold equals clipping each row alone with its own τ
    for i in range(4):
        torch.testing.assert_close(c.out[i:i + 1], clip(x[i:i + 1], float(tau[i])).out, rtol=0.0, atol=0.0)


def test_norm_clip_keeps_dtype_float32() -> None:
    x = rows(5).float()
    c = clip(x, 0.5)
    assert c.out.dtype == torch.float32 and c.norms.dtype == torch.float32
    torch.testing.assert_close(norms(c.out), torch.minimum(norms(x), torch.tensor(0.5)), rtol=1e-6, atol=0.0)


def test_scale_matches_clip() -> None:
    x = rows(6)
    tau = torch.full((x.shape[0],), 0.3, dtype=F64)
    for kind in ("norm", "soft"):
        s = scale(norms(x), tau, kind)
        torch.testing.assert_close(x * s.unsqueeze(1), clip(x, tau, kind).out, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError):
        scale(norms(x), tau, "coordinate")


# -- soft clipping ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.01, 1.0, 100.0])
def test_soft_clip_formula_and_strictly_shorter(tau: float) -> None:
    x = rows(7)
    c = clip(x, tau, "soft")
    for i in range(x.shape[0]):
        n = math.sqrt(sum(v * v for v in x[i].tolist()))
        expected = [tau * v / (tau + n) for v in x[i].tolist()]
        torch.testing.assert_close(c.out[i], torch.tensor(expected, dtype=F64), rtol=1e-14, atol=0.0)
        out_norm = float(norms(c.out)[i])
        if n > 0:
            assert out_norm < min(n, tau)
            assert bool(c.clipped[i])
        else:
            assert out_norm == 0.0 and not bool(c.clipped[i])


def test_soft_clip_infinite_tau_is_identity() -> None:
    x = rows(8)
    c = clip(x, math.inf, "soft")
    assert torch.equal(c.out, x)
    assert not bool(c.clipped.any())


def test_soft_clip_per_client_tau() -> None:
    x = torch.tensor([[3.0, 4.0], [3.0, 4.0]], dtype=F64)
    c = clip(x, torch.tensor([5.0, 1.0], dtype=F64), "soft")
    torch.testing.assert_close(c.out, torch.tensor([[1.5, 2.0], [0.5, 2.0 / 3.0]], dtype=F64), rtol=1e-15, atol=0.0)


# -- coordinate clipping -----------------------------------------------------------------------------
def test_coordinate_clip_clamps_each_entry() -> None:
    x = torch.tensor([[0.5, -2.0, 3.0], [0.1, -0.2, 0.3], [0.0, 0.0, 0.0]], dtype=F64)
    c = clip(x, 1.0, "coordinate")
    torch.testing.assert_close(c.out, torch.tensor([[0.5, -1.0, 1.0], [0.1, -0.2, 0.3], [0.0, 0.0, 0.0]],
                                                   dtype=F64), rtol=0.0, atol=0.0)
    assert c.clipped.tolist() == [True, False, False]
    assert float(c.out.abs().max()) <= 1.0
    torch.testing.assert_close(c.norms, norms(x))


def test_coordinate_clip_per_client_and_direction_changes() -> None:
    x = torch.tensor([[2.0, 1.0], [2.0, 1.0]], dtype=F64)
    c = clip(x, torch.tensor([1.0, 5.0], dtype=F64), "coordinate")
    assert c.out.tolist() == [[1.0, 1.0], [2.0, 1.0]]
    assert c.clipped.tolist() == [True, False]
    # direction not kept: (1, 1) is not parallel to (2, 1)
    assert float(c.out[0, 0] * x[0, 1] - c.out[0, 1] * x[0, 0]) != 0.0
    assert torch.equal(clip(x, math.inf, "coordinate").out, x)


def test_kinds_listed() -> None:
    assert set(KINDS) == {"norm", "soft", "coordinate"}


# -- compressors ---------------------------------------------------------------------------------------
def test_top_k_keeps_k_largest_magnitudes() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 9, generator=g, dtype=F64)
    for k in (1, 3, 8):
        out = Compressor("top-k", k)(x)
        for i in range(5):
            vals = x[i].tolist()
            keep = sorted(range(9), key=lambda j, v=vals: (-abs(v[j]), j))[:k]
            expected = [vals[j] if j in keep else 0.0 for j in range(9)]
            assert out[i].tolist() == expected
        assert int((out != 0).sum(dim=1).max()) == k


def test_top_k_ties_go_to_lower_index() -> None:
    x = torch.tensor([[1.0, -2.0, 2.0, -2.0], [3.0, 3.0, 3.0, 3.0], [0.0, 0.0, -1.0, 1.0]], dtype=F64)
    assert Compressor("top-k", 1)(x).tolist() == [[0.0, -2.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0],
                                                  [0.0, 0.0, -1.0, 0.0]]
    assert Compressor("top-k", 2)(x).tolist() == [[0.0, -2.0, 2.0, 0.0], [3.0, 3.0, 0.0, 0.0],
                                                  [0.0, 0.0, -1.0, 1.0]]


def test_top_k_contractive() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, generator=g, dtype=F64)
    for k in range(1, 7):
        err = ((Compressor("top-k", k)(x) - x) ** 2).sum(dim=1)
        assert bool((err <= (1 - k / 6) * (x**2).sum(dim=1) + 1e-15).all())


def test_identity_and_dense_compressors() -> None:
    x = torch.tensor([[1.0, -3.0, 2.0]], dtype=F64)
    assert torch.equal(Compressor("identity")(x), x)
    assert torch.equal(Compressor("top-k", 3)(x), x)
    assert torch.equal(Compressor("top-k", 10)(x), x)
    assert Compressor("identity").sparse_k(3) is None
    assert Compressor("top-k", 3).sparse_k(3) is None
    assert Compressor("top-k", 2).sparse_k(3) == 2


# -- counter-based sampling ---------------------------------------------------------------------------
def test_sample_indices_deterministic_and_in_range() -> None:
    clients = np.arange(6)
    a = sample_indices(7, clients, 3, 50, 13)
    b = sample_indices(7, clients, 3, 50, 13)
    assert a.shape == (6, 50) and a.dtype == np.int64
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 13
    assert len(np.unique(a)) == 13  # 300 draws from 13 rows hit every row


def test_sample_indices_independent_of_block() -> None:
    block = sample_indices(11, np.arange(6), 5, 17, 1000)
    for i in range(6):
        alone = sample_indices(11, np.array([i]), 5, 17, 1000)
        assert np.array_equal(block[i], alone[0])
    # any sub-block, in any order
    sub = sample_indices(11, np.array([4, 1]), 5, 17, 1000)
    assert np.array_equal(sub, block[[4, 1]])
    # batch prefix: a larger batch starts with the smaller one
    assert np.array_equal(sample_indices(11, np.arange(6), 5, 5, 1000), block[:, :5])


def test_sample_indices_vary_with_seed_step_and_client() -> None:
    base = sample_indices(0, np.arange(3), 0, 64, 10**6)
    assert not np.array_equal(base, sample_indices(1, np.arange(3), 0, 64, 10**6))
    assert not np.array_equal(base, sample_indices(0, np.arange(3), 1, 64, 10**6))
    assert not np.array_equal(base[0], base[1])


def test_sample_indices_roughly_uniform() -> None:
    idx = sample_indices(3, np.arange(4), 9, 5000, 10)
    counts = np.bincount(idx.ravel(), minlength=10)
    assert counts.min() > 1700 and counts.max() < 2300  # expectation 2000


# -- schedules ------------------------------------------------------------------------------------------
def test_every_schedule() -> None:
    e = Every(3)
    assert [t for t in range(10) if e.communicates(t)] == [0, 3, 6, 9]
    assert all(Every(1).communicates(t) for t in range(5))
    assert Every().interval == 1
    for steps, interval in [(0, 1), (1, 1), (10, 1), (10, 3), (9, 3), (7, 2), (5, 8)]:
        e = Every(interval)
        assert e.rounds_until(steps) == math.ceil(steps / interval)
        assert e.rounds_until(steps) == sum(e.communicates(t) for t in range(steps))
    with pytest.raises(ValueError):
        Every(0)
