"""EPISODE (spec: algorithms.md §7; experiments.md §8 targets 6, 9, 13): steps against a plain-Python
reference on quadratics, the four derived checks, the resample's own minibatch stream, communication
counts, config checks, and the synthetic quartic of experiments.md §4."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from rules_harness import A3, C3, F64, X0, Driver, logreg_doc, quad_doc

from distclip import config, runner
from distclip.algorithms.episode import RESAMPLE_STREAM
from distclip.engine.transport import InProcess
from distclip.errors import DistclipError
from distclip.problems.quartic import ROWS


def quad(a: list[list[float]] = A3, c: list[float] = C3, x0: Any = X0, steps: int = 6, **alg: Any) -> dict[str, Any]:
    return quad_doc("episode", a, c, x0, steps, **alg)


def logreg(name: str, steps: int = 20, batch: int = 0, clients: int = 5, **alg: Any) -> dict[str, Any]:
    return logreg_doc(name, batch, clients, steps, seed=4, **alg)


def reference(a: list[list[float]], c: list[float], x0: list[float], eta: float, gamma: float, interval: int,
              steps: int, mu: float = 0.0, wd: float = 0.0, strict: bool = True) -> list[list[list[float]]]:
    """§7 in plain Python floats with full gradients of f_i = ½ c_i ‖x − a_i‖²: the local models after each step."""
    n = len(a)

    def g(i: int, x: list[float]) -> list[float]:
        return [c[i] * (xj - aj) for xj, aj in zip(x, a[i], strict=True)]

    xs, bufs, out = [list(x0) for _ in range(n)], [None] * n, []
    for t in range(steps):
        if t % interval == 0:
            xr = [sum(col) / n for col in zip(*xs, strict=True)]
            xs = [list(xr) for _ in range(n)]
            gi = [g(i, xr) for i in range(n)]
            gr = [sum(col) / n for col in zip(*gi, strict=True)]
            norm = math.sqrt(sum(v * v for v in gr))
            clipped = norm > gamma / eta if strict else norm >= gamma / eta
        for i in range(n):
            d = [gj + wd * xj for gj, xj in zip(g(i, xs[i]), xs[i], strict=True)]
            if mu:
                bufs[i] = d if bufs[i] is None else [mu * b + dj for b, dj in zip(bufs[i], d, strict=True)]
                d = bufs[i]
            d = [dj - gij + grj for dj, gij, grj in zip(d, gi[i], gr, strict=True)]
            nd = math.sqrt(sum(v * v for v in d))
            s = gamma / (1e-10 + nd) if clipped else eta  # the official code's coefficient
            xs[i] = [xj - s * dj for xj, dj in zip(xs[i], d, strict=True)]
        out.append([list(x) for x in xs])
    return out


def close(actual: torch.Tensor, expected: Any, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=F64), rtol=rtol, atol=atol)


# -- steps --------------------------------------------------------------------------------------------------------
def test_first_step_by_hand() -> None:
    """∇f_i(x^0) = (−0.5, −2.5), (5, −2), (−1.25, 0.25): G_0 = (3.25/3, −4.25/3), ‖G_0‖ = 1.7834 > γ/η = 1, so
    every client takes the normalised step x^0 − γ·G_0/(1e-10 + ‖G_0‖) (d = G_0 at x_i = x_0)."""
    d = Driver(quad(lr=0.2, gamma=0.2, local_steps=2))
    d.step()
    g0 = [3.25 / 3, -4.25 / 3]
    n = math.hypot(*g0)
    x1 = [0.5 - 0.2 * g0[0] / (1e-10 + n), -0.5 - 0.2 * g0[1] / (1e-10 + n)]
    close(d.state.X, [x1] * 3)
    close(d.state.G, g0)
    assert bool(d.state.clip) and d.info.clipped.tolist() == [True] * 3


@pytest.mark.parametrize(("eta", "gamma", "extra"), [
    (0.2, 0.2, {}),  # clipped rounds
    (0.2, 0.3, {}),  # clipped first, then not (threshold 1.5 < ‖G_0‖)
    (0.1, math.inf, {}),  # check 4: γ/η = ∞, never clipped, SCAFFOLD-like corrections
    (0.1, 0.15, {"momentum": 0.5, "weight_decay": 0.1}),  # momentum and weight decay before the correction
])
def test_steps_match_reference(eta: float, gamma: float, extra: dict[str, Any]) -> None:
    interval, steps = 3, 12
    d = Driver(quad(lr=eta, gamma=gamma, local_steps=interval, steps=steps, **extra))
    ref = reference(A3, C3, X0, eta, gamma, interval, steps, extra.get("momentum", 0.0), extra.get("weight_decay", 0.0))
    flags = []
    for k in range(steps):
        d.step()
        close(d.state.X, ref[k], rtol=1e-12, atol=1e-13)
        flags.append(bool(d.state.clip))
    if math.isinf(gamma):
        assert not any(flags)
    elif gamma == 0.3:
        assert flags[0] and not flags[-1]


@pytest.mark.parametrize("comparison", [">", ">="])
def test_comparison_at_the_threshold(comparison: str) -> None:
    """One client, f = ½(x + 2)², x^0 = 0: ‖G_0‖ = 2 = γ/η exactly. Only '>=' clips; the second step shows it
    (x^1 = −1 both ways, then −1.5 with the η-step or −2 with the γ-step)."""
    d = Driver(quad(a=[[-2.0]], c=[1.0], x0=0.0, lr=0.5, gamma=1.0, local_steps=2, comparison=comparison))
    d.step(2)
    assert bool(d.state.clip) == (comparison == ">=")
    if comparison == ">=":  # two γ-steps of length γ·‖d‖/(1e-10 + ‖d‖) towards −2 (the official coefficient)
        x1 = -2.0 / (1e-10 + 2.0)
        close(d.state.X, [[x1 - (x1 + 2.0) / (1e-10 + (x1 + 2.0))]])
    else:
        close(d.state.X, [[-1.5]])
    ref = reference([[-2.0]], [1.0], [0.0], 0.5, 1.0, 2, 2, strict=comparison == ">")
    close(d.state.X, ref[-1])


# -- derived checks (§7) and cross-method equivalences (experiments §8 target 13) ------------------------------
@pytest.mark.parametrize("gamma", [0.02, 0.1, 100.0])  # always, first half, never clipped
def test_full_gradients_interval_one_is_centralised_clipped_gd(gamma: float) -> None:
    """Check 1: x_{r+1} = x_r − min(η, γ/‖∇f(x_r)‖)·∇f(x_r) = naive parallel clip with full gradients, τ = γ/η."""
    eta = 1.0
    ep = runner.run(config.from_dict(logreg("episode", lr=eta, gamma=gamma)))
    naive = runner.run(config.from_dict(logreg("naive-parallel-clip", lr=eta, tau=gamma / eta)))
    torch.testing.assert_close(ep.model, naive.model, rtol=1e-11, atol=1e-13)
    for a, b in zip(ep.metrics, naive.metrics, strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-11) and a["clip_frac"] == b["clip_frac"]


@pytest.mark.parametrize("clipped", [False, True])
def test_identical_clients_full_gradients_is_local_gd_or_normalised_gd(clipped: bool) -> None:
    """Check 2: the correction vanishes; GD with step η, or normalised GD with step γ in clipped rounds."""
    a, c, x0, eta = [[3.0, -1.0]] * 3, [2.0] * 3, [0.0, 0.0], 0.05
    gamma = 0.01 if clipped else math.inf
    d = Driver(quad(a=a, c=c, x0=x0, lr=eta, gamma=gamma, local_steps=4, steps=12))
    x = list(x0)
    for _ in range(12):
        g = [2.0 * (xj - aj) for xj, aj in zip(x, a[0], strict=True)]
        s = gamma / (1e-10 + math.hypot(*g)) if clipped else eta
        x = [xj - s * gj for xj, gj in zip(x, g, strict=True)]
        d.step()
        close(d.state.X, [x] * 3)
        assert bool(d.state.clip) == clipped


def test_single_client_is_local_sgd_with_round_level_clipping() -> None:
    """Check 3: with N = 1, d = ĝ (the correction cancels): γ = ∞ gives Local SGD (here plain SGD), momentum and
    weight decay included, on the same minibatches."""
    alg = {"lr": 0.5, "local_steps": 3, "momentum": 0.9, "weight_decay": 1e-3}
    ep = runner.run(config.from_dict(logreg("episode", batch=8, clients=1, gamma=math.inf, **alg)))
    loc = runner.run(config.from_dict(logreg("local-sgd", batch=8, clients=1, **alg)))
    torch.testing.assert_close(ep.model, loc.model, rtol=1e-12, atol=1e-13)


def test_single_client_clipped_rounds_take_normalised_steps() -> None:
    """Check 3, clipped: x ← x − γ·ĝ/‖ĝ‖ in every step of a round whose resampled gradient is above γ/η."""
    d = Driver(logreg("episode", batch=8, clients=1, lr=1.0, gamma=0.01, local_steps=3))
    x = d.ctx.x0.clone()
    for t in range(6):
        g = d.ctx.oracle.grads(x.unsqueeze(0), t)[0]
        x = x - 0.01 * g / (1e-10 + torch.linalg.vector_norm(g))
        d.step()
        assert bool(d.state.clip)
        torch.testing.assert_close(d.state.X[0], x, rtol=1e-12, atol=1e-14)


# -- the resample ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("resample", "size"), [(None, 8 * 3), (5, 5), (0, 0)])
def test_resample_batch_and_its_own_stream(resample: int | None, size: int) -> None:
    """G_r^i is drawn at x_r on a fresh batch (default b·I; 0 = full gradient) from stream 1, never the local
    steps' minibatch of the same draw."""
    extra = {} if resample is None else {"resample_batch": resample}
    d = Driver(logreg("episode", batch=8, lr=0.5, gamma=0.05, local_steps=3, **extra))
    d.step()
    x0 = d.ctx.x0
    want = d.ctx.oracle.grads(x0, 0, batch_size=size, stream=RESAMPLE_STREAM)
    torch.testing.assert_close(d.state.Gi, want, rtol=0, atol=0)
    local = d.ctx.oracle.grads(x0, 0, batch_size=size)
    assert size == 0 or not torch.equal(d.state.Gi, local)


# -- communication (experiments §8 target 6) ---------------------------------------------------------------------
@pytest.mark.parametrize(("steps", "interval"), [(10, 4), (12, 3), (5, 1)])
def test_two_collectives_per_round(steps: int, interval: int) -> None:
    res = runner.run(config.from_dict(quad(lr=0.1, gamma=0.1, local_steps=interval, steps=steps)))
    rounds = math.ceil(steps / interval)
    final = res.metrics[-1]
    assert final["comm_rounds"] == 2 * rounds
    assert final["floats_up"] == final["floats_down"] == 2 * rounds * 2  # d = 2


def test_clip_frequency_is_the_round_indicator() -> None:
    """Every client reports c_r at every step, so clip_frac_mean is the fraction of clipped rounds."""
    res = runner.run(config.from_dict(quad(lr=0.2, gamma=0.3, local_steps=3, steps=12)))
    flags = [m["clip_frac"] for m in res.metrics[1:]]
    assert set(flags) <= {0.0, 1.0} and 0 < sum(flags) < len(flags)
    for r in range(4):
        assert len(set(flags[3 * r:3 * r + 3])) == 1


# -- config ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("alg", "message"), [
    ({"lr": 0.1}, "exactly one of algorithm.gamma"),
    ({"lr": 0.1, "gamma": [0.1, 0.2, 0.3]}, "one algorithm.gamma"),
    ({"lr": 0.1, "tau": 1.0, "comparison": "<"}, "algorithm.comparison"),
    ({"lr": 0.1, "tau": 1.0, "resample_batch": -1}, "resample_batch"),
    ({"lr": 0.1, "tau": 1.0, "clip": "soft"}, "does not apply to episode"),
])
def test_config_errors(alg: dict[str, Any], message: str) -> None:
    with pytest.raises(DistclipError, match=message):
        config.from_dict(quad(**alg))


def test_resample_batch_only_for_episode() -> None:
    with pytest.raises(DistclipError, match="applies to: episode"):
        config.from_dict(logreg("celgc", batch=8, lr=0.1, gamma=0.1, resample_batch=4))


# -- the quartic (experiments §4) ---------------------------------------------------------------------------------
def quartic(H: float = 2.0, sigma: float = 1.0, clients: int = 2, **run: Any) -> dict[str, Any]:  # noqa: N803
    return {"seed": 1, "problem": {"kind": "quartic", "H": H, "sigma": sigma, "x0": 1.0},
            "partition": {"clients": clients}, "algorithm": {"name": "sgd", "lr": 0.01},
            "run": {"steps": 1, "batch_size": 1, **run}}


def test_quartic_values_and_gradients() -> None:
    cfg = config.from_dict(quartic(H=2.0))
    p = runner.build_problem(cfg)
    x = torch.tensor([1.5], dtype=F64)
    # h = (−1, 2): f_1 = x⁴ − 3x³ + 2x² + x, f_2 = x⁴ − 3x³ − 4x² + x; f = x⁴ − 3x³ − x² + x
    close(p.client_losses(x, torch.arange(2)), [1.5**4 - 3 * 1.5**3 + 2 * 2.25 + 1.5, 1.5**4 - 3 * 1.5**3 - 9 + 1.5])
    assert math.isclose(p.loss(x), 1.5**4 - 3 * 1.5**3 - 2.25 + 1.5, rel_tol=1e-14)
    close(p.grad(x), [4 * 1.5**3 - 9 * 2.25 - 2 * 1.5 + 1])
    xs = torch.tensor([[0.3], [-1.2]], dtype=F64, requires_grad=True)
    p.client_losses(xs, torch.arange(2)).sum().backward()
    torch.testing.assert_close(p.client_grads(xs.detach(), torch.arange(2), None), xs.grad)
    with pytest.raises(DistclipError, match="not L-smooth"):
        p.smoothness()


def test_quartic_noise_is_uniform_and_counter_based() -> None:
    cfg = config.from_dict(quartic(H=0.0, sigma=1.0, clients=4))
    p = runner.build_problem(cfg)
    ctx, _ = runner.build_context(cfg, p, InProcess(4))
    x = torch.tensor([0.5], dtype=F64)
    exact = p.client_grads(x, torch.arange(4), None)
    noise = torch.cat([ctx.oracle.grads(x, t) - exact for t in range(2000)])
    assert float(noise.abs().max()) <= 1.0 and abs(float(noise.mean())) < 0.03
    assert abs(float(noise.var()) - 1 / 3) < 0.03  # Var Unif(−1, 1) = 1/3
    # a client's noise depends on (seed, client, draw) only, not on which clients are held together
    from distclip.problems.base import ClientOracle
    alone = ClientOracle(p, torch.tensor([2]), 1, cfg.seed)
    torch.testing.assert_close(alone.grads(x, 7)[0], ctx.oracle.grads(x, 7)[2], rtol=0, atol=0)
    assert ROWS == 2**53 and not torch.equal(ctx.oracle.grads(x, 7), ctx.oracle.grads(x, 7, stream=1))


def test_quartic_keys_apply_only_to_quartic() -> None:
    doc = quad(lr=0.1, gamma=0.1)
    doc["problem"]["sigma"] = 1.0
    with pytest.raises(DistclipError, match="applies to: quartic"):
        config.from_dict(doc)
    with pytest.raises(DistclipError, match="sigma"):
        config.from_dict(quartic(sigma=-1.0))


def test_episode_beats_celgc_on_the_heterogeneous_quartic() -> None:
    """Target 9 in miniature (one seed, H = 4, R = 250): EPISODE ends far lower, near a stationary point."""
    runs = {}
    for name, extra in (("celgc", {}), ("episode", {"resample_batch": 1})):
        doc = quartic(H=4.0, steps=2000, log_every=2000)
        doc["algorithm"] = {"name": name, "lr": 0.01, "tau": 5.0, "local_steps": 8, **extra}
        runs[name] = runner.run(config.from_dict(doc)).metrics[-1]
    assert runs["episode"]["loss"] < runs["celgc"]["loss"] - 5
    assert runs["episode"]["grad_norm_sq"] < 0.1 < runs["celgc"]["grad_norm_sq"]


def test_resume_mid_round_from_checkpoint(tmp_path) -> None:
    """A checkpoint taken inside a round (G_r^i, G_r, c_r, momentum saved) resumes to the same numbers."""
    doc = logreg("episode", steps=7, batch=8, lr=1.0, gamma=0.2, local_steps=3, momentum=0.9)
    doc["run"]["checkpoint_every"] = 7
    runner.run(config.from_dict(doc), tmp_path / "run")
    doc["run"]["steps"] = 12
    resumed = runner.run(config.from_dict(doc), tmp_path / "run", resume=True)
    straight = runner.run(config.from_dict(doc))
    assert resumed.summary["resumed_from"] == 7
    torch.testing.assert_close(resumed.model, straight.model, rtol=0, atol=0)
