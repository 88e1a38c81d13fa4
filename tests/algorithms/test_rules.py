"""Every algorithm's update rule against steps computed by hand (plain Python floats) on small
quadratics f_i(x) = ½ c_i ‖x − a_i‖² with unequal curvatures, in float64; plus communication counters
(spec: algorithms.md §2–§6, §10)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from rules_harness import A3, C3, F64, X0, Driver, quad_doc

from distclip import runner

# three clients in d = 3, built so that Top-1 meets ties: ∇f_1(x^0) = (2, −2, 1), ∇f_2(x^0) = (−1, −2, −2)
A3D = [[-1.5, 1.5, 0.0], [1.0, 0.5, 2.0], [2.5, 2.5, -1.0]]
X0D = [0.5, -0.5, 1.0]


# -- plain-Python reference arithmetic ---------------------------------------------------------------------
def grad(i: int, x: list[float], a: list[list[float]] = A3, c: list[float] = C3) -> list[float]:
    return [c[i] * (xj - aj) for xj, aj in zip(x, a[i], strict=True)]


def norm(v: list[float]) -> float:
    return math.sqrt(sum(t * t for t in v))


def clipv(v: list[float], tau: float) -> list[float]:
    n = norm(v)
    s = 1.0 if n <= tau else tau / n
    return [s * t for t in v]


def mean(vs: list[list[float]]) -> list[float]:
    return [sum(col) / len(vs) for col in zip(*vs, strict=True)]


def axpy(x: list[float], alpha: float, y: list[float]) -> list[float]:
    """x + alpha·y"""
    return [xi + alpha * yi for xi, yi in zip(x, y, strict=True)]


def sub(x: list[float], y: list[float]) -> list[float]:
    return axpy(x, -1.0, y)


def top_k(v: list[float], k: int) -> list[float]:
    keep = sorted(range(len(v)), key=lambda j: (-abs(v[j]), j))[:k]
    return [v[j] if j in keep else 0.0 for j in range(len(v))]


def close(actual: torch.Tensor, expected: Any, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=F64), rtol=rtol, atol=atol)


# -- GD --------------------------------------------------------------------------------------------------------
def test_gd_two_steps() -> None:
    d = Driver(quad_doc("gd", lr=0.4))
    # ∇f_i(x^0) = (−0.5, −2.5), (5, −2), (−1.25, 0.25); mean (3.25/3, −4.25/3); x^1 = x^0 − 0.4·mean = (1/15, 1/15)
    d.step()
    close(d.model(), [1.0 / 15.0, 1.0 / 15.0])
    x1 = [1.0 / 15.0, 1.0 / 15.0]
    x2 = axpy(x1, -0.4, mean([grad(i, x1) for i in range(3)]))
    d.step()
    close(d.model(), x2)


@pytest.mark.parametrize("nesterov", [False, True])
def test_gd_momentum_weight_decay(nesterov: bool) -> None:
    """torch.optim.SGD semantics on the server: d = ḡ + wd·x; buf = d at first use, then μ·buf + (1 − damp)·d;
    step along buf (or d + μ·buf with Nesterov)."""
    lr, mu, wd = 0.2, 0.9, 0.05
    damp = 0.0 if nesterov else 0.25
    d = Driver(quad_doc("gd", lr=lr, momentum=mu, weight_decay=wd, dampening=damp, nesterov=nesterov))
    x, buf = list(X0), None
    for _ in range(4):
        dd = axpy(mean([grad(i, x) for i in range(3)]), wd, x)
        buf = list(dd) if buf is None else axpy([mu * b for b in buf], 1 - damp, dd)
        direction = axpy(dd, mu, buf) if nesterov else buf
        x = axpy(x, -lr, direction)
        d.step()
        close(d.state.x, x)
        close(d.state.buf, buf)
    # first step by hand (no Nesterov): buf = ḡ + wd·x^0 = (3.25/3 + 0.025, −4.25/3 − 0.025)
    if not nesterov:
        d0 = Driver(quad_doc("gd", lr=lr, momentum=mu, weight_decay=wd, dampening=damp))
        d0.step()
        close(d0.state.buf, [3.25 / 3 + 0.025, -4.25 / 3 - 0.025])


# -- naive Clip-GD, client and server side ------------------------------------------------------------------
def test_clip_gd_client_side_step() -> None:
    d = Driver(quad_doc("clip-gd", lr=0.4, tau=2.0))
    # ‖∇f_1‖ = √6.5 and ‖∇f_2‖ = √29 exceed τ = 2; ‖∇f_3‖ = √1.625 does not
    c1 = [-0.5 * 2 / math.sqrt(6.5), -2.5 * 2 / math.sqrt(6.5)]
    c2 = [5.0 * 2 / math.sqrt(29.0), -2.0 * 2 / math.sqrt(29.0)]
    c3 = [-1.25, 0.25]
    x1 = [0.5 - 0.4 * (c1[0] + c2[0] + c3[0]) / 3, -0.5 - 0.4 * (c1[1] + c2[1] + c3[1]) / 3]
    d.step()
    close(d.model(), x1)
    assert d.info.clipped.tolist() == [True, True, False]
    x2 = axpy(x1, -0.4, mean([clipv(grad(i, x1), 2.0) for i in range(3)]))
    d.step()
    close(d.model(), x2)


def test_clip_gd_per_client_tau_step() -> None:
    d = Driver(quad_doc("clip-gd", lr=0.4, tau=[3.0, 1.0, 0.5]))
    x1 = axpy(X0, -0.4, mean([clipv(grad(i, X0), t) for i, t in enumerate([3.0, 1.0, 0.5])]))
    d.step()
    close(d.model(), x1)
    assert d.info.clipped.tolist() == [False, True, True]


@pytest.mark.parametrize("name", ["clip-gd", "naive-parallel-clip"])
def test_server_side_clip_step(name: str) -> None:
    extra = {"clip_at": "server"} if name == "clip-gd" else {}
    d = Driver(quad_doc(name, lr=0.4, tau=1.0, **extra))
    gbar = [3.25 / 3, -4.25 / 3]  # ‖ḡ‖ = √(3.25² + 4.25²)/3 ≈ 1.783 > τ = 1
    n = math.sqrt(3.25**2 + 4.25**2) / 3
    # clip-gd clips exactly (τ/‖ḡ‖); naive parallel SGDClip takes the official code's γ/(1e-10 + ‖ḡ‖), γ = ητ
    s1 = 0.4 / n if name == "clip-gd" else 0.4 * 1.0 / (1e-10 + n)
    x1 = [0.5 - s1 * gbar[0], -0.5 - s1 * gbar[1]]
    d.step()
    close(d.model(), x1)
    assert d.info.clipped.tolist() == [True, True, True]
    g1 = mean([grad(i, x1) for i in range(3)])
    x2 = axpy(x1, -0.4, clipv(g1, 1.0)) if name == "clip-gd" else axpy(x1, -min(0.4, 0.4 / (1e-10 + norm(g1))), g1)
    d.step()
    close(d.model(), x2)


@pytest.mark.parametrize(("name", "extra"), [("clip-gd", {}), ("clip-gd", {"clip_at": "server"}),
                                            ("naive-parallel-clip", {})])
def test_official_mode_only_adds_a_no_op_average(name: str, extra: dict[str, Any]) -> None:
    plain = Driver(quad_doc(name, lr=0.4, tau=1.0, **extra))
    official = Driver(quad_doc(name, lr=0.4, tau=1.0, official=True, **extra))
    for _ in range(5):
        plain.step()
        official.step()
        torch.testing.assert_close(official.model(), plain.model(), rtol=1e-14, atol=1e-15)
    assert official.counter["comm_rounds"] == 2 * plain.counter["comm_rounds"] == 10


# -- Clip21 --------------------------------------------------------------------------------------------------
def clip21_reference(init: str, lr: float, tau: float, steps: int) -> list[tuple[list[float], list[list[float]],
                                                                                   list[float]]]:
    """(x^k, v_i^k, v^k) for k = 0..steps."""
    x = list(X0)
    if init == "clip_grad":
        v = [clipv(grad(i, x), tau) for i in range(3)]
    elif init == "grad":
        v = [grad(i, x) for i in range(3)]
    else:
        v = [[0.0, 0.0] for _ in range(3)]
    agg = mean(v)
    out = [(x, v, agg)]
    for _ in range(steps):
        x = axpy(x, -lr, agg)
        c = [clipv(sub(grad(i, x), v[i]), tau) for i in range(3)]
        v = [axpy(v[i], 1.0, c[i]) for i in range(3)]
        agg = axpy(agg, 1.0, mean(c))
        out.append((x, v, agg))
    return out


@pytest.mark.parametrize("init", ["clip_grad", "grad", "zero"])
def test_clip21_first_steps_and_memories(init: str) -> None:
    lr, tau = 0.3, 1.5
    ref = clip21_reference(init, lr, tau, 3)
    d = Driver(quad_doc("clip21", lr=lr, tau=tau, init=init))
    for k in range(4):
        x, v, agg = ref[k]
        close(d.state.x, x)
        close(d.state.mem, v)
        close(d.state.agg, agg)
        close(d.state.agg, d.state.mem.mean(dim=0).tolist(), rtol=1e-12, atol=1e-14)  # invariant v = mean v_i
        if k < 3:
            d.step()


def test_clip21_init_values_by_hand() -> None:
    d = Driver(quad_doc("clip21", lr=0.3, tau=1.5, init="clip_grad"))
    s = 1.5 / math.sqrt(6.5)
    t = 1.5 / math.sqrt(29.0)
    close(d.state.mem, [[-0.5 * s, -2.5 * s], [5.0 * t, -2.0 * t], [-1.25, 0.25]])
    assert d.info.clipped.tolist() == [True, True, False]
    d = Driver(quad_doc("clip21", lr=0.3, tau=1.5, init="grad"))
    close(d.state.mem, [[-0.5, -2.5], [5.0, -2.0], [-1.25, 0.25]])
    d = Driver(quad_doc("clip21", lr=0.3, tau=1.5, init="zero"))
    close(d.state.mem, [[0.0, 0.0]] * 3)
    d.step()
    close(d.state.x, X0)  # zero init: x^1 = x^0
    close(d.state.mem, [[-0.5 * s, -2.5 * s], [5.0 * t, -2.0 * t], [-1.25, 0.25]])


def test_clip21_messages_bounded_by_tau() -> None:
    d = Driver(quad_doc("clip21", lr=0.3, tau=0.2, init="grad"))
    prev = d.state.mem.clone()
    for _ in range(10):
        d.step()
        msg = d.state.mem - prev
        assert float(torch.linalg.vector_norm(msg, dim=1).max()) <= 0.2 * (1 + 1e-12)
        prev = d.state.mem.clone()


# -- EF21 ------------------------------------------------------------------------------------------------------
def grad3(i: int, x: list[float]) -> list[float]:
    return grad(i, x, A3D, C3)


def test_ef21_top1_init_tie_to_lower_index() -> None:
    d = Driver(quad_doc("ef21", a=A3D, x0=X0D, lr=0.2, compressor="top-k", k=1))
    # ∇f_i(x^0) = (2, −2, 1), (−1, −2, −2), (−1, −1.5, 1)
    assert [grad3(i, X0D) for i in range(3)] == [[2.0, -2.0, 1.0], [-1.0, -2.0, -2.0], [-1.0, -1.5, 1.0]]
    close(d.state.mem, [[2.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, -1.5, 0.0]], rtol=0, atol=0)
    close(d.state.agg, [2.0 / 3.0, -3.5 / 3.0, 0.0])


@pytest.mark.parametrize("init", ["compressed_grad", "grad", "zero"])
def test_ef21_top1_steps(init: str) -> None:
    lr, k = 0.2, 1
    x = list(X0D)
    if init == "compressed_grad":
        g = [top_k(grad3(i, x), k) for i in range(3)]
    elif init == "grad":
        g = [grad3(i, x) for i in range(3)]
    else:
        g = [[0.0] * 3 for _ in range(3)]
    agg = mean(g)
    d = Driver(quad_doc("ef21", a=A3D, x0=X0D, lr=lr, compressor="top-k", k=k, init=init))
    for _ in range(4):
        x = axpy(x, -lr, agg)
        c = [top_k(sub(grad3(i, x), g[i]), k) for i in range(3)]
        g = [axpy(g[i], 1.0, c[i]) for i in range(3)]
        agg = axpy(agg, 1.0, mean(c))
        d.step()
        close(d.state.x, x)
        close(d.state.mem, g)
        close(d.state.agg, agg)
        # each message changed at most k coordinates of the memory
        assert all(sum(1 for v in ci if v != 0.0) <= k for ci in c)


def test_ef21_identity_step() -> None:
    d = Driver(quad_doc("ef21", lr=0.4, compressor="identity", init="grad"))
    close(d.state.mem, [grad(i, X0) for i in range(3)])
    d.step()
    x1 = [1.0 / 15.0, 1.0 / 15.0]
    close(d.state.x, x1)
    close(d.state.mem, [grad(i, x1) for i in range(3)])


# -- CELGC -----------------------------------------------------------------------------------------------------
def celgc_reference(lr: float, gamma: float, interval: int, option: str, steps: int, mu: float = 0.0,
                    wd: float = 0.0, damp: float = 0.0, baseline: bool = False,
                    a: list[list[float]] = A3, c: list[float] = C3, x0: list[float] = X0) -> list[dict[str, Any]]:
    """The official SGDClipGrad loop (spec §3.2) in plain Python; one record per step t."""
    n = len(a)
    X = [list(x0) for _ in range(n)]
    buf: list[list[float]] | None = None
    G = 0.0
    out = []
    for t in range(steps):
        comm = t % interval == 0
        if comm:
            xbar = mean(X)
            X = [list(xbar) for _ in range(n)]
        g = [grad(i, X[i], a, c) for i in range(n)]
        if comm and baseline:
            gbar = mean(g)
            g = [list(gbar) for _ in range(n)]
        elif comm and option != "local":
            G = norm(mean(g))
        d = [axpy(g[i], wd, X[i]) for i in range(n)]
        if mu > 0:
            buf = [list(di) for di in d] if buf is None else [axpy([mu * b for b in buf[i]], 1 - damp, d[i])
                                                               for i in range(n)]
            d = [list(b) for b in buf]
        steps_i, clipped = [], []
        for i in range(n):
            nrm = {"local": norm(g[i]), "max": max(norm(g[i]), G), "global_average": G}[option]
            coef = gamma / (1e-10 + nrm)
            steps_i.append(min(lr, coef))
            clipped.append(coef < lr)
        X = [axpy(X[i], -steps_i[i], d[i]) for i in range(n)]
        out.append({"X": [list(r) for r in X], "G": G, "buf": buf, "clipped": clipped})
    return out


@pytest.mark.parametrize("option", ["local", "max", "global_average"])
def test_celgc_interval_two_matches_hand_loop(option: str) -> None:
    lr, gamma = 0.4, 0.5
    ref = celgc_reference(lr, gamma, 2, option, 5)
    d = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2, option=option))
    for t in range(5):
        d.step()
        close(d.state.X, ref[t]["X"])
        close(d.state.G, ref[t]["G"])
        assert d.info.clipped.tolist() == ref[t]["clipped"]
    # the reference run clips some but not all client steps: the test sees both branches
    flags = [f for r in ref for f in r["clipped"]]
    assert any(flags) and (option == "max" or not all(flags))


def test_celgc_first_step_by_hand_local() -> None:
    lr, gamma = 0.4, 0.5
    d = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2))
    d.step()
    # client 1: ‖g‖ = √6.5, coef = 0.5/(1e-10+√6.5) < 0.4: the step has length γ = 0.5 exactly
    # client 3: ‖g‖ = √1.625, coef ≈ 0.392 < 0.4 as well; client 2: ‖g‖ = √29
    expected = []
    for i, g in enumerate([[-0.5, -2.5], [5.0, -2.0], [-1.25, 0.25]]):
        step = min(lr, gamma / (1e-10 + norm(g)))
        expected.append([X0[0] - step * g[0], X0[1] - step * g[1]])
        assert norm(sub(expected[i], X0)) <= gamma
    close(d.state.X, expected)


def test_celgc_global_norm_is_stale_between_communications() -> None:
    lr, gamma = 0.4, 0.5
    d = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2, option="global_average"))
    assert float(d.state.G) == 0.0
    d.step()  # t = 0: communicate, Ĝ = ‖mean_i ∇f_i(x^0)‖
    g0 = math.sqrt(3.25**2 + 4.25**2) / 3
    assert float(d.state.G) == pytest.approx(g0, rel=1e-14)
    X1 = d.state.X.tolist()
    d.step()  # t = 1: no communication, Ĝ reused although the local gradients changed
    assert float(d.state.G) == pytest.approx(g0, rel=1e-14)
    step = min(lr, gamma / (1e-10 + g0))  # the coefficient is global; the direction is each client's own gradient
    close(d.state.X, [axpy(X1[i], -step, grad(i, X1[i])) for i in range(3)])
    fresh = norm(mean([grad(i, X1[i]) for i in range(3)]))
    assert abs(fresh - g0) > 1e-3
    X2 = d.state.X.tolist()
    d.step()  # t = 2: average first, then a fresh Ĝ at the averaged point
    xbar = mean(X2)
    g2 = norm(mean([grad(i, xbar) for i in range(3)]))
    assert float(d.state.G) == pytest.approx(g2, rel=1e-13)
    step = min(lr, gamma / (1e-10 + g2))
    close(d.state.X, [axpy(xbar, -step, grad(i, xbar)) for i in range(3)])


def test_celgc_max_is_min_of_local_and_global_coefficients() -> None:
    lr, gamma = 0.4, 0.5
    # from the same point (step 0, same Ĝ), max never steps further than local or global_average
    d_max = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=3, option="max"))
    d_loc = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=3, option="local"))
    d_glob = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=3, option="global_average"))
    for dd in (d_max, d_loc, d_glob):
        dd.step()
    length = {k: torch.linalg.vector_norm(dd.state.X - torch.tensor(X0, dtype=F64), dim=1)
              for k, dd in (("max", d_max), ("local", d_loc), ("global", d_glob))}
    # coef_max = min(coef_local, coef_global) along the same direction: the max step is the shorter of the two
    torch.testing.assert_close(length["max"], torch.minimum(length["local"], length["global"]), rtol=1e-14, atol=0.0)
    assert not torch.equal(length["local"], length["global"])


def test_celgc_averaging_comes_first() -> None:
    lr, gamma = 0.3, 10.0  # no clipping: pure local GD with averaging
    d = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2))
    d.step(2)
    X2 = d.state.X.tolist()
    assert X2[0] != X2[1]  # local models drifted apart
    d.step()  # t = 2: x̄_2 first, gradients at x̄_2
    xbar = mean(X2)
    close(d.state.X, [axpy(xbar, -lr, grad(i, xbar)) for i in range(3)])
    assert d.model().tolist() == pytest.approx(mean(d.state.X.tolist()), rel=1e-15)


@pytest.mark.parametrize("option", ["local", "max"])
def test_celgc_baseline_replaces_gradient_at_communication_steps(option: str) -> None:
    lr, gamma = 0.4, 0.5
    ref = celgc_reference(lr, gamma, 2, option, 4, baseline=True)
    d = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2, baseline=True, option=option))
    for t in range(4):
        d.step()
        close(d.state.X, ref[t]["X"])
        assert float(d.state.G) == 0.0
    d1 = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2, baseline=True))
    d1.step()
    assert torch.equal(d1.state.X[0], d1.state.X[1]) and torch.equal(d1.state.X[1], d1.state.X[2])


@pytest.mark.parametrize("option", ["local", "max", "global_average"])
def test_celgc_momentum_and_weight_decay(option: str) -> None:
    lr, gamma, mu, wd, damp = 0.4, 0.3, 0.9, 0.05, 0.3
    ref = celgc_reference(lr, gamma, 2, option, 5, mu=mu, wd=wd, damp=damp)
    d = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2, option=option, momentum=mu, weight_decay=wd,
                        dampening=damp))
    for t in range(5):
        d.step()
        close(d.state.X, ref[t]["X"])
        close(d.state.buf, ref[t]["buf"])


def test_celgc_momentum_first_step_by_hand() -> None:
    """Clip coefficient from the RAW gradient norm, step along the momentum direction; buf = d at first use."""
    lr, gamma, mu, wd, damp = 0.4, 0.3, 0.9, 0.05, 0.3
    d = Driver(quad_doc("celgc", lr=lr, gamma=gamma, local_steps=2, momentum=mu, weight_decay=wd, dampening=damp))
    d.step()
    g = [[-0.5, -2.5], [5.0, -2.0], [-1.25, 0.25]]
    dirs = [axpy(gi, wd, X0) for gi in g]  # d = g + wd·x; buf = d (no (1 − dampening) at first use)
    close(d.state.buf, dirs)
    X1 = [axpy(X0, -min(lr, gamma / (1e-10 + norm(g[i]))), dirs[i]) for i in range(3)]
    close(d.state.X, X1)
    # the clipped step is NOT of length γ: its direction d ≠ g
    assert abs(norm(sub(X1[0], X0)) - gamma) > 1e-4
    # a coefficient from ‖d‖ would give a different point
    wrong = axpy(X0, -min(lr, gamma / (1e-10 + norm(dirs[0]))), dirs[0])
    assert max(abs(p - q) for p, q in zip(wrong, X1[0], strict=True)) > 1e-6
    d.step()  # t = 1: buf ← μ·buf + (1 − dampening)·d, coefficient from ‖g‖ at the local point
    g1 = [grad(i, X1[i]) for i in range(3)]
    d1 = [axpy(g1[i], wd, X1[i]) for i in range(3)]
    buf = [axpy([mu * b for b in dirs[i]], 1 - damp, d1[i]) for i in range(3)]
    close(d.state.buf, buf)
    close(d.state.X, [axpy(X1[i], -min(lr, gamma / (1e-10 + norm(g1[i]))), buf[i]) for i in range(3)])


def test_celgc_tau_resolves_gamma() -> None:
    d_tau = Driver(quad_doc("celgc", lr=0.4, tau=1.25, local_steps=2))
    d_gam = Driver(quad_doc("celgc", lr=0.4, gamma=0.5, local_steps=2))
    close(d_tau.ctx.hp.gamma, [0.5] * 3)
    d_tau.step(3)
    d_gam.step(3)
    torch.testing.assert_close(d_tau.state.X, d_gam.state.X, rtol=1e-15, atol=0.0)


# -- Local SGD -----------------------------------------------------------------------------------------------
def test_local_sgd_steps() -> None:
    lr = 0.3
    d = Driver(quad_doc("local-sgd", lr=lr, local_steps=3))
    X = [list(X0) for _ in range(3)]
    for t in range(7):
        if t % 3 == 0:
            xbar = mean(X)
            X = [list(xbar) for _ in range(3)]
        X = [axpy(X[i], -lr, grad(i, X[i])) for i in range(3)]
        d.step()
        close(d.state.X, X)
    close(d.model(), mean(X))


def test_local_sgd_momentum_kept_per_client() -> None:
    lr, mu = 0.2, 0.5
    ref = celgc_reference(lr, math.inf, 2, "local", 5, mu=mu)
    d = Driver(quad_doc("local-sgd", lr=lr, local_steps=2, momentum=mu))
    for t in range(5):
        d.step()
        close(d.state.X, ref[t]["X"])
        close(d.state.buf, ref[t]["buf"])  # buffers are per client and never averaged
    assert not torch.equal(d.state.buf[0], d.state.buf[1])


# -- Clip21-Avg ------------------------------------------------------------------------------------------------
def test_clip21_avg_steps() -> None:
    a = [[5.0, 0.0], [-1.0, 2.0]]
    d = Driver(quad_doc("clip21-avg", a=a, c=None, tau=1.0))
    close(d.state.agg, [0.0, 0.0])
    r5 = 1 / math.sqrt(5.0)
    d.step()
    close(d.state.mem, [[1.0, 0.0], [-r5, 2 * r5]])
    close(d.model(), [(1.0 - r5) / 2, r5])
    d.step()
    close(d.state.mem, [[2.0, 0.0], [-2 * r5, 4 * r5]])
    d.step()  # ‖a_2 − v_2‖ = √5 − 2 < 1: v_2 reaches a_2
    close(d.state.mem, [[3.0, 0.0], [-1.0, 2.0]])
    close(d.model(), [1.0, 1.0])
    close(d.state.x, X0)  # no model step: x stays at x^0


# -- communication counters (spec §10) ----------------------------------------------------------------------------
def counters(doc: dict[str, Any]) -> dict[str, int]:
    res = runner.run(doc)
    row = res.metrics[-1]
    return {k: row[k] for k in ("comm_rounds", "floats_up", "floats_down", "bytes_up", "bytes_down")}


def expect(rounds: int, up: int, down: int, up_bytes: int | None = None) -> dict[str, int]:
    return {"comm_rounds": rounds, "floats_up": up, "floats_down": down,
            "bytes_up": 8 * up if up_bytes is None else up_bytes, "bytes_down": 8 * down}


T = 7
D = 2


@pytest.mark.parametrize(
    ("name", "extra", "expected"),
    [
        ("gd", {"lr": 0.1}, expect(T, T * D, T * D)),
        ("clip-gd", {"lr": 0.1, "tau": 1.0}, expect(T, T * D, T * D)),
        ("clip-gd", {"lr": 0.1, "tau": 1.0, "clip_at": "server"}, expect(T, T * D, T * D)),
        ("clip-gd", {"lr": 0.1, "tau": 1.0, "official": True}, expect(2 * T, 2 * T * D, 2 * T * D)),
        ("naive-parallel-clip", {"lr": 0.1, "tau": 1.0}, expect(T, T * D, T * D)),
        ("naive-parallel-clip", {"lr": 0.1, "tau": 1.0, "official": True}, expect(2 * T, 2 * T * D, 2 * T * D)),
        ("clip21", {"lr": 0.1, "tau": 1.0}, expect(T + 1, (T + 1) * D, (T + 1) * D)),
        ("clip21", {"lr": 0.1, "tau": 1.0, "init": "grad"}, expect(T + 1, (T + 1) * D, (T + 1) * D)),
        ("clip21", {"lr": 0.1, "tau": 1.0, "init": "zero"}, expect(T, T * D, T * D)),
        ("ef21", {"lr": 0.1, "compressor": "identity", "init": "grad"}, expect(T + 1, (T + 1) * D, (T + 1) * D)),
        ("ef21", {"lr": 0.1, "compressor": "identity", "init": "zero"}, expect(T, T * D, T * D)),
        # ceil(7/2) = 4 rounds
        ("celgc", {"lr": 0.1, "gamma": 1.0, "local_steps": 2}, expect(4, 4 * D, 4 * D)),
        ("celgc", {"lr": 0.1, "gamma": 1.0, "local_steps": 2, "option": "max"}, expect(8, 8 * D, 8 * D)),
        ("celgc", {"lr": 0.1, "gamma": 1.0, "local_steps": 2, "option": "global_average"}, expect(8, 8 * D, 8 * D)),
        ("celgc", {"lr": 0.1, "gamma": 1.0, "local_steps": 2, "baseline": True}, expect(8, 8 * D, 8 * D)),
        ("celgc", {"lr": 0.1, "gamma": 1.0, "local_steps": 1, "baseline": True}, expect(2 * T, 2 * T * D, 2 * T * D)),
        ("celgc", {"lr": 0.1, "gamma": 1.0, "local_steps": 3}, expect(3, 3 * D, 3 * D)),
        ("local-sgd", {"lr": 0.1, "local_steps": 2}, expect(4, 4 * D, 4 * D)),
        ("local-sgd", {"lr": 0.1, "local_steps": 7}, expect(1, D, D)),
        ("clip21-avg", {"tau": 1.0}, expect(T, T * D, 0)),
    ],
)
def test_comm_counters(name: str, extra: dict[str, Any], expected: dict[str, int]) -> None:
    assert counters(quad_doc(name, steps=T, **extra)) == expected


@pytest.mark.parametrize(
    ("init", "expected"),
    [
        # d = 3, k = 1: k values + k int64 indices = 16 bytes per step; d floats down
        ("compressed_grad", expect(T + 1, T + 1, 3 * (T + 1), 16 * (T + 1))),
        ("grad", expect(T + 1, 3 + T, 3 * (T + 1), 8 * 3 + 16 * T)),
        ("zero", expect(T, T, 3 * T, 16 * T)),
    ],
)
def test_comm_counters_ef21_top_k(init: str, expected: dict[str, int]) -> None:
    doc = quad_doc("ef21", a=A3D, x0=X0D, steps=T, lr=0.1, compressor="top-k", k=1, init=init)
    assert counters(doc) == expected


def test_comm_counters_top_k_float32_bytes() -> None:
    doc = quad_doc("ef21", a=A3D, x0=X0D, steps=T, lr=0.1, compressor="top-k", k=2, init="zero")
    doc["run"]["dtype"] = "float32"
    c = counters(doc)
    assert c["floats_up"] == 2 * T and c["bytes_up"] == 2 * T * (4 + 8) and c["bytes_down"] == 3 * T * 4


def test_comm_counters_are_cumulative_per_logged_step() -> None:
    res = runner.run(quad_doc("celgc", steps=9, lr=0.1, gamma=1.0, local_steps=4))
    assert [r["comm_rounds"] for r in res.metrics] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert [r["step"] for r in res.metrics] == list(range(10))
