"""Logistic regression with the nonconvex regulariser, and the quadratic problem
(spec: experiments.md §3.2, §3.3; problems/base.py protocol)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distclip import config, runner
from distclip.data.libsvm import load_dataset
from distclip.data.partition import partition
from distclip.rng import sample_indices

F64 = torch.float64
LAM = 0.1
N = 4


def build(features: str = "dense", clients: int = N, scheme: str = "sorted", dataset: str = "breast-cancer_scale",
          lam: float = LAM, x0: Any = 0.0, dtype: str = "float64") -> Any:
    doc = {
        "problem": {"kind": "logreg", "dataset": dataset, "lambda": lam, "features": features, "x0": x0},
        "partition": {"clients": clients, "scheme": scheme},
        "algorithm": {"name": "gd", "lr": "1/L"},
        "run": {"dtype": dtype},
    }
    return runner.build_problem(config.from_dict(doc))


def shards(clients: int = N, scheme: str = "sorted", dataset: str = "breast-cancer_scale") -> list[tuple[Any, Any]]:
    """(A_i dense float64 tensor, b_i) for each client, straight from the data files."""
    data = load_dataset(dataset, None)
    part = partition(data.labels, clients, scheme, 0)
    out = []
    for i in range(clients):
        rows = part.rows[i]
        out.append((torch.tensor(data.features[rows].toarray(), dtype=F64), torch.tensor(data.labels[rows], dtype=F64)))
    return out


def reference_loss(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, lam: float = LAM) -> torch.Tensor:
    """(1/m) Σ_j log(1 + exp(−b_j a_jᵀx)) + λ Σ_k x_k²/(1 + x_k²), written out independently."""
    return torch.log1p(torch.exp(-b * (a @ x))).mean() + lam * (x**2 / (1 + x**2)).sum()


def autograd(fn: Any, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x), x)
    return g


def point(d: int, seed: int = 0, scale: float = 0.5) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=F64) * scale


@pytest.fixture(scope="module")
def dense() -> Any:
    return build("dense")


@pytest.fixture(scope="module")
def sparse() -> Any:
    return build("sparse")


@pytest.fixture(scope="module")
def data_shards() -> list[tuple[Any, Any]]:
    return shards()


CLIENTS = torch.arange(N)


# -- gradients against autograd and against the raw data -----------------------------------------------------
@pytest.mark.parametrize("features", ["dense", "sparse"])
def test_client_grads_equal_autograd_of_client_losses(features: str, dense: Any, sparse: Any) -> None:
    prob = dense if features == "dense" else sparse
    assert prob.dense == (features == "dense")
    for seed in range(3):
        x = point(prob.dim, seed)
        g = prob.client_grads(x, CLIENTS, None)
        assert g.shape == (N, prob.dim) and g.dtype == F64
        for i in range(N):
            expected = autograd(lambda v, i=i: prob.client_losses(v, CLIENTS)[i], x)
            torch.testing.assert_close(g[i], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("features", ["dense", "sparse"])
def test_losses_and_grads_match_raw_data(features: str, dense: Any, sparse: Any, data_shards: Any) -> None:
    prob = dense if features == "dense" else sparse
    x = point(prob.dim, 5)
    losses = prob.client_losses(x, CLIENTS)
    grads = prob.client_grads(x, CLIENTS, None)
    for i, (a, b) in enumerate(data_shards):
        assert a.shape[0] == prob.rows_per_client()
        torch.testing.assert_close(losses[i], reference_loss(a, b, x), rtol=1e-13, atol=0.0)
        torch.testing.assert_close(grads[i], autograd(lambda v, a=a, b=b: reference_loss(a, b, v), x), rtol=1e-12,
                                   atol=1e-15)


def test_client_losses_at_zero_are_log2(dense: Any) -> None:
    torch.testing.assert_close(dense.client_losses(torch.zeros(dense.dim, dtype=F64), CLIENTS),
                               torch.full((N,), math.log(2.0), dtype=F64), rtol=1e-15, atol=0.0)


@pytest.mark.parametrize("features", ["dense", "sparse"])
def test_minibatch_grads_equal_grad_on_selected_rows(features: str, dense: Any, sparse: Any, data_shards: Any) -> None:
    prob = dense if features == "dense" else sparse
    x = point(prob.dim, 7)
    m = prob.rows_per_client()
    idx = sample_indices(11, np.arange(N), 4, 9, m)
    idx[0, :3] = [5, 5, 5]  # repeated rows count with their multiplicity
    g = prob.client_grads(x, CLIENTS, torch.from_numpy(idx))
    for i, (a, b) in enumerate(data_shards):
        rows = torch.from_numpy(idx[i])
        expected = autograd(lambda v, a=a[rows], b=b[rows]: reference_loss(a, b, v), x)
        torch.testing.assert_close(g[i], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("features", ["dense", "sparse"])
def test_stacked_points_one_per_client(features: str, dense: Any, sparse: Any) -> None:
    prob = dense if features == "dense" else sparse
    X = torch.stack([point(prob.dim, s) for s in range(N)])
    g = prob.client_grads(X, CLIENTS, None)
    for i in range(N):
        torch.testing.assert_close(g[i], prob.client_grads(X[i], CLIENTS, None)[i], rtol=1e-13, atol=1e-16)
    batch = torch.from_numpy(sample_indices(0, np.arange(N), 0, 6, prob.rows_per_client()))
    gb = prob.client_grads(X, CLIENTS, batch)
    for i in range(N):
        torch.testing.assert_close(gb[i], prob.client_grads(X[i], CLIENTS, batch)[i], rtol=1e-13, atol=1e-16)


# -- blocks of clients ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("features", ["dense", "sparse"])
def test_block_equals_per_client_loop(features: str, dense: Any, sparse: Any) -> None:
    prob = dense if features == "dense" else sparse
    x = point(prob.dim, 3)
    block = prob.client_grads(x, CLIENTS, None)
    losses = prob.client_losses(x, CLIENTS)
    for i in range(N):
        one = torch.tensor([i])
        torch.testing.assert_close(prob.client_grads(x, one, None)[0], block[i], rtol=1e-14, atol=1e-17)
        torch.testing.assert_close(prob.client_losses(x, one)[0], losses[i], rtol=1e-15, atol=0.0)
    # an arbitrary (non-contiguous, reordered) block
    pick = torch.tensor([3, 0, 2])
    torch.testing.assert_close(prob.client_grads(x, pick, None), block[pick], rtol=1e-14, atol=1e-17)
    torch.testing.assert_close(prob.client_losses(x, pick), losses[pick], rtol=1e-15, atol=0.0)
    # minibatches: the block and the loop see the same rows
    batch = torch.from_numpy(sample_indices(2, np.arange(N), 1, 5, prob.rows_per_client()))
    gb = prob.client_grads(x, CLIENTS, batch)
    for i in range(N):
        torch.testing.assert_close(prob.client_grads(x, torch.tensor([i]), batch[i:i + 1])[0], gb[i], rtol=1e-14,
                                   atol=1e-17)


@pytest.mark.parametrize("features", ["dense", "sparse"])
def test_full_grad_and_loss_are_client_means(features: str, dense: Any, sparse: Any) -> None:
    prob = dense if features == "dense" else sparse
    x = point(prob.dim, 9)
    torch.testing.assert_close(prob.grad(x), prob.client_grads(x, CLIENTS, None).mean(dim=0), rtol=1e-12,
                               atol=1e-16)
    assert prob.loss(x) == pytest.approx(float(prob.client_losses(x, CLIENTS).mean()), rel=1e-15)
    torch.testing.assert_close(prob.grad(x), autograd(lambda v: prob.client_losses(v, CLIENTS).mean(), x),
                               rtol=1e-12, atol=1e-16)


def test_sparse_equals_dense(dense: Any, sparse: Any) -> None:
    assert dense.dense and not sparse.dense
    assert dense.info()["features"] == "dense" and sparse.info()["features"] == "sparse"
    for seed in range(3):
        x = point(dense.dim, seed, scale=2.0)
        torch.testing.assert_close(sparse.client_grads(x, CLIENTS, None), dense.client_grads(x, CLIENTS, None),
                                   rtol=1e-13, atol=1e-16)
        torch.testing.assert_close(sparse.client_losses(x, CLIENTS), dense.client_losses(x, CLIENTS), rtol=1e-14,
                                   atol=0.0)
        torch.testing.assert_close(sparse.grad(x), dense.grad(x), rtol=1e-13, atol=1e-16)
        assert sparse.loss(x) == pytest.approx(dense.loss(x), rel=1e-14)
        batch = torch.from_numpy(sample_indices(seed, np.arange(N), 0, 7, dense.rows_per_client()))
        torch.testing.assert_close(sparse.client_grads(x, CLIENTS, batch), dense.client_grads(x, CLIENTS, batch),
                                   rtol=1e-13, atol=1e-16)
    assert sparse.smoothness() == pytest.approx(dense.smoothness(), rel=1e-12)


# -- constants, labels, stability -------------------------------------------------------------------------------
def test_smoothness_formula_breast_cancer(dense: Any, data_shards: Any) -> None:
    a = torch.cat([s[0] for s in data_shards]).numpy()
    expected = float(np.linalg.eigvalsh(a.T @ a)[-1]) / (4 * a.shape[0]) + 2 * LAM
    assert dense.smoothness() == pytest.approx(expected, rel=1e-12)
    assert build("dense", lam=0.0).smoothness() == pytest.approx(expected - 2 * LAM, rel=1e-12)


def test_a9a_reference_constants() -> None:
    """experiments.md §3.3/target 4: a9a, N = 20, sorted, λ = 0.1, x^0 = 0: L ≈ 1.772, ‖∇f(x^0)‖² ≈ 0.454."""
    prob = build("auto", clients=20, dataset="a9a")
    assert prob.dim == 123 and prob.rows_per_client() == 32561 // 20
    assert prob.info()["rows_dropped"] == 1
    assert prob.smoothness() == pytest.approx(1.772, abs=5e-4)
    g = prob.grad(prob.x0())
    assert float(g @ g) == pytest.approx(0.454, abs=5e-4)


def test_labels_are_plus_minus_one(dense: Any) -> None:
    assert set(torch.unique(dense.b).tolist()) == {-1.0, 1.0}
    data = load_dataset("breast-cancer_scale", None)
    assert set(np.unique(data.labels).tolist()) == {-1.0, 1.0}
    # sorted partition: -1 labels first
    flat = dense.b.reshape(-1)
    assert bool((flat[1:] >= flat[:-1]).all())


@pytest.mark.parametrize("features", ["dense", "sparse"])
@pytest.mark.parametrize("scale", [1e3, 1e8, 1e100])
def test_softplus_stable_for_huge_margins(features: str, scale: float, dense: Any, sparse: Any,
                                          data_shards: Any) -> None:
    prob = dense if features == "dense" else sparse
    x = torch.ones(prob.dim, dtype=F64) * scale
    x[::2] *= -1
    losses = prob.client_losses(x, CLIENTS)
    grads = prob.client_grads(x, CLIENTS, None)
    assert bool(torch.isfinite(losses).all()) and bool(torch.isfinite(grads).all())
    assert bool(torch.isfinite(prob.grad(x)).all()) and math.isfinite(prob.loss(x))
    for i, (a, b) in enumerate(data_shards):
        z = (-b * (a @ x)).numpy()
        expected = float(np.logaddexp(0.0, z).mean()) + LAM * float((x**2 / (1 + x**2)).sum())
        if math.isfinite(expected):
            assert float(losses[i]) == pytest.approx(expected, rel=1e-12)
        # each data-term weight is −b·σ(−b z) ∈ [−1, 1]: the gradient is bounded by the mean row norm
        bound = float(torch.linalg.vector_norm(a, dim=1).mean()) + 2 * LAM
        assert float(torch.linalg.vector_norm(grads[i])) <= bound * (1 + 1e-12)


def test_regulariser_finite_for_overflowing_coordinates(dense: Any) -> None:
    x = torch.zeros(dense.dim, dtype=F64)
    x[0] = 1e300
    assert math.isfinite(dense.loss(x))


def test_dtype_float32() -> None:
    prob = build("dense", dtype="float32")
    x = torch.zeros(prob.dim, dtype=torch.float32)
    assert prob.client_grads(x, CLIENTS, None).dtype == torch.float32
    assert prob.x0().dtype == torch.float32


def test_x0_is_a_copy(dense: Any) -> None:
    x = dense.x0()
    x += 1.0
    assert float(dense.x0().abs().sum()) == 0.0
    assert build("dense", x0=[0.5] * 10).x0().tolist() == [0.5] * 10


def test_lambda_zero_is_convex_logistic(data_shards: Any) -> None:
    prob = build("dense", lam=0.0)
    x = point(prob.dim, 1)
    a, b = data_shards[0]
    torch.testing.assert_close(prob.client_losses(x, CLIENTS)[0], F.softplus(-b * (a @ x)).mean(), rtol=1e-14,
                               atol=0.0)


# -- quadratic ----------------------------------------------------------------------------------------------------
def quadratic() -> Any:
    doc = {"problem": {"kind": "quadratic", "centres": [[1.0, 2.0], [-2.0, 0.5], [3.0, -1.0]],
                       "curvatures": [1.0, 2.0, 0.5], "x0": [0.5, -0.5]},
           "algorithm": {"name": "gd", "lr": 0.1}}
    return runner.build_problem(config.from_dict(doc))


def test_quadratic_basics() -> None:
    q = quadratic()
    assert (q.n_clients, q.dim) == (3, 2)
    assert q.x0().tolist() == [0.5, -0.5]
    x = torch.tensor([0.5, -0.5], dtype=F64)
    clients = torch.arange(3)
    g = q.client_grads(x, clients, None)
    assert g.tolist() == [[-0.5, -2.5], [5.0, -2.0], [-1.25, 0.25]]
    # f_i = ½ c_i ‖x − a_i‖²: ½·6.5, ½·2·7.25, ½·0.5·6.5
    torch.testing.assert_close(q.client_losses(x, clients), torch.tensor([3.25, 7.25, 1.625], dtype=F64))
    assert q.loss(x) == pytest.approx((3.25 + 7.25 + 1.625) / 3, rel=1e-15)
    torch.testing.assert_close(q.grad(x), torch.tensor([3.25 / 3, -4.25 / 3], dtype=F64))
    assert q.smoothness() == pytest.approx(3.5 / 3, rel=1e-15)
    assert q.rows_per_client() == 0
    assert q.targets().tolist() == [[1.0, 2.0], [-2.0, 0.5], [3.0, -1.0]]
    minimiser = [(1.0 - 4.0 + 1.5) / 3.5, (2.0 + 1.0 - 0.5) / 3.5]
    assert q.info()["minimiser"] == pytest.approx(minimiser, rel=1e-15)
    assert float(torch.linalg.vector_norm(q.grad(torch.tensor(minimiser, dtype=F64)))) < 1e-15
    # stacked points, one per client, and autograd
    X = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -2.0]], dtype=F64)
    assert q.client_grads(X, clients, None).tolist() == [[-1.0, -2.0], [6.0, 1.0], [-0.5, -0.5]]
    torch.testing.assert_close(q.grad(x), autograd(lambda v: q.client_losses(v, clients).mean(), x))


def test_quadratic_one_dimensional_default_curvature() -> None:
    doc = {"problem": {"kind": "quadratic", "centres": [3.0, -3.0], "x0": 1.0}, "algorithm": {"name": "gd", "lr": 0.5}}
    q = runner.build_problem(config.from_dict(doc))
    assert (q.n_clients, q.dim) == (2, 1)
    assert q.client_grads(q.x0(), torch.arange(2), None).tolist() == [[-2.0], [4.0]]
    assert q.loss(q.x0()) == pytest.approx(0.5 * (0.5 * 4 + 0.5 * 16), rel=1e-15)
    assert q.smoothness() == 1.0


def test_synthetic_rows_for_many_clients() -> None:
    """problem.rows: seeded i.i.d. Gaussian rows with ±1 labels of a linear model, split like any dataset."""
    doc = {"seed": 4, "problem": {"kind": "logreg", "rows": 60, "n_features": 5, "lambda": 0.0},
           "partition": {"clients": 30, "scheme": "iid"}, "algorithm": {"name": "gd", "lr": 0.5}}
    p = runner.build_problem(config.from_dict(doc))
    again = runner.build_problem(config.from_dict(doc))
    assert (p.n_clients, p.m, p.dim) == (30, 2, 5)
    assert torch.equal(p.A, again.A) and torch.equal(p.b, again.b)
    assert set(p.b.flatten().tolist()) == {-1.0, 1.0}
    other = runner.build_problem(config.from_dict({**doc, "seed": 5}))
    assert not torch.equal(p.A, other.A)
    with pytest.raises(Exception, match="exactly one of problem.dataset"):
        config.from_dict({**doc, "problem": {**doc["problem"], "dataset": "a9a"}})
