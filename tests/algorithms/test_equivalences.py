"""Cross-method equivalences, degenerate cases and the toy reproduction targets
(spec: algorithms.md §2–§6, experiments.md §8 targets 1, 2, 5, 7, 13)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from distclip import config, runner
from distclip.algorithms import ALGORITHMS
from distclip.algorithms.descent import descend
from distclip.clipping import clip
from distclip.engine.transport import InProcess
from distclip.rng import sample_indices

F64 = torch.float64
TOY = [3.0, -3.0]  # Clip21 Example 1.1: f_{1,2} = ½(x ∓ 3)²


def make(doc: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    cfg = config.from_dict(doc)
    problem = runner.build_problem(cfg)
    ctx, _ = runner.build_context(cfg, problem, InProcess(problem.n_clients))
    return cfg, problem, ctx, ALGORITHMS[cfg.algorithm.name].rules


def trajectory(doc: dict[str, Any], steps: int) -> torch.Tensor:
    """The logged model x^0 .. x^steps, shape [steps + 1, d]."""
    _, _, ctx, rules = make(doc)
    state, _ = rules.init(ctx)
    xs = [rules.model(state, ctx).clone()]
    for t in range(steps):
        state, _ = rules.step(state, ctx, t)
        xs.append(rules.model(state, ctx).clone())
    return torch.stack(xs)


def logreg(name: str, clients: int = 4, batch: int = 0, **alg: Any) -> dict[str, Any]:
    return {
        "seed": 3,
        "problem": {"kind": "logreg", "dataset": "breast-cancer_scale", "lambda": 0.1},
        "partition": {"clients": clients, "scheme": "sorted"},
        "algorithm": {"name": name, **alg},
        "run": {"batch_size": batch},
    }


def quad(name: str, **alg: Any) -> dict[str, Any]:
    return {
        "problem": {"kind": "quadratic", "centres": [[1.0, 2.0], [-2.0, 0.5], [3.0, -1.0]],
                    "curvatures": [1.0, 2.0, 0.5], "x0": [0.5, -0.5]},
        "algorithm": {"name": name, **alg},
    }


def toy(name: str, steps: int, x0: float = 1.0, **alg: Any) -> dict[str, Any]:
    return {"problem": {"kind": "quadratic", "centres": TOY, "x0": x0}, "algorithm": {"name": name, **alg},
            "run": {"steps": steps}}


def assert_traj(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-10, atol: float = 1e-13) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


PROBLEMS = {"logreg": (logreg, "1/L"), "quadratic": (quad, 0.4)}


# -- Clip21 / EF21 reduce to GD -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(PROBLEMS))
@pytest.mark.parametrize("init", ["clip_grad", "grad"])
def test_clip21_infinite_tau_is_gd(kind: str, init: str) -> None:
    doc, lr = PROBLEMS[kind]
    gd = trajectory(doc("gd", lr=lr), 30)
    c21 = trajectory(doc("clip21", lr=lr, tau=math.inf, init=init), 30)
    assert_traj(c21, gd)
    assert float((gd[-1] - gd[0]).abs().max()) > 1e-2  # the runs moved


@pytest.mark.parametrize("kind", list(PROBLEMS))
def test_clip21_zero_init_infinite_tau_is_gd_delayed(kind: str) -> None:
    doc, lr = PROBLEMS[kind]
    gd = trajectory(doc("gd", lr=lr), 20)
    c21 = trajectory(doc("clip21", lr=lr, tau=math.inf, init="zero"), 21)
    assert torch.equal(c21[1], c21[0])
    assert_traj(c21[1:], gd)


@pytest.mark.parametrize("kind", list(PROBLEMS))
@pytest.mark.parametrize("init", ["compressed_grad", "grad"])
def test_ef21_identity_is_gd(kind: str, init: str) -> None:
    doc, lr = PROBLEMS[kind]
    gd = trajectory(doc("gd", lr=lr), 30)
    ef = trajectory(doc("ef21", lr=lr, compressor="identity", init=init), 30)
    assert_traj(ef, gd)


@pytest.mark.parametrize("kind", list(PROBLEMS))
def test_ef21_identity_zero_init_is_gd_delayed(kind: str) -> None:
    doc, lr = PROBLEMS[kind]
    gd = trajectory(doc("gd", lr=lr), 20)
    ef = trajectory(doc("ef21", lr=lr, compressor="identity", init="zero"), 21)
    assert torch.equal(ef[1], ef[0])
    assert_traj(ef[1:], gd)


def test_ef21_top_k_with_k_equal_d_is_gd() -> None:
    gd = trajectory(quad("gd", lr=0.4), 15)
    ef = trajectory(quad("ef21", lr=0.4, compressor="top-k", k=2, init="grad"), 15)
    assert_traj(ef, gd)


# -- CELGC degenerate cases ---------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [0, 8])
def test_celgc_single_client_interval_one_is_sgdclip_bitwise(batch: int) -> None:
    eta, gamma, steps = 0.5, 0.05, 40
    doc = logreg("celgc", clients=1, batch=batch, lr=eta, gamma=gamma)
    cfg, problem, ctx, rules = make(doc)
    state, _ = rules.init(ctx)
    x = problem.x0()
    client = torch.tensor([0])
    clipped_steps = 0
    for t in range(steps):
        rows = None
        if batch:
            rows = torch.from_numpy(sample_indices(cfg.seed, np.array([0]), t, batch, problem.rows_per_client()))
        g = problem.client_grads(x.unsqueeze(0), client, rows)[0]
        # x ← x − min(η, γ/(1e-10 + ‖g‖))·g with the scalar arithmetic in Python floats (correctly rounded;
        # note that torch evaluates `float / tensor` as float · reciprocal(tensor), which is not); the step itself
        # goes through the one update every rule uses (descend: fused, rounded once)
        coef = gamma / (1e-10 + float(torch.linalg.vector_norm(g)))
        clipped_steps += coef < eta
        x = descend(x, min(eta, coef), g)
        state, _ = rules.step(state, ctx, t)
        assert torch.equal(rules.model(state, ctx), x), f"step {t}"
    assert 0 < clipped_steps  # the clipping branch is exercised
    if batch == 0:
        assert clipped_steps < steps


# CELGC keeps the official code's γ/(1e-10 + ‖g‖) (spec §1 notes), Clip-SGD computes τ/‖g‖ exactly: the two
# coefficients differ by the relative amount 1e-10/‖g‖. On logistic regression ‖g‖ drops to ~1e-2, so the
# trajectories agree to ~1e-8 relative there; with gradients of norm >= 1000 (the big quadratic) to 1e-12.
EPS_RTOL = 1e-7
BIG = {"kind": "quadratic", "centres": [[1000.0, 2000.0], [-2000.0, 500.0], [3000.0, -1000.0]],
       "curvatures": [1.0, 2.0, 0.5], "x0": [0.5, -0.5]}


def big(name: str, **alg: Any) -> dict[str, Any]:
    return {"problem": dict(BIG), "algorithm": {"name": name, **alg}}


@pytest.mark.parametrize("clients", [1, 4])
def test_celgc_interval_one_local_is_clip_sgd(clients: int) -> None:
    eta, gamma = 0.5, 0.05
    celgc = trajectory(logreg("celgc", clients=clients, batch=8, lr=eta, gamma=gamma), 30)
    csgd = trajectory(logreg("clip-sgd", clients=clients, batch=8, lr=eta, tau=gamma / eta), 30)
    assert_traj(celgc, csgd, rtol=EPS_RTOL, atol=1e-10)


def test_celgc_interval_one_tau_form_is_clip_sgd() -> None:
    celgc = trajectory(logreg("celgc", batch=8, lr=0.5, tau=0.1), 20)
    csgd = trajectory(logreg("clip-sgd", batch=8, lr=0.5, tau=0.1), 20)
    assert_traj(celgc, csgd, rtol=EPS_RTOL, atol=1e-10)


def test_celgc_interval_one_local_is_clip_gd_large_gradients() -> None:
    eta, gamma = 0.4, 5.0
    celgc = trajectory(big("celgc", lr=eta, gamma=gamma), 20)
    cgd = trajectory(big("clip-gd", lr=eta, tau=gamma / eta), 20)
    assert_traj(celgc, cgd, rtol=1e-12, atol=1e-12)
    assert float((celgc[-1] - celgc[0]).abs().max()) > 10.0


@pytest.mark.parametrize("batch", [0, 8])
def test_celgc_baseline_interval_one_is_naive_parallel_clip(batch: int) -> None:
    eta, gamma = 0.5, 0.02
    doc = logreg("celgc", batch=batch, lr=eta, gamma=gamma, baseline=True)
    _, _, ctx, rules = make(doc)
    state, _ = rules.init(ctx)
    naive = trajectory(logreg("naive-parallel-clip", batch=batch, lr=eta, tau=gamma / eta), 25)
    for t in range(25):
        state, _ = rules.step(state, ctx, t)
        X = state.X
        assert all(torch.equal(X[0], X[i]) for i in range(1, X.shape[0]))  # replicas stay identical
        torch.testing.assert_close(rules.model(state, ctx), naive[t + 1], rtol=EPS_RTOL, atol=1e-10)


@pytest.mark.parametrize("batch", [0, 8])
def test_celgc_baseline_is_official_naive_parallel_clip_bit_for_bit(batch: int) -> None:
    """Both compute the official code's coefficient γ/(1e-10 + ‖ḡ‖) from the same replicas (docs/algorithms.md §1)."""
    eta, gamma = 0.5, 0.02
    _, _, ctx, rules = make(logreg("celgc", batch=batch, lr=eta, gamma=gamma, baseline=True))
    _, _, nctx, nrules = make(logreg("naive-parallel-clip", batch=batch, lr=eta, tau=gamma / eta, official=True))
    state, nstate = rules.init(ctx)[0], nrules.init(nctx)[0]
    clipped = 0
    for t in range(25):
        state, info = rules.step(state, ctx, t)
        nstate, ninfo = nrules.step(nstate, nctx, t)
        assert torch.equal(state.X[0], nstate.x), t
        assert torch.equal(info.clipped, ninfo.clipped), t
        clipped += int(info.clipped.any())
    assert clipped > 0  # the clip was active
    assert ctx.transport.counter == nctx.transport.counter


def test_celgc_baseline_interval_one_is_naive_parallel_clip_large_gradients() -> None:
    celgc = trajectory(big("celgc", lr=0.4, gamma=5.0, baseline=True), 20)
    naive = trajectory(big("naive-parallel-clip", lr=0.4, tau=12.5), 20)
    assert_traj(celgc, naive, rtol=1e-12, atol=1e-12)


def test_local_sgd_interval_one_is_sgd() -> None:
    loc = trajectory(logreg("local-sgd", batch=8, lr=0.5, local_steps=1), 30)
    sgd = trajectory(logreg("sgd", batch=8, lr=0.5), 30)
    assert_traj(loc, sgd, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("extra", [{}, {"momentum": 0.9, "weight_decay": 0.01}])
def test_celgc_infinite_gamma_is_local_sgd(extra: dict[str, Any]) -> None:
    celgc = trajectory(logreg("celgc", batch=8, lr=0.5, gamma=math.inf, local_steps=3, **extra), 20)
    loc = trajectory(logreg("local-sgd", batch=8, lr=0.5, local_steps=3, **extra), 20)
    assert torch.equal(celgc, loc)


def test_naive_parallel_clip_infinite_tau_is_sgd() -> None:
    naive = trajectory(logreg("naive-parallel-clip", batch=8, lr=0.5, tau=math.inf), 20)
    sgd = trajectory(logreg("sgd", batch=8, lr=0.5), 20)
    assert_traj(naive, sgd, rtol=1e-12, atol=1e-12)


def test_clip_gd_infinite_tau_is_gd() -> None:
    cgd = trajectory(quad("clip-gd", lr=0.4, tau=math.inf), 20)
    gd = trajectory(quad("gd", lr=0.4), 20)
    assert_traj(cgd, gd, rtol=1e-14, atol=1e-15)


# -- Clip21-Avg (target 2) --------------------------------------------------------------------------------------
def test_clip21_avg_exact_mean() -> None:
    a = [[5.0, 0.0], [-1.0, 2.0]]
    doc = {"problem": {"kind": "quadratic", "centres": a}, "algorithm": {"name": "clip21-avg", "tau": 1.0}}
    est = trajectory(doc, 8)
    naive = clip(torch.tensor(a, dtype=F64), 1.0).out.mean(dim=0)
    torch.testing.assert_close(naive, torch.tensor([0.2764, 0.4472], dtype=F64), rtol=0, atol=5e-5)
    torch.testing.assert_close(est[1], naive, rtol=0, atol=1e-15)  # the first estimate is the naive mean
    torch.testing.assert_close(est[3], torch.tensor([1.0, 1.0], dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(est[4], torch.tensor([1.5, 1.0], dtype=F64), rtol=0, atol=1e-12)
    for k in range(5, 9):
        torch.testing.assert_close(est[k], torch.tensor([2.0, 1.0], dtype=F64), rtol=0, atol=1e-12)
    assert float((est[4] - torch.tensor([2.0, 1.0], dtype=F64)).abs().max()) > 0.1  # not exact before k⋆ = 5
    res = runner.run(dict(doc, run={"steps": 8}))
    # client 1 sends clipped messages at k = 1..4 (‖a_1 − v_1‖ = 5, 4, 3, 2) and an exact one (norm 1 = τ) at k = 5;
    # client 2 is clipped at k = 1, 2 (√5, √5 − 1) and done at k = 3
    assert res.summary["last_clip_step"] == 4
    assert [r["clip_frac"] for r in res.metrics] == [0.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    assert res.metrics[-1]["floats_down"] == 0


# -- Example 1.1 (target 1) -------------------------------------------------------------------------------------
def test_toy_clip_gd_stalls_exactly() -> None:
    res = runner.run(toy("clip-gd", 1000, lr=0.5, tau=1.0))
    assert len(res.metrics) == 1001
    assert all(r["grad_norm_sq"] == 1.0 for r in res.metrics)  # f'(x) = x = 1 at every step
    assert res.model.tolist() == [1.0]
    assert trajectory(toy("clip-gd", 50, lr=0.5, tau=1.0), 50).flatten().tolist() == [1.0] * 51


@pytest.mark.parametrize("init", ["clip_grad", "zero"])
def test_toy_clip21_converges(init: str) -> None:
    res = runner.run(toy("clip21", 50, lr=0.5, tau=1.0, init=init))
    x = [math.sqrt(r["grad_norm_sq"]) for r in res.metrics]  # f'(x) = x
    assert x[20] < 2e-5
    assert x[50] < 1e-12
    assert 0 <= res.summary["last_clip_step"] <= 5
    assert all(r["clip_frac"] == 0.0 for r in res.metrics[6:])
    traj = trajectory(toy("clip21", 50, lr=0.5, tau=1.0, init=init), 50).flatten()
    assert abs(float(traj[20])) < 2e-5 and abs(float(traj[50])) < 1e-12
    # after clipping switches off, the error halves each step (x ← x − 0.5x)
    for k in range(10, 40):
        assert float(traj[k + 1]) == pytest.approx(0.5 * float(traj[k]), rel=1e-6)


def test_toy_clip21_reference_values() -> None:
    """experiments.md target 1: |x^20| ≈ 5.7e-6, |x^50| ≈ 5.3e-15 (clip_grad); zero init lags one step."""
    cg = trajectory(toy("clip21", 50, lr=0.5, tau=1.0), 50).flatten().abs()
    zr = trajectory(toy("clip21", 50, lr=0.5, tau=1.0, init="zero"), 50).flatten().abs()
    assert float(cg[20]) == pytest.approx(5.7e-6, rel=0.02)
    assert float(cg[50]) == pytest.approx(5.3e-15, rel=0.02)
    assert float(zr[20]) == pytest.approx(1.1e-5, rel=0.05)
    assert float(zr[50]) == pytest.approx(1.1e-14, rel=0.05)


def test_toy_per_client_tau_converges_to_minus_two() -> None:
    traj = trajectory(toy("clip-gd", 100, lr=0.5, tau=[1.0, 2.0]), 100).flatten()
    assert abs(float(traj[100]) + 2.0) < 1e-10


def test_toy_soft_clip_converges_slowly() -> None:
    res = runner.run(toy("clip-gd", 1000, lr=0.5, tau=1.0, clip="soft"))
    x = [math.sqrt(r["grad_norm_sq"]) for r in res.metrics]
    assert x[200] == pytest.approx(1.7e-3, rel=0.03)
    assert x[1000] < 1e-13


def test_toy_server_clip_converges() -> None:
    traj = trajectory(toy("clip-gd", 10, lr=0.5, tau=1.0, clip_at="server"), 10).flatten()
    assert abs(float(traj[10])) == pytest.approx(9.8e-4, rel=0.01)
    assert abs(float(traj[10])) == 2.0**-10  # x^1 = 0.5, then exact halving


# -- Lemma 1 (target 7) -----------------------------------------------------------------------------------------
def lemma1_check(doc: dict[str, Any], steps: int) -> tuple[float, float]:
    """Run CELGC's rules; return (max_t,i ‖x̄_t − x_t^i‖ / 2γI, max local step / γ)."""
    _, _, ctx, rules = make(doc)
    gamma = float(ctx.hp.gamma.max())
    interval = ctx.hp.local_steps
    state, _ = rules.init(ctx)
    worst_drift, worst_step = 0.0, 0.0
    for t in range(steps):
        X = state.X
        start = X.mean(dim=0).expand_as(X) if t % interval == 0 else X
        state, _ = rules.step(state, ctx, t)
        step_len = torch.linalg.vector_norm(state.X - start, dim=1)
        drift = torch.linalg.vector_norm(state.X - state.X.mean(dim=0), dim=1)
        worst_step = max(worst_step, float(step_len.max()) / gamma)
        worst_drift = max(worst_drift, float(drift.max()) / (2 * gamma * interval))
    return worst_drift, worst_step


def random_quadratic_celgc(seed: int, option: str) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(2, 6)), int(rng.integers(1, 5))
    interval = int(rng.choice([1, 2, 4, 8]))
    eta = float(rng.choice([0.05, 0.3, 1.0]))
    gamma = float(rng.choice([0.01, 0.1, 0.5]))
    return {
        "problem": {"kind": "quadratic", "centres": (rng.normal(size=(n, d)) * 5).tolist(),
                    "curvatures": rng.uniform(0.2, 3.0, size=n).tolist(), "x0": rng.normal(size=d).tolist()},
        "algorithm": {"name": "celgc", "lr": eta, "gamma": gamma, "local_steps": interval, "option": option},
    }


@pytest.mark.parametrize("option", ["local", "max"])
@pytest.mark.parametrize("seed", range(10))
def test_lemma1_on_random_quadratics(seed: int, option: str) -> None:
    drift, step = lemma1_check(random_quadratic_celgc(seed, option), 40)
    assert step <= 1.0 + 1e-12
    assert drift <= 1.0 + 1e-12


def test_global_average_steps_are_not_bounded_by_gamma() -> None:
    """Under global_average the coefficient γ/Ĝ multiplies each client's OWN gradient (spec §3.2), so a client
    whose gradient is longer than the average one steps further than γ: the per-step bound is for local/max."""
    doc = quad("celgc", lr=1.0, gamma=0.1, local_steps=2, option="global_average")
    _, step = lemma1_check(doc, 4)
    assert step > 1.5


@pytest.mark.parametrize(("interval", "gamma"), [(4, 0.01), (8, 0.05)])
def test_lemma1_with_minibatch_noise(interval: int, gamma: float) -> None:
    doc = logreg("celgc", batch=2, lr=1.0, gamma=gamma, local_steps=interval)
    drift, step = lemma1_check(doc, 40)
    assert step <= 1.0 + 1e-12
    assert drift <= 1.0 + 1e-12
    assert drift > 0.0
