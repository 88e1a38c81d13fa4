"""The benchmark harness (never the benchmarks themselves) and the simulated link."""

import json

import pytest
import torch

from distclip.algorithms import ALGORITHMS
from distclip.bench.common import Result, Target, measure, write
from distclip.cli import main
from distclip.config import from_dict
from distclip.engine.link import SimulatedLink
from distclip.engine.transport import InProcess
from distclip.runner import build_context, build_problem


def _celgc(transport_of):
    cfg = from_dict({"problem": {"kind": "quadratic", "centres": [[1.0, 2.0], [-1.0, 0.0], [3.0, 1.0]]},
                     "algorithm": {"name": "celgc", "lr": 0.1, "gamma": 0.05, "local_steps": 2},
                     "run": {"dtype": "float64"}})
    problem = build_problem(cfg)
    transport = transport_of(InProcess(problem.n_clients))
    ctx, _ = build_context(cfg, problem, transport)
    rules = ALGORITHMS["celgc"].rules
    state, _ = rules.init(ctx)
    for t in range(6):
        state, _ = rules.step(state, ctx, t)
    return rules.model(state, ctx), transport


def test_simulated_link_changes_nothing_but_time():
    plain, tr = _celgc(lambda t: t)
    linked, link = _celgc(lambda t: SimulatedLink(t, latency_s=0.01, bandwidth_bps=8e3, sleep=False))
    assert torch.equal(plain, linked)
    assert link.counter.as_dict() == tr.counter.as_dict()
    # rounds at t = 0, 2, 4, each 2 floats of 8 bytes up and down per client: 10 ms + 32 bytes at 1 kB/s
    assert tr.counter.comm_rounds == 3
    assert link.simulated_s == pytest.approx(3 * (0.01 + 32 / 1e3))


def test_measure_and_report(tmp_path):
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1

    def b():
        calls["b"] += 1

    s = measure({"a": a, "b": b}, repeats=3)
    assert [len(v) for v in s.values()] == [3, 3] and all(x > 0 for v in s.values() for x in v)
    assert calls["a"] > 3 and calls["b"] > 3  # warm-up plus calibrated samples
    r = Result("x", "title", ["k", "v"], [{"k": "one", "v": 1.5}], targets=[Target("v small", 1.5, 1.2)])
    assert "| one | 1.5 |" in r.table() and "[MISSED] v small: 1.50 (target <= 1.2)" in r.text()
    doc = json.loads(write(r, tmp_path, {"cores": 1}).read_text())
    assert doc["targets"][0]["holds"] is False and doc["machine"] == {"cores": 1}


def test_bench_cli_quick_smoke(tmp_path, capsys):
    code = main(["bench", "clip21-logreg", "--quick", "--repeats", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "machine:" in out and "torch" in out and "Clip21-GD iteration / full gradient" in out
    doc = json.loads((tmp_path / "clip21-logreg.json").read_text())
    assert {r["what"] for r in doc["rows"]} == {"clip21", "ef21", "clip-gd", "full gradient"}
    assert doc["machine"]["threads"] >= 1 and doc["params"]["quick"] is True


def test_bench_rejects_unknown_name(capsys):
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark nope" in capsys.readouterr().err


def test_sampling_contender_keeps_per_client_state_only_where_the_rule_has_it():
    from distclip.bench.sampling import contender

    one, ef21 = contender("logreg-ef21", 300, {"scheme": "fixed", "clients": 100})
    one()
    assert ef21["d"] == 123 and ef21["store_mb"] == 300 * 123 * 8 / 2**20  # EF21's g_i of every client
    _, fedavg = contender("logreg-fedavg", 300, {"scheme": "fixed", "clients": 100})
    assert fedavg["store_mb"] == 0  # FedAvg: local models of the cohort only
