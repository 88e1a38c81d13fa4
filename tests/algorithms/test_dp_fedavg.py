"""DP-FedAvg with fixed and adaptive clipping: a round by hand, FedAvg as a special case, the noise
scale, fixed clipping as η_C = 0 (spec: algorithms.md §9; experiments.md §8 targets 10, 13)."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest
import torch
from rules_harness import A3 as A
from rules_harness import C3 as C
from rules_harness import F64, X0, logreg_doc, quad_doc

from distclip import config, runner
from distclip.algorithms import ALGORITHMS
from distclip.engine.transport import InProcess
from distclip.privacy import accountant, quantile
from distclip.privacy.noise import CENTRAL, COUNT, SAMPLING, SERVER, standard_normal, uniform


def quad(name: str, **alg: Any) -> dict[str, Any]:
    return quad_doc(name, **alg)


def logreg(name: str, **alg: Any) -> dict[str, Any]:
    return logreg_doc(name, batch=8, **alg)


def drive(doc: dict[str, Any], steps: int) -> tuple[list[Any], Any, InProcess]:
    cfg = config.from_dict(doc)
    problem = runner.build_problem(cfg)
    tr = InProcess(problem.n_clients)
    ctx, _ = runner.build_context(cfg, problem, tr)
    rules = runner.sampled_rules(cfg, ALGORITHMS[cfg.algorithm.name], ctx.hp, problem)  # q < 1: the engine samples
    state, _ = rules.init(ctx)
    out = [(rules.model(state, ctx), state)]
    for t in range(steps):
        state, _ = rules.step(state, ctx, t)
        out.append((rules.model(state, ctx), state))
    return out, ctx, tr


@pytest.mark.parametrize("extra", [{}, {"momentum": 0.9, "weight_decay": 1e-3}])
def test_no_noise_no_clip_is_fedavg(extra: dict[str, Any]) -> None:
    """z = 0, C = ∞: the server model after round r is Local SGD's average after r·I steps."""
    interval, rounds = 4, 6
    ours, _, _ = drive(logreg("dp-fedavg", lr=0.5, tau=math.inf, local_steps=interval, **extra), interval * rounds)
    ref, _, _ = drive(logreg("local-sgd", lr=0.5, local_steps=interval, **extra), interval * rounds)
    at = range(0, interval * rounds + 1, interval)
    torch.testing.assert_close(torch.stack([ours[k][0] for k in at]), torch.stack([ref[k][0] for k in at]),
                               rtol=1e-10, atol=1e-13)
    assert float((ref[-1][0] - ref[0][0]).abs().max()) > 1e-2


def local_updates(lr: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x^0 and each client's update Δ_i after ``steps`` local GD steps on f_i = ½ c_i ‖x − a_i‖², by hand."""
    x = torch.tensor(X0, dtype=F64)
    X = x.expand(3, -1).clone()
    a, c = torch.tensor(A, dtype=F64), torch.tensor(C, dtype=F64)
    for _ in range(steps):
        X = X - lr * c[:, None] * (X - a)
    return x, X - x


def test_one_round_by_hand_with_clipping_noise_and_adaptive_norm() -> None:
    lr, tau, z, sigma_b, eta, q = 0.2, 0.5, 0.3, 1.0, 0.2, 0.5
    out, _, _ = drive(quad("dp-fedavg", lr=lr, tau=tau, local_steps=2, noise_multiplier=z, adaptive_clip="geometric",
                           count_noise=sigma_b, clip_lr=eta, quantile=q), 2)
    x, delta = local_updates(lr, 2)
    norms = delta.norm(dim=1)
    assert (norms > tau).any() and (norms <= tau).any()  # some clients clipped, some not
    clipped = delta * torch.clamp(tau / norms, max=1.0)[:, None]
    z_upd = (z**-2 - (2 * sigma_b) ** -2) ** -0.5
    x_new = x + clipped.mean(dim=0) + z_upd * tau / 3 * standard_normal(0, CENTRAL, [SERVER], 0, 2)[0]
    b = (norms <= tau).to(F64)
    b_bar = min(1.0, max(0.0, (float((b - 0.5).sum()) + sigma_b * float(standard_normal(0, COUNT, [SERVER], 0, 1)))
                          / 3 + 0.5))
    model, state = out[2]
    torch.testing.assert_close(model, x_new, rtol=1e-12, atol=1e-14)
    assert float(state.C) == pytest.approx(tau * math.exp(-eta * (b_bar - q)), rel=1e-12)
    assert torch.equal(state.X, model.expand(3, -1))  # clients restart from the new server model
    assert torch.equal(out[1][0], x)  # the server model moves only at the end of a round


def test_aggregate_noise_std_is_z_c_over_m() -> None:
    """Zero gradients (every centre at x^0): the server model moves by the noise alone, std z·C/m."""
    z, c, m, d, rounds = 2.0, 0.7, 4, 500, 20
    out, _, _ = drive({"problem": {"kind": "quadratic", "centres": [[0.0] * d] * m},
                       "algorithm": {"name": "dp-fedavg", "lr": 0.1, "tau": c, "noise_multiplier": z}}, rounds)
    steps = torch.stack([out[k + 1][0] - out[k][0] for k in range(rounds)])
    assert abs(float(steps.mean())) < 0.02 * z * c / m * 3
    assert float(steps.std()) == pytest.approx(z * c / m, rel=0.03)


def test_zero_clip_lr_is_fixed_clipping() -> None:
    fixed, _, _ = drive(logreg("dp-fedavg", lr=0.5, tau=0.05, local_steps=2), 12)
    adaptive, _, _ = drive(logreg("dp-fedavg", lr=0.5, tau=0.05, local_steps=2, adaptive_clip="geometric",
                                  clip_lr=0.0), 12)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(fixed, adaptive, strict=True))
    assert float(adaptive[-1][1].C) == 0.05


def test_adaptive_norm_moves_towards_the_update_norms() -> None:
    out, _, _ = drive(logreg("dp-fedavg", lr=0.5, tau=1e-4, local_steps=2, adaptive_clip="geometric", quantile=1.0,
                             clip_lr=0.5), 40)
    cs = [float(s.C) for _, s in out[::2]]
    assert cs[-1] > 10 * cs[0]  # every update clipped and q = 1: C grows until they pass


def test_comm_counts_the_adaptive_bit() -> None:
    res = runner.run({**quad("dp-fedavg", lr=0.1, tau=1.0, local_steps=3, adaptive_clip="geometric"),
                      "run": {"steps": 7}})
    last = res.metrics[-1]
    assert (last["comm_rounds"], last["floats_up"], last["floats_down"]) == (2, 2 * 3, 2 * 3)  # d + 1 per round


def test_config_errors() -> None:
    with pytest.raises(Exception, match="count noise"):
        config.from_dict(quad("dp-fedavg", lr=0.1, tau=1.0, adaptive_clip="geometric", noise_multiplier=1.0,
                              count_noise=0.0))
    with pytest.raises(Exception, match="goes with adaptive clipping"):
        config.from_dict(quad("dp-fedavg", lr=0.1, tau=1.0, quantile=0.3))
    with pytest.raises(Exception, match="one number"):
        config.from_dict(quad("dp-fedavg", lr=0.1, tau=[1.0, 1.0, 1.0]))
    with pytest.raises(Exception, match="not both"):
        config.from_dict(quad("dp-fedavg", lr=0.1, tau=1.0, noise_multiplier=1.0, target_epsilon=2.0))
    doc = {**quad("dp-fedavg", lr=0.1, tau=1.0, adaptive_clip="geometric", noise_multiplier=0.5), "run": {"steps": 2}}
    with pytest.raises(Exception, match="raise algorithm.count_noise above 0.25"):  # N = 3: σ_b = 0.15
        runner.run(doc)
    assert quantile.default_count_noise(0.5, 3) == pytest.approx(0.15)


@pytest.mark.parametrize("alg", [
    {"name": "dp-fedavg", "lr": 0.1, "tau": 1.0, "target_epsilon": 3.0},
    {"name": "dp-fedavg", "lr": 0.1, "tau": 1.0, "adaptive_clip": "arithmetic", "quantile": 0.7, "count_noise": 2.0,
     "client_rate": 0.5},
    {"name": "clip21-sgd2m", "lr": 0.1, "tau": 1.0, "target_epsilon": 3.0, "accountant": "prv"},
])
def test_resolved_config_round_trips(alg: dict[str, Any]) -> None:
    """config.toml (every applicable key written) loads back to the same config, so runs can resume."""
    cfg = config.from_dict(quad(**alg))
    again = config.from_dict(tomllib.loads(config.to_toml(cfg)))
    assert config.to_toml(again) == config.to_toml(cfg)


def test_poisson_client_sampling_by_hand() -> None:
    """q < 1: the sampled clients' clipped updates and the noise are divided by the expected m = qN."""
    lr, tau, z, q = 0.2, 0.5, 0.3, 0.8
    out, _, _ = drive(quad("dp-fedavg", lr=lr, tau=tau, local_steps=2, noise_multiplier=z, client_rate=q), 2)
    taking_part = torch.from_numpy(uniform(0, SAMPLING, range(3), 0) < q)
    assert taking_part.tolist() == [True, False, True]  # this round: clients 0 and 2
    x, delta = local_updates(lr, 2)
    clipped = delta * torch.clamp(tau / delta.norm(dim=1), max=1.0)[:, None]
    m = q * 3
    want = x + clipped[taking_part].sum(dim=0) / m + z * tau / m * standard_normal(0, CENTRAL, [SERVER], 0, 2)[0]
    torch.testing.assert_close(out[2][0], want, rtol=1e-12, atol=1e-14)


def test_sampling_rate_enters_the_accountant() -> None:
    res = runner.run({**quad("dp-fedavg", lr=0.1, tau=1.0, noise_multiplier=1.0, client_rate=0.25, delta=1e-3),
                      "run": {"steps": 8}})
    assert res.metrics[-1]["epsilon"] == accountant.epsilon(8, 1.0, 0.25, 1e-3)
    assert res.summary["privacy"]["sample_rate"] == 0.25
    assert res.metrics[-1]["epsilon"] < accountant.epsilon(8, 1.0, 1.0, 1e-3)  # amplification by sampling


def test_fixed_clipping_sends_no_bit() -> None:
    res = runner.run({**quad("dp-fedavg", lr=0.1, tau=1.0, local_steps=3), "run": {"steps": 7}})
    assert (res.metrics[-1]["floats_up"], res.metrics[-1]["floats_down"]) == (2 * 2, 2 * 2)  # d per round
