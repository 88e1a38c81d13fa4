"""DP noise, the local-DP channel, ε accounting against Opacus, and adaptive clipping
(spec: algorithms.md §8, §9; experiments.md §8 target 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from distclip import runner
from distclip.engine.transport import InProcess
from distclip.privacy import accountant, quantile
from distclip.privacy.channel import LocalNoise
from distclip.privacy.noise import CENTRAL, LOCAL, standard_normal

QUAD = {"kind": "quadratic", "centres": [[1.0, 2.0], [-2.0, 0.5], [3.0, -1.0]], "x0": [0.5, -0.5]}


# -- noise -------------------------------------------------------------------------------------------------------
def test_noise_depends_only_on_seed_stream_client_round() -> None:
    full = standard_normal(7, LOCAL, range(10), 4, 33)
    for block in ([3, 4, 5], [9], [0, 9]):  # whichever process holds the clients, in any order
        assert torch.equal(standard_normal(7, LOCAL, block, 4, 33), full[block])
    assert torch.equal(standard_normal(7, LOCAL, range(10), 4, 33), full)
    for other in (standard_normal(8, LOCAL, range(10), 4, 33), standard_normal(7, CENTRAL, range(10), 4, 33),
                  standard_normal(7, LOCAL, range(10), 5, 33)):
        assert not torch.isclose(other, full).any()
    assert full.shape == (10, 33) and standard_normal(7, LOCAL, [2], 4, 32).shape == (1, 32)


def test_noise_is_standard_normal() -> None:
    z = standard_normal(0, LOCAL, range(50), 0, 20001).numpy().ravel()
    assert abs(z.mean()) < 0.003 and abs(z.std() - 1) < 0.003
    assert abs(np.mean(z**4) - 3) < 0.03  # Gaussian kurtosis
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 0.002
    rows = standard_normal(0, LOCAL, range(200), 0, 2)
    assert abs(float(torch.corrcoef(rows.T)[0, 1])) < 0.2  # the two Box–Muller outputs are uncorrelated


def test_secure_noise_is_fresh_and_standard() -> None:
    a = standard_normal(0, LOCAL, range(20), 0, 5000, secure=True)
    b = standard_normal(0, LOCAL, range(20), 0, 5000, secure=True)
    assert not torch.equal(a, b)
    assert abs(float(a.mean())) < 0.01 and abs(float(a.std()) - 1) < 0.01


def test_channel_adds_the_seeded_noise_to_each_message() -> None:
    inner = InProcess(3)
    std = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    ch = LocalNoise(inner, std, seed=5)
    msg = torch.arange(6, dtype=torch.float64).reshape(3, 2)
    out0, out1 = ch.mean(msg), ch.mean(msg)  # rounds 0 and 1 draw different noise
    for r, out in enumerate((out0, out1)):
        want = (msg + std[:, None] * standard_normal(5, LOCAL, range(3), r, 2)).mean(dim=0)
        torch.testing.assert_close(out, want)
    assert ch.counter is inner.counter and inner.counter.comm_rounds == 2 and ch.world == 1


# -- accounting ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("z", "q", "rounds"), [(1.1, 1.0, 50), (0.8, 0.01, 1000), (3.0, 1.0, 300)])
def test_rdp_epsilon_is_opacus(z: float, q: float, rounds: int) -> None:
    ref = RDPAccountant()
    for _ in range(rounds):
        ref.step(noise_multiplier=z, sample_rate=q)
    assert accountant.epsilon(rounds, z, q, 1e-3) == pytest.approx(ref.get_epsilon(1e-3), rel=1e-12)


def test_prv_epsilon_is_opacus() -> None:
    ref = PRVAccountant()
    for _ in range(200):
        ref.step(noise_multiplier=1.0, sample_rate=0.05)
    assert accountant.epsilon(200, 1.0, 0.05, 1e-5, "prv") == pytest.approx(ref.get_epsilon(1e-5), rel=1e-6)


def test_calibration_meets_the_target() -> None:
    z = accountant.calibrate(3.0, 300, 1.0, 1e-3)
    eps = accountant.epsilon(300, z, 1.0, 1e-3)
    assert 2.9 <= eps <= 3.0
    assert accountant.epsilon(0, z, 1.0, 1e-3) == 0.0 and accountant.epsilon(5, 0.0, 1.0, 1e-3) == math.inf


@pytest.mark.parametrize(("alg", "rounds", "multiplier"), [
    ({"name": "clip21-sgd2m", "lr": 0.1, "tau": 1.0}, 9, 0.75),
    ({"name": "clip21", "lr": 0.1, "tau": 1.0}, 10, 0.75),  # the clip_grad init round is a release too
    ({"name": "clip-gd", "lr": 0.1, "tau": 1.0}, 9, 0.75),
    ({"name": "dp-fedavg", "lr": 0.1, "tau": 1.0, "local_steps": 2}, 4, 1.5),
])
def test_logged_epsilon_counts_noisy_rounds(alg: dict, rounds: int, multiplier: float) -> None:
    """Local DP: messages of norm ≤ τ with std z·τ, sensitivity 2τ → Opacus multiplier z/2; central: z."""
    res = runner.run({"problem": QUAD, "algorithm": {**alg, "noise_multiplier": 1.5, "delta": 1e-3},
                      "run": {"steps": 9, "log_every": 3}})
    last = res.metrics[-1]
    assert last["comm_rounds"] == rounds == res.summary["privacy"]["rounds"]
    assert last["epsilon"] == accountant.epsilon(rounds, multiplier, 1.0, 1e-3)
    assert res.summary["privacy"]["epsilon"] == last["epsilon"] and res.metrics[0]["epsilon"] <= last["epsilon"]
    eps = [m["epsilon"] for m in res.metrics]
    assert eps == sorted(eps)


def test_no_noise_no_epsilon() -> None:
    res = runner.run({"problem": QUAD, "algorithm": {"name": "clip21-sgd2m", "lr": 0.1, "tau": 1.0},
                      "run": {"steps": 3}})
    assert "epsilon" not in res.metrics[-1] and "privacy" not in res.summary


@pytest.mark.parametrize("name", ["clip21-sgd2m", "dp-fedavg"])
def test_target_epsilon_calibrates_the_noise(name: str) -> None:
    res = runner.run({"problem": QUAD, "algorithm": {"name": name, "lr": 0.1, "tau": 1.0, "target_epsilon": 4.0,
                                                     "delta": 1e-3}, "run": {"steps": 40, "log_every": 40}})
    eps = res.metrics[-1]["epsilon"]
    assert 3.9 <= eps <= 4.0
    z = res.summary["privacy"]["noise_multiplier"]
    assert z == pytest.approx((2.0 if name == "clip21-sgd2m" else 1.0) * accountant.calibrate(4.0, 40, 1.0, 1e-3))


# -- adaptive clipping (experiments.md §8 target 10) ---------------------------------------------------------------
def track(rounds: int, c0: float, seed: int, inverted: bool = False, lr: float = 0.2, rule: str = "geometric"
          ) -> list[float]:
    """C over rounds for norms ~ LogNormal(0, 0.5) (median 1), m = 100, q = 0.5, no count noise."""
    gen = torch.Generator().manual_seed(seed)
    C, out = torch.tensor(c0, dtype=torch.float64), [c0]
    for _ in range(rounds):
        norms = torch.exp(0.5 * torch.randn(100, generator=gen, dtype=torch.float64))
        unclipped = (norms <= C).to(torch.float64)
        bits = 1 - unclipped if inverted else unclipped  # Flower feeds the clipped bit into the same formula
        b = quantile.unclipped_fraction((bits - 0.5).sum(), 100)
        C = quantile.update(C, b, 0.5, lr, rule)
        out.append(float(C))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_adaptive_clip_tracks_the_median(seed: int) -> None:
    cs = track(300, 0.1, seed)
    assert abs(cs[100] - 1) < 0.1  # target: within 10% of the median after 100 rounds
    assert all(0.9 <= c <= 1.1 for c in cs[100:])
    assert next(r for r, c in enumerate(cs) if c > 0.9) <= 35


@pytest.mark.parametrize(("c0", "ends"), [(0.1, "shrinks"), (10.0, "grows")])
def test_inverted_sign_diverges(c0: float, ends: str) -> None:
    cs = track(300, c0, 0, inverted=True)
    assert abs(cs[100] - 1) > 0.1  # the same test fails with the Flower-style bit
    assert (cs[-1] < 1e-10) if ends == "shrinks" else (cs[-1] > 1e10)


def test_arithmetic_rule_and_fixed_clipping() -> None:
    cs = track(200, 0.1, 1, lr=0.05, rule="arithmetic")
    assert abs(cs[-1] - 1) < 0.1
    assert track(50, 0.3, 0, lr=0.0) == [0.3] * 51  # η_C = 0: fixed clipping
    b = quantile.unclipped_fraction(torch.tensor(100 * (0.73 - 0.5)), 100)
    assert float(b) == pytest.approx(0.73)  # without count noise b̄ is the fraction unclipped
    assert float(quantile.unclipped_fraction(torch.tensor(0.0), 10, 100.0)) == 1.0  # clamped to [0, 1]


def test_noise_split() -> None:
    assert quantile.split_noise(1.0, 5.0) == pytest.approx((1 - 1 / 100) ** -0.5)
    assert quantile.split_noise(0.0, 5.0) == 0.0 and quantile.split_noise(1.2, 0.0) == 1.2
    with pytest.raises(ValueError, match="below 2"):
        quantile.split_noise(1.0, 0.5)
    assert quantile.default_count_noise(1.0, 100) == 5.0 and quantile.default_count_noise(0.0, 100) == 0.0
