"""Clip21-SGD2M: the rule by hand, its reductions and the noise identity (spec: algorithms.md §8,
experiments.md §8 target 12)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from rules_harness import A3 as A
from rules_harness import C3 as C
from rules_harness import F64, X0, logreg_doc, quad_doc

from distclip import config, runner
from distclip.algorithms import ALGORITHMS
from distclip.clipping import clip
from distclip.engine.transport import InProcess
from distclip.privacy.noise import LOCAL, standard_normal


def quad(name: str, **alg: Any) -> dict[str, Any]:
    return quad_doc(name, **alg)


def logreg(name: str, batch: int = 0, **alg: Any) -> dict[str, Any]:
    return logreg_doc(name, batch, **alg)


def drive(doc: dict[str, Any], steps: int, shift: int = 0) -> tuple[list[Any], Any]:
    """States after init and after each of ``steps`` steps, and the context; ``shift`` offsets the minibatch draws."""
    cfg = config.from_dict(doc)
    problem = runner.build_problem(cfg)
    ctx, _ = runner.build_context(cfg, problem, InProcess(problem.n_clients))
    if shift:
        oracle = ctx.oracle
        ctx = dataclasses.replace(ctx, oracle=SimpleNamespace(grads=lambda x, draw: oracle.grads(x, draw + shift)))
    rules = ALGORITHMS[cfg.algorithm.name].rules
    state, _ = rules.init(ctx)
    states = [state]
    for t in range(steps):
        state, _ = rules.step(state, ctx, t)
        states.append(state)
    return states, ctx


def xs(states: list[Any]) -> torch.Tensor:
    return torch.stack([s.x for s in states])


def test_two_steps_by_hand() -> None:
    lr, tau, b1, b2 = 0.3, 1.0, 0.5, 0.25
    states, _ = drive(quad("clip21-sgd2m", lr=lr, tau=tau, beta1=b1, beta2=b2), 2)
    x, v, g_i, g = X0, [[0.0, 0.0]] * 3, [[0.0, 0.0]] * 3, [0.0, 0.0]
    for k in (1, 2):
        x = [xj - lr * gj for xj, gj in zip(x, g, strict=True)]
        grads = [[C[i] * (x[j] - A[i][j]) for j in range(2)] for i in range(3)]
        v = [[(1 - b1) * v[i][j] + b1 * grads[i][j] for j in range(2)] for i in range(3)]
        diff = [[v[i][j] - g_i[i][j] for j in range(2)] for i in range(3)]
        delta = [[e * min(1.0, tau / math.hypot(*row)) for e in row] for row in diff]
        g_i = [[g_i[i][j] + b2 * delta[i][j] for j in range(2)] for i in range(3)]
        g = [g[j] + b2 * sum(delta[i][j] for i in range(3)) / 3 for j in range(2)]
        s = states[k]
        for got, want in ((s.x, x), (s.v, v), (s.mem, g_i), (s.agg, g)):
            torch.testing.assert_close(got, torch.tensor(want, dtype=F64), rtol=1e-13, atol=1e-15)
    assert states[1].x.tolist() == X0  # g^0 = 0: the first step does not move


@pytest.mark.parametrize("batch", [0, 8])
def test_unit_betas_are_clip21_with_zero_init_bitwise(batch: int) -> None:
    a, _ = drive(logreg("clip21-sgd2m", batch, lr=0.5, tau=0.05, beta1=1.0, beta2=1.0), 25)
    b, _ = drive(logreg("clip21", batch, lr=0.5, tau=0.05, init="zero"), 25)
    assert torch.equal(xs(a), xs(b))
    assert torch.equal(a[-1].mem, b[-1].mem) and torch.equal(a[-1].agg, b[-1].agg)
    assert float((xs(a)[-1] - xs(a)[0]).abs().max()) > 1e-3


@pytest.mark.parametrize(("batch", "base"), [(0, "gd"), (8, "sgd")])
def test_infinite_tau_unit_betas_is_sgd_delayed_one_step(batch: int, base: str) -> None:
    """x^{k+1} = x^k of GD/SGD; SGD's k-th minibatch is drawn as draw k + 1 here (the gradient at x^{k+1})."""
    ours, _ = drive(logreg("clip21-sgd2m", batch, lr=0.5, tau=math.inf, beta1=1.0, beta2=1.0), 21)
    ref, _ = drive(logreg(base, batch, lr=0.5), 20, shift=1)
    assert torch.equal(ours[1].x, ours[0].x)
    torch.testing.assert_close(xs(ours)[1:], xs(ref), rtol=1e-10, atol=1e-13)


def test_momentum_changes_the_trajectory() -> None:
    a, _ = drive(logreg("clip21-sgd2m", 8, lr=0.5, tau=0.05), 10)  # defaults β1 = 0.1, β2 = 1
    b, _ = drive(logreg("clip21-sgd2m", 8, lr=0.5, tau=0.05, beta1=1.0), 10)
    assert not torch.allclose(xs(a), xs(b))


def test_noise_goes_to_the_server_only() -> None:
    """σ_ω > 0: g^t − mean_i g_i^t = (β2/N) Σ_{s≤t} Σ_i ω_i^s, and the client states are noiseless."""
    z, tau, b2, steps = 0.7, 0.05, 0.5, 12
    states, ctx = drive(logreg("clip21-sgd2m", 8, lr=0.5, tau=tau, beta2=b2, noise_multiplier=z), steps)
    n, d = 4, states[0].x.numel()
    total = torch.zeros(d, dtype=F64)
    for t in range(steps):
        total += standard_normal(3, LOCAL, range(n), t, d).sum(dim=0) * z * tau
        s = states[t + 1]
        torch.testing.assert_close(s.agg - s.mem.mean(dim=0), b2 / n * total, rtol=1e-9, atol=1e-12)
    # the client states follow the noiseless rule: g_i ← g_i + β2·clip_τ(v_i − g_i) from the logged v_i
    for t in range(steps):
        prev, s = states[t], states[t + 1]
        torch.testing.assert_close(s.mem, prev.mem + b2 * clip(s.v - prev.mem, tau).out, rtol=1e-12, atol=1e-15)
    assert float(total.norm()) > 0.1


def test_rejects_bad_betas_and_unclipped_noise() -> None:
    with pytest.raises(Exception, match="beta1 = 0.0 must be in"):
        config.from_dict(quad("clip21-sgd2m", lr=0.1, tau=1.0, beta1=0.0))
    with pytest.raises(Exception, match="finite algorithm.tau"):
        config.from_dict(quad("clip21-sgd2m", lr=0.1, tau=math.inf, noise_multiplier=1.0))
    with pytest.raises(Exception, match="init = 'grad'"):
        config.from_dict(quad("clip21", lr=0.1, tau=1.0, init="grad", noise_multiplier=1.0))
    with pytest.raises(Exception, match="clip_at = 'client'"):
        config.from_dict(quad("clip-gd", lr=0.1, tau=1.0, clip_at="server", noise_multiplier=1.0))
    with pytest.raises(Exception, match="beta1 does not apply to clip21"):
        config.from_dict(quad("clip21", lr=0.1, tau=1.0, beta1=0.5))


def test_comm_counters() -> None:
    res = runner.run({**quad("clip21-sgd2m", lr=0.1, tau=1.0, noise_multiplier=1.0), "run": {"steps": 7}})
    last = res.metrics[-1]
    assert (last["comm_rounds"], last["floats_up"], last["floats_down"]) == (7, 14, 14)
