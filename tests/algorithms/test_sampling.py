"""Client sampling (docs/algorithms.md §13): cohorts, the cohort's step against the same rule on a problem holding only
those clients, EF21/Clip21 and SCAFFOLD with partial participation against loops written here, what is counted and
computed, and the refusals."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import numpy as np
import pytest
import torch
from rules_harness import F64, logreg_doc

from distclip import config, rng, runner
from distclip.algorithms import ALGORITHMS
from distclip.engine.transport import InProcess
from distclip.errors import DistclipError
from distclip.privacy.noise import SAMPLING, uniform

# six quadratic clients in d = 2 with unequal curvatures
A6 = [[1.0, 2.0], [-2.0, 0.5], [3.0, -1.0], [0.5, 0.5], [-1.0, -3.0], [2.0, 1.0]]
C6 = [1.0, 2.0, 0.5, 1.5, 0.8, 1.2]
X0 = [0.5, -0.5]


def quad(name: str, a: list = A6, c: list = C6, x0: Any = X0, steps: int = 6, sampling: dict | None = None,
         seed: int = 5, **alg: Any) -> dict[str, Any]:
    doc = {"seed": seed, "problem": {"kind": "quadratic", "centres": a, "curvatures": c, "x0": x0},
           "algorithm": {"name": name, **alg}, "run": {"steps": steps}}
    if sampling:
        doc["sampling"] = sampling
    return doc


class Sampled:
    """init/step of a config's rules as the runner runs them (with the cohort wrapper when it samples)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.cfg = config.from_dict(doc)
        self.problem = runner.build_problem(self.cfg)
        self.transport = InProcess(self.problem.n_clients)
        self.ctx, _ = runner.build_context(self.cfg, self.problem, self.transport)
        self.rules = runner.sampled_rules(self.cfg, ALGORITHMS[self.cfg.algorithm.name], self.ctx.hp, self.problem)
        self.state, _ = self.rules.init(self.ctx)
        self.t = 0

    def step(self, times: int = 1) -> Any:
        for _ in range(times):
            self.state, _ = self.rules.step(self.state, self.ctx, self.t)
            self.t += 1
        return self.state

    def model(self) -> torch.Tensor:
        return self.rules.model(self.state, self.ctx)


# -- cohorts ------------------------------------------------------------------------------------------------
def test_fixed_cohorts_have_exact_size_and_cover_clients_uniformly() -> None:
    n, m, rounds = 50, 7, 4000
    counts = np.zeros(n)
    for r in range(rounds):
        ids = rng.cohort(11, r, n, size=m)
        assert len(ids) == m and len(set(ids.tolist())) == m and ids.min() >= 0 and ids.max() < n
        assert list(ids) == sorted(ids)
        counts[ids] += 1
    # each client's frequency is m/n; its count over the rounds is Binomial(rounds, m/n): within 5 sd
    p = m / n
    assert np.abs(counts - rounds * p).max() < 5 * math.sqrt(rounds * p * (1 - p))
    assert list(rng.cohort(11, 3, n, size=m)) == list(rng.cohort(11, 3, n, size=m))
    assert list(rng.cohort(11, 3, n, size=m)) != list(rng.cohort(12, 3, n, size=m))
    assert list(rng.cohort(0, 0, 5, size=5)) == [0, 1, 2, 3, 4]


def test_poisson_fraction_matches_the_rate() -> None:
    n, q, rounds = 400, 0.15, 1500
    sizes = np.array([len(rng.cohort(2, r, n, rate=q)) for r in range(rounds)])
    sd = math.sqrt(q * (1 - q) / (n * rounds))  # of the mean sampled fraction
    assert abs(sizes.mean() / n - q) < 5 * sd
    assert sizes.std() == pytest.approx(math.sqrt(n * q * (1 - q)), rel=0.1)  # Binomial(n, q) sizes
    # the same draws as DP-FedAvg's own sampling has always used: u(seed, client, round) < q
    for r in range(5):
        want = np.flatnonzero(uniform(2, SAMPLING, np.arange(n), r) < q)
        assert list(rng.cohort(2, r, n, rate=q)) == list(want)


# -- a cohort's step is the rule on a problem holding only the cohort -------------------------------------------
STATELESS = [
    ("gd", {"lr": 0.3}),
    ("clip-gd", {"lr": 0.3, "tau": 0.8}),
    ("naive-parallel-clip", {"lr": 0.3, "tau": 0.5}),
    ("local-sgd", {"lr": 0.2, "local_steps": 3}),
    ("celgc", {"lr": 0.2, "gamma": 0.15, "local_steps": 2}),
    ("fedprox", {"lr": 0.2, "local_steps": 3, "mu": 0.5}),
    ("episode", {"lr": 0.2, "gamma": 0.1, "local_steps": 2, "resample_batch": 0}),
]


@pytest.mark.parametrize(("name", "alg"), STATELESS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(STATELESS)])
@pytest.mark.parametrize("sampling", [{"scheme": "fixed", "clients": 3}, {"scheme": "poisson", "rate": 0.5}])
def test_a_round_is_the_rule_on_the_cohort_alone(name: str, alg: dict, sampling: dict) -> None:
    """Round by round, the sampled run's model equals that of the same rule run (without sampling) for one round on
    a quadratic problem made of the cohort's clients only, started from the sampled run's model."""
    interval, rounds, seed = alg.get("local_steps", 1), 4, 5
    ours = Sampled(quad(name, steps=interval * rounds, sampling=sampling, seed=seed, **alg))
    x = torch.tensor(X0, dtype=F64)
    skipped = 0
    for r in range(rounds):
        ids = rng.cohort(seed, r, len(A6), size=sampling.get("clients"), rate=sampling.get("rate"))
        ours.step(interval)
        if len(ids) == 0:  # a round without participants changes nothing
            skipped += 1
            torch.testing.assert_close(ours.model(), x, rtol=0, atol=0)
            continue
        sub = quad(name, a=[A6[i] for i in ids], c=[C6[i] for i in ids], x0=x.tolist(), steps=interval, **alg)
        x = runner.run(sub).model
        torch.testing.assert_close(ours.model(), x, rtol=1e-12, atol=1e-14)
    assert skipped < rounds


@pytest.mark.parametrize(("name", "alg"), [("sgd", {"lr": 0.5, "weight_decay": 1e-3}),
                                           ("clip-sgd", {"lr": 0.5, "tau": [0.05, 0.1, 0.02, 0.2, 0.05, 0.1]})])
def test_minibatch_step_uses_the_cohorts_own_batches_and_thresholds(name: str, alg: dict) -> None:
    """Minibatch rules: the sampled step equals the bare rule driven on a transport of the cohort's clients only,
    with those clients' own minibatches (drawn by client id) and per-client thresholds."""
    doc = {**logreg_doc(name, batch=8, clients=6, steps=3, **alg), "sampling": {"scheme": "fixed", "clients": 2}}
    ours = Sampled(doc)
    spec = ALGORITHMS[name]
    x = ours.model().clone()
    for t in range(3):
        ours.step()
        ids = torch.from_numpy(rng.cohort(doc["seed"], t, 6, size=2))
        ctx = runner.build_context(ours.cfg, ours.problem, InProcess(6))[0]
        tr = InProcess(2)
        tr.clients = ids
        hp = ctx.hp if name == "sgd" else type(ctx.hp)(**{**ctx.hp.__dict__, "tau": ctx.hp.tau[ids]})
        ref = type(ctx)(tr, type(ctx.oracle)(ours.problem, ids, 8, doc["seed"]), hp, ctx.x0)
        state, _ = spec.rules.step(spec.rules.State(x), ref, t)
        x = state.x
        torch.testing.assert_close(ours.model(), x, rtol=0, atol=0)


# -- EF21 / Clip21 with partial participation: a plain loop -----------------------------------------------------
def grads(x: torch.Tensor, ids: Any) -> torch.Tensor:
    a, c = torch.tensor(A6, dtype=F64), torch.tensor(C6, dtype=F64)
    return c[ids].unsqueeze(1) * (x - a[ids])


def clip_rows(v: torch.Tensor, tau: float) -> torch.Tensor:
    n = v.norm(dim=1, keepdim=True)
    return v * torch.clamp(tau / n, max=1.0)


def top1(v: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(v)
    j = v.abs().argmax(dim=1)
    out[torch.arange(len(v)), j] = v[torch.arange(len(v)), j]
    return out


@pytest.mark.parametrize(("name", "alg", "op"), [
    ("clip21", {"lr": 0.4, "tau": 0.3}, lambda v: clip_rows(v, 0.3)),
    ("ef21", {"lr": 0.4, "k": 1}, top1),
])
@pytest.mark.parametrize("sampling", [{"scheme": "fixed", "clients": 2}, {"scheme": "poisson", "rate": 0.4}])
def test_ef21_family_partial_participation_by_hand(name: str, alg: dict, op: Any, sampling: dict) -> None:
    """g_i^0 = C(∇f_i(x^0)) for every client, then per step: x ← x − γg; participants S send c_i = C(∇f_i(x) − g_i),
    g_i ← g_i + c_i; the others keep g_i; g ← g + (1/N) Σ_{i∈S} c_i."""
    n, steps, seed, lr = len(A6), 12, 5, 0.4
    ours = Sampled(quad(name, steps=steps, sampling=sampling, seed=seed, **alg))
    x = torch.tensor(X0, dtype=F64)
    g_i = op(grads(x, list(range(n))))
    g = g_i.mean(dim=0)
    sent = 1
    for k in range(steps):
        ids = list(rng.cohort(seed, k, n, size=sampling.get("clients"), rate=sampling.get("rate")))
        ours.step()
        if not ids:
            continue
        x = x - lr * g
        c = op(grads(x, ids) - g_i[ids])
        g_i[ids] += c
        g = g + c.sum(dim=0) / n
        sent += 1
        torch.testing.assert_close(ours.state.x, x, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(ours.state.agg, g, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(ours.rules.store["mem"], g_i, rtol=1e-12, atol=1e-15)
    assert ours.transport.counter.comm_rounds == sent  # rounds without participants send nothing
    assert ours.transport.counter.floats_up == sent * (2 if name == "clip21" else 1)  # per participating client


def test_scaffold_control_variates_by_hand() -> None:
    """SCAFFOLD option II, I = 2: participants run from (x, c), c_i⁺ = c_i − c + (x − y_i)/(Iη); x ← mean_S y_i,
    c ← c + (1/N) Σ_{i∈S} (c_i⁺ − c_i); the others keep c_i."""
    n, lr, interval, rounds, seed = len(A6), 0.2, 2, 5, 5
    ours = Sampled(quad("scaffold", steps=interval * rounds, sampling={"scheme": "fixed", "clients": 3}, seed=seed,
                        lr=lr, local_steps=interval))
    x, c = torch.tensor(X0, dtype=F64), torch.zeros(2, dtype=F64)
    ci = torch.zeros(n, 2, dtype=F64)
    for r in range(rounds):
        ids = list(rng.cohort(seed, r, n, size=3))
        y = x.expand(3, -1).clone()
        for _ in range(interval):
            y = y - lr * (grads(y, ids) - ci[ids] + c)
        new = ci[ids] - c + (x - y) / (interval * lr)
        x, c = y.mean(dim=0), c + (new - ci[ids]).sum(dim=0) / n
        ci[ids] = new
        ours.step(interval)
        torch.testing.assert_close(ours.state.x, x, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ours.state.c, c, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours.rules.store["ci"], ci, rtol=1e-12, atol=1e-14)


# -- cost and placement of the state ---------------------------------------------------------------------------------
def test_only_the_cohort_is_computed() -> None:
    """Every gradient the rules ask for is of the round's participants, and no more of them."""
    doc = {**logreg_doc("celgc", batch=4, clients=40, steps=6, lr=0.5, gamma=0.1, local_steps=2, momentum=0.5),
           "sampling": {"scheme": "fixed", "clients": 3}}
    ours = Sampled(doc)
    asked: list[list[int]] = []
    original = ours.problem.client_grads

    def spy(x: torch.Tensor, clients: torch.Tensor, batch: Any, draw: int = 0) -> torch.Tensor:
        asked.append(clients.tolist())
        return original(x, clients, batch, draw)

    ours.problem.client_grads = spy
    ours.step(6)
    assert asked == [list(rng.cohort(3, t // 2, 40, size=3)) for t in range(6)]
    assert ours.state.X.shape == (3, ours.problem.dim)  # local models of the cohort only
    assert ours.rules.store["buf"].shape == (40, ours.problem.dim)  # momentum: per-client state of every client
    assert int((ours.rules.store["buf"].abs().sum(dim=1) > 0).sum()) <= 9  # only clients that took part have one


def test_host_state_gives_the_same_numbers() -> None:
    base = {**logreg_doc("scaffold", batch=4, clients=12, steps=8, lr=0.5, local_steps=2)}
    device = runner.run({**base, "sampling": {"scheme": "poisson", "rate": 0.3}})
    host = runner.run({**base, "sampling": {"scheme": "poisson", "rate": 0.3, "state": "host"}})
    assert [r["loss"] for r in host.metrics] == [r["loss"] for r in device.metrics]
    assert host.metrics[-1]["comm_rounds"] == device.metrics[-1]["comm_rounds"]


def test_config_round_trips_and_stays_silent_without_sampling() -> None:
    cfg = config.from_dict({**logreg_doc("sgd", batch=4, lr=0.1), "sampling": {"scheme": "fixed", "clients": 2}})
    text = config.to_toml(cfg)
    assert "[sampling]" in text and config.to_toml(config.from_dict(tomllib.loads(text))) == text
    assert "[sampling]" not in config.to_toml(config.from_dict(logreg_doc("sgd", batch=4, lr=0.1)))


@pytest.mark.parametrize(("doc", "message"), [
    ({**logreg_doc("sgd", batch=4, lr=0.1), "sampling": {"scheme": "fixed", "clients": 9}}, r"sampling.clients = 9 "),
    ({**logreg_doc("sgd", batch=4, lr=0.1), "sampling": {"scheme": "fixed"}}, "sampling.clients goes with"),
    ({**logreg_doc("sgd", batch=4, lr=0.1), "sampling": {"scheme": "poisson", "rate": 0.0}}, r"sampling.rate = 0.0"),
    ({**logreg_doc("sgd", batch=4, lr=0.1), "sampling": {"scheme": "all", "rate": 0.5}}, "sampling.rate goes with"),
    ({**logreg_doc("dp-fedavg", batch=4, lr=0.1, tau=1.0), "sampling": {"scheme": "poisson", "rate": 0.5}},
     "dp-fedavg samples clients itself with algorithm.client_rate"),
    ({**logreg_doc("celgc", batch=4, lr=0.1, tau=1.0, momentum=0.9, dampening=0.1),
      "sampling": {"scheme": "poisson", "rate": 0.5}}, "dampening > 0 with client sampling"),
])
def test_refusals_are_one_line(doc: dict, message: str) -> None:
    with pytest.raises(DistclipError, match=message) as err:
        config.from_dict(doc)
    assert "\n" not in str(err.value)


def test_the_optimizer_refuses_client_sampling() -> None:
    from distclip.optim import DPFedAvg

    with pytest.raises(DistclipError, match="client sampling"):
        DPFedAvg(torch.nn.Linear(2, 1).parameters(), lr=0.1, tau=1.0, client_rate=0.5)
