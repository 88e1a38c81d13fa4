"""SCAFFOLD (docs/algorithms.md §11) and FedProx (§12) against steps computed by hand in plain Python floats on
the three quadratics of the rules harness, and their degenerate cases (Local SGD)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from rules_harness import A3, C3, X0, Driver, logreg_doc, quad_doc

from distclip.errors import DistclipError
from distclip.runner import run


def grad(i: int, x: list[float]) -> list[float]:
    return [C3[i] * (xj - aj) for xj, aj in zip(x, A3[i], strict=True)]


def lin(*terms: tuple[float, list[float]]) -> list[float]:
    """Σ a·v over (a, v) pairs."""
    return [sum(a * v[j] for a, v in terms) for j in range(len(terms[0][1]))]


def mean(vs: list[list[float]]) -> list[float]:
    return [sum(col) / len(vs) for col in zip(*vs, strict=True)]


def scaffold_reference(lr: float, interval: int, rounds: int, option: str, server_lr: float = 1.0):
    """Server models after each round and the control variates, from the paper's Algorithm 1 (full gradients)."""
    n, x, c = 3, list(X0), [0.0, 0.0]
    ci = [[0.0, 0.0] for _ in range(n)]
    models = []
    for _ in range(rounds):
        ys, new = [], []
        for i in range(n):
            y = list(x)
            for _ in range(interval):
                y = lin((1, y), (-lr, grad(i, y)), (lr, ci[i]), (-lr, c))
            ys.append(y)
            new.append(grad(i, x) if option == "I" else lin((1, ci[i]), (-1, c), (1 / (interval * lr), x),
                                                             (-1 / (interval * lr), y)))
        dc = mean([lin((1, new[i]), (-1, ci[i])) for i in range(n)])
        x = lin((1, x), (server_lr, mean(ys)), (-server_lr, x))
        c = lin((1, c), (1, dc))
        ci = new
        models.append(x)
    return models, c, ci


@pytest.mark.parametrize(("option", "server_lr"), [("II", 1.0), ("I", 1.0), ("II", 0.5)])
def test_scaffold_matches_the_hand_computation(option: str, server_lr: float) -> None:
    lr, interval, rounds = 0.3, 3, 4
    d = Driver(quad_doc("scaffold", lr=lr, local_steps=interval, option=option, server_lr=server_lr))
    models, c, ci = scaffold_reference(lr, interval, rounds, option, server_lr)
    for r in range(rounds):
        d.step(interval)
        torch.testing.assert_close(d.state.x, torch.tensor(models[r], dtype=torch.float64), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(d.state.c, torch.tensor(c, dtype=torch.float64), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(d.state.ci, torch.tensor(ci, dtype=torch.float64), rtol=1e-12, atol=1e-13)
    # one average of the models and the control corrections (2d floats) per round, up and down
    assert d.counter["comm_rounds"] == rounds and d.counter["floats_up"] == 2 * 2 * rounds
    assert d.counter["floats_down"] == 2 * 2 * rounds


def test_scaffold_first_round_is_local_sgd_and_corrections_differ_after() -> None:
    doc = logreg_doc("scaffold", batch=4, steps=6, lr=0.5, local_steps=3)
    ref = logreg_doc("local-sgd", batch=4, steps=6, lr=0.5, local_steps=3)
    a, b = run(doc).metrics, run(ref).metrics
    for got, want in zip(a[:4], b[:4], strict=True):  # steps 0..3: c = c_i = 0 in the first round
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-13)
    assert a[-1]["loss"] != pytest.approx(b[-1]["loss"], rel=1e-6)  # the corrections act from round 2 on


def test_scaffold_with_control_variates_held_at_zero_is_local_sgd() -> None:
    sc = Driver(logreg_doc("scaffold", batch=4, lr=0.5, local_steps=3))
    ls = Driver(logreg_doc("local-sgd", batch=4, lr=0.5, local_steps=3))
    for _ in range(12):
        sc.step()
        sc.state = dataclasses.replace(sc.state, c=torch.zeros_like(sc.state.c), ci=torch.zeros_like(sc.state.ci))
        ls.step()
        torch.testing.assert_close(sc.model(), ls.model(), rtol=1e-13, atol=1e-15)


def test_fedprox_with_mu_zero_is_local_sgd_bit_for_bit() -> None:
    fp = run(logreg_doc("fedprox", batch=4, steps=12, lr=0.5, local_steps=3))
    ls = run(logreg_doc("local-sgd", batch=4, steps=12, lr=0.5, local_steps=3))
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in fp.metrics] == \
           [{k: v for k, v in r.items() if k != "wall_s"} for r in ls.metrics]
    assert torch.equal(fp.model, ls.model)


def test_fedprox_matches_the_hand_computation() -> None:
    lr, mu, interval = 0.3, 0.7, 2
    d = Driver(quad_doc("fedprox", lr=lr, mu=mu, local_steps=interval))
    xs = [list(X0) for _ in range(3)]
    for t in range(6):
        if t % interval == 0:
            xr = mean(xs)
            xs = [list(xr) for _ in range(3)]
        xs = [lin((1, y), (-lr, grad(i, y)), (-lr * mu, y), (lr * mu, xr)) for i, y in enumerate(xs)]
        d.step()
        torch.testing.assert_close(d.state.X, torch.tensor(xs, dtype=torch.float64), rtol=1e-13, atol=1e-14)
    assert d.counter["comm_rounds"] == 3 and d.counter["floats_up"] == 3 * 2


@pytest.mark.parametrize(("alg", "message"), [
    ({"name": "scaffold", "lr": 0.1, "option": "III"}, "algorithm.option (for scaffold) = 'III'"),
    ({"name": "scaffold", "lr": 0.1, "server_lr": 0.0}, "algorithm.server_lr = 0.0"),
    ({"name": "fedprox", "lr": 0.1, "mu": -1.0}, "algorithm.mu = -1.0"),
    ({"name": "fedprox", "lr": 0.1, "tau": 1.0}, "algorithm.tau does not apply to fedprox"),
    ({"name": "local-sgd", "lr": 0.1, "mu": 0.1}, "algorithm.mu does not apply to local-sgd; it applies to: fedprox"),
])
def test_config_errors(alg: dict, message: str) -> None:
    doc = quad_doc(alg.pop("name"), **alg)
    with pytest.raises(DistclipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(doc)
