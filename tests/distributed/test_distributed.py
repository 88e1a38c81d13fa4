"""torch.distributed transport against the simulator, checkpoints, resume, restarts and failures.

Every test launches real gloo process groups with torchrun on loopback (bounded by timeouts).
"""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from distclip.algorithms import ALGORITHMS
from distclip.config import dump_toml, from_dict
from distclip.metrics import read_metrics
from distclip.runner import run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
COUNTERS = ("step", "comm_rounds", "floats_up", "floats_down", "bytes_up", "bytes_down")


def logreg(algorithm: dict, steps: int = 30, batch: int = 0, dtype: str = "float64", **run_keys) -> dict:
    return {
        "seed": 3,
        "problem": {"kind": "logreg", "dataset": "breast-cancer_scale", "lambda": 0.1},
        "partition": {"clients": 5, "scheme": "sorted"},
        "algorithm": algorithm,
        "run": {"steps": steps, "batch_size": batch, "log_every": 3, "dtype": dtype, **run_keys},
    }


QUAD = {"kind": "quadratic", "centres": [[5.0, 0.0, 1.0], [-1.0, 2.0, 0.5], [0.3, -4.0, 2.0], [1.0, 1.0, 1.0],
                                         [2.0, -2.0, 0.0]]}
CASES = {
    "gd": logreg({"name": "gd", "lr": "1/L", "momentum": 0.5}),
    "sgd": logreg({"name": "sgd", "lr": 0.5, "weight_decay": 1e-3}, batch=8),
    "clip-gd": logreg({"name": "clip-gd", "lr": "1/L", "tau": [0.05, 0.1, 0.05, 0.2, 0.05]}),
    "clip-gd-server-official": logreg({"name": "clip-gd", "lr": 1.0, "tau": 0.05, "clip_at": "server",
                                       "official": True}),
    "clip-sgd-soft": logreg({"name": "clip-sgd", "lr": 0.5, "tau": 0.05, "clip": "soft"}, batch=8),
    "naive-parallel-clip": logreg({"name": "naive-parallel-clip", "lr": 1.0, "tau": 0.05}, batch=8),
    "clip21": logreg({"name": "clip21", "lr": "1/L", "tau": 0.01}),
    "clip21-sgd-zero": logreg({"name": "clip21", "lr": 0.5, "tau": 0.05, "init": "zero"}, batch=8),
    "clip21-coordinate": logreg({"name": "clip21", "lr": "1/L", "tau": 0.01, "clip": "coordinate"}),
    "ef21-topk": logreg({"name": "ef21", "lr": "1/L", "k": 3}),
    "ef21-identity-grad": logreg({"name": "ef21", "lr": "1/L", "compressor": "identity", "init": "grad"}),
    "celgc-local": logreg({"name": "celgc", "lr": 1.0, "gamma": 0.05, "local_steps": 4, "momentum": 0.9,
                           "weight_decay": 1e-3}, batch=8),
    "celgc-max": logreg({"name": "celgc", "lr": 1.0, "gamma": 0.05, "local_steps": 3, "option": "max"}, batch=8),
    "celgc-global": logreg({"name": "celgc", "lr": 1.0, "tau": 0.1, "local_steps": 3,
                            "option": "global_average"}, batch=8),
    "celgc-baseline": logreg({"name": "celgc", "lr": 1.0, "gamma": 0.05, "baseline": True}, batch=8),
    "local-sgd": logreg({"name": "local-sgd", "lr": 0.5, "local_steps": 4}, batch=8),
    "clip21-avg": {"problem": QUAD, "algorithm": {"name": "clip21-avg", "tau": 1.0}, "run": {"steps": 12}},
    "clip21-float32": logreg({"name": "clip21", "lr": "1/L", "tau": 0.01}, dtype="float32"),
    "episode": logreg({"name": "episode", "lr": 1.0, "gamma": 0.2, "local_steps": 3, "momentum": 0.9,
                       "weight_decay": 1e-3}, batch=8),
    "celgc-awd-lstm-carry": {  # per-client dropout masks and carried hidden states, whichever rank holds a client
        "seed": 3, "problem": {"kind": "lstm", "dataset": "ptb", "path": str(ROOT / "tests/problems/tiny_ptb"),
                               "model": "awd", "hidden": [8, 6], "bptt": 5},
        "partition": {"clients": 4}, "algorithm": {"name": "celgc", "lr": 5.0, "tau": 0.25, "local_steps": 2},
        "run": {"steps": 6, "batch_size": 2, "log_every": 3, "dtype": "float64"},
    },
    # local DP noise is drawn per (seed, client, round), so it does not depend on which rank holds a client
    "clip21-sgd2m-dp": logreg({"name": "clip21-sgd2m", "lr": 0.5, "tau": 0.05, "noise_multiplier": 0.5,
                               "delta": 1e-3}, batch=8),
    "clip21-dp": logreg({"name": "clip21", "lr": 0.5, "tau": 0.05, "noise_multiplier": 0.5}, batch=8),
    "dp-fedavg-adaptive": logreg({"name": "dp-fedavg", "lr": 0.5, "tau": 0.05, "local_steps": 3, "momentum": 0.5,
                                  "adaptive_clip": "geometric", "noise_multiplier": 0.3}, batch=8),
    "scaffold-II": logreg({"name": "scaffold", "lr": 0.5, "local_steps": 3}, batch=8),
    "scaffold-I": logreg({"name": "scaffold", "lr": 0.5, "local_steps": 2, "option": "I", "server_lr": 0.8}, batch=8),
    "fedprox": logreg({"name": "fedprox", "lr": 0.5, "local_steps": 3, "mu": 0.1}, batch=8),
    # the official code's clipping coefficient γ/(1e-10 + ‖ḡ‖) in both (docs/algorithms.md §1)
    "celgc-baseline-full": logreg({"name": "celgc", "lr": 1.0, "gamma": 0.02, "baseline": True}, steps=40),
    "naive-official-full": logreg({"name": "naive-parallel-clip", "lr": 1.0, "tau": 0.02, "official": True},
                                  steps=40),
    # the user's own nn.Module (problem kind torch): vmap path, and the loop path with per-client dropout masks
    "torch-mlp-celgc": {"seed": 0, "problem": {"kind": "torch", "model": f"{ROOT}/tests/problems/user_models.py:mlp",
                                               "data": f"{ROOT}/tests/problems/user_models.py:digits"},
                        "partition": {"clients": 5, "scheme": "sorted"},
                        "algorithm": {"name": "celgc", "lr": 0.5, "gamma": 0.05, "local_steps": 3},
                        "run": {"steps": 9, "batch_size": 8, "log_every": 3}},
    "torch-dropout-clip21": {"seed": 0, "problem": {"kind": "torch",
                                                    "model": str(ROOT / "tests/problems/user_models.py:with_dropout"),
                                                    "data": str(ROOT / "tests/problems/user_models.py:digits")},
                             "partition": {"clients": 5, "scheme": "iid"},
                             "algorithm": {"name": "clip21", "lr": 0.5, "tau": 0.5},
                             "run": {"steps": 6, "batch_size": 8, "log_every": 3}},
    "dp-fedavg-sampled": logreg({"name": "dp-fedavg", "lr": 0.5, "tau": 0.05, "local_steps": 2, "client_rate": 0.6,
                                 "noise_multiplier": 1.0}, batch=8),
    # client sampling ([sampling]): cohorts drawn from (seed, round); some ranks hold no participant in a round
    "sampled-clip21-fixed": {**logreg({"name": "clip21", "lr": "1/L", "tau": 0.01}),
                             "sampling": {"scheme": "fixed", "clients": 2}},
    "sampled-ef21-topk-poisson": {**logreg({"name": "ef21", "lr": "1/L", "k": 3}),
                                  "sampling": {"scheme": "poisson", "rate": 0.5}},
    "sampled-scaffold-host": {**logreg({"name": "scaffold", "lr": 0.5, "local_steps": 3}, batch=8),
                              "sampling": {"scheme": "fixed", "clients": 3, "state": "host"}},
    "sampled-celgc-momentum-poisson": {**logreg({"name": "celgc", "lr": 1.0, "gamma": 0.05, "local_steps": 2,
                                                 "momentum": 0.9}, batch=8),
                                       "sampling": {"scheme": "poisson", "rate": 0.4}},
    "sampled-clip21-sgd-dp": {**logreg({"name": "clip21", "lr": 0.5, "tau": 0.05, "noise_multiplier": 0.5}, batch=8),
                              "sampling": {"scheme": "fixed", "clients": 2}},
}


def test_cases_cover_every_algorithm():
    assert {c["algorithm"]["name"] for c in CASES.values()} == set(ALGORITHMS)


def torchrun(world: int, cases: dict, tmp: Path, *extra: str, max_restarts: int = 0, timeout: int = 180):
    tmp.mkdir(parents=True, exist_ok=True)
    paths = {}
    for label, doc in cases.items():
        paths[label] = str(tmp / f"{label}.toml")
        Path(paths[label]).write_text(dump_toml(doc))
    (tmp / "cases.json").write_text(json.dumps(paths))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
           f"--max-restarts={max_restarts}", "--monitor-interval=0.5", str(ROOT / "tests/distributed/worker.py"),
           str(tmp / "cases.json"), str(tmp / "runs"), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and every worker it started
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def assert_same(rows: list[dict], expected: list[dict], rel: float) -> None:
    assert [r["step"] for r in rows] == [r["step"] for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            if key == "wall_s":
                continue
            if key in COUNTERS:
                assert got[key] == value, (key, got["step"])
            else:
                assert math.isclose(got[key], value, rel_tol=rel, abs_tol=1e-300), (key, got["step"], got[key], value)


def tolerance(doc: dict) -> float:
    return 1e-5 if doc["run"].get("dtype") == "float32" else 1e-11


@pytest.fixture(scope="module", params=[2, 3], ids=["W2", "W3"])
def launched(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"w{request.param}")
    proc = torchrun(request.param, CASES, tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "runs"


@pytest.mark.parametrize("label", list(CASES))
def test_same_numbers_as_simulator(launched, label):
    expected = run(from_dict(CASES[label])).metrics
    rows = read_metrics(launched / label / "metrics.jsonl")
    assert_same(rows, expected, tolerance(CASES[label]))
    summary = json.loads((launched / label / "summary.json").read_text())
    assert summary["engine"] == "TorchDistributed" and summary["world_size"] in (2, 3)


# -- checkpoints and resume ----------------------------------------------------------------------
RESUMABLE = {
    "torch-dropout-scaffold": {**CASES["torch-dropout-clip21"], "algorithm": {"name": "scaffold", "lr": 0.5,
                                                                             "local_steps": 3},
                               "run": {"steps": 40, "batch_size": 8, "log_every": 3, "checkpoint_every": 10}},
    "celgc": logreg({"name": "celgc", "lr": 1.0, "gamma": 0.05, "local_steps": 4, "momentum": 0.9}, steps=40,
                    batch=8, checkpoint_every=10),
    "clip21": logreg({"name": "clip21", "lr": "1/L", "tau": 0.01}, steps=40, checkpoint_every=10),
    "celgc-awd-lstm-carry": {**CASES["celgc-awd-lstm-carry"], "run": {  # carried hidden states in the checkpoint
        "steps": 40, "batch_size": 2, "log_every": 9, "dtype": "float64", "checkpoint_every": 10}},
    "clip21-sgd2m-dp": logreg({"name": "clip21-sgd2m", "lr": 0.5, "tau": 0.05, "noise_multiplier": 0.5}, steps=40,
                              batch=8, checkpoint_every=10),
    "dp-fedavg-adaptive": logreg({"name": "dp-fedavg", "lr": 0.5, "tau": 0.05, "local_steps": 3,
                                  "adaptive_clip": "geometric", "noise_multiplier": 0.3}, steps=40, batch=8,
                                 checkpoint_every=10),
}


def _with_steps(doc: dict, steps: int) -> dict:
    return {**doc, "run": {**doc["run"], "steps": steps}}


def _interrupt_at(monkeypatch, name: str, step: int) -> None:
    rules = ALGORITHMS[name].rules
    original = rules.step

    def step_fn(state, ctx, t):
        if t == step:
            raise KeyboardInterrupt
        return original(state, ctx, t)

    monkeypatch.setattr(rules, "step", step_fn)


def test_naive_parallel_clip_official_is_celgc_baseline(launched):
    """Same replicas, same coefficient: the runs agree to the last bits of the logged average (the states are
    bit-identical, tests/algorithms/test_equivalences.py); before the shared coefficient they differed by 2e-8."""
    a = read_metrics(launched / "celgc-baseline-full" / "metrics.jsonl")
    b = read_metrics(launched / "naive-official-full" / "metrics.jsonl")
    assert [r["comm_rounds"] for r in a] == [r["comm_rounds"] for r in b]
    assert any(r["clip_frac"] > 0 for r in a)
    for x, y in zip(a, b, strict=True):
        assert x["clip_frac"] == y["clip_frac"]
        assert math.isclose(x["grad_norm_sq"], y["grad_norm_sq"], rel_tol=1e-13), (x["step"], x, y)


@pytest.mark.parametrize("label", list(RESUMABLE))
def test_simulator_resume_is_bit_identical(tmp_path, monkeypatch, label):
    doc = RESUMABLE[label]
    full = run(from_dict(doc), tmp_path / "full")
    with monkeypatch.context() as m:
        _interrupt_at(m, doc["algorithm"]["name"], 27)
        with pytest.raises(KeyboardInterrupt):
            run(from_dict(doc), tmp_path / "cut")
    assert read_metrics(tmp_path / "cut" / "metrics.jsonl")[-1]["step"] == 27  # logged 0, 3, ..., 27
    resumed = run(from_dict(doc), tmp_path / "cut", resume=True)
    assert resumed.summary["resumed_from"] == 20
    rows = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    want = read_metrics(tmp_path / "full" / "metrics.jsonl")
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in want]  # bit-identical, no duplicates
    assert [r["step"] for r in resumed.metrics] == [r["step"] for r in full.metrics]
    assert resumed.summary["last_clip_step"] == full.summary["last_clip_step"]


@pytest.mark.parametrize("label", ["celgc", "celgc-awd-lstm-carry", "torch-dropout-scaffold"])
def test_checkpoints_move_between_world_sizes(tmp_path, label):
    """Simulator -> 2 ranks -> 3 ranks -> simulator, each leg resuming the previous leg's checkpoint."""
    doc = RESUMABLE[label]
    expected = run(from_dict(_with_steps(doc, 40))).metrics
    runs = tmp_path / "runs"
    run(from_dict(_with_steps(doc, 10)), runs / label)
    proc = torchrun(2, {label: doc}, tmp_path, "--resume-steps", "20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = torchrun(3, {label: doc}, tmp_path, "--resume-steps", "30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run(from_dict(_with_steps(doc, 40)), runs / label, resume=True)
    rows = read_metrics(runs / label / "metrics.jsonl")
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps))  # no step twice
    assert {10, 20, 30} <= set(steps)  # each leg logged its last step
    keep = {r["step"] for r in expected}
    assert_same([r for r in rows if r["step"] in keep], expected, 1e-11)


# client sampling: the store of every client's rows is gathered and split like any per-client field, the state's
# cohort-sized rows follow their cohort; checkpoints at steps 10, 20, 30 fall inside rounds of 3 or 4 local steps
# (logged every 5 steps, so each leg's last log is one of the uncut run's and clip_frac_mean covers the same steps)
LEGS = {"steps": 40, "checkpoint_every": 10, "log_every": 5}
SAMPLED_RESUMABLE = {
    "sampled-ef21-topk-poisson": {**logreg({"name": "ef21", "lr": "1/L", "k": 3}, **LEGS),
                                  "sampling": {"scheme": "poisson", "rate": 0.5}},
    "sampled-scaffold-host": {**logreg({"name": "scaffold", "lr": 0.5, "local_steps": 3}, batch=8, **LEGS),
                              "sampling": {"scheme": "fixed", "clients": 3, "state": "host"}},
    "sampled-celgc-momentum-poisson": {**logreg({"name": "celgc", "lr": 1.0, "gamma": 0.05, "local_steps": 4,
                                                 "momentum": 0.9}, batch=8, **LEGS),
                                       "sampling": {"scheme": "poisson", "rate": 0.4}},
    "dp-fedavg-sampled": logreg({"name": "dp-fedavg", "lr": 0.5, "tau": 0.05, "local_steps": 3, "client_rate": 0.6,
                                 "momentum": 0.5, "noise_multiplier": 1.0}, batch=8, **LEGS),
}


def test_sampled_checkpoints_move_between_world_sizes(tmp_path):
    """As above, every sampled case in one launch per leg: simulator -> 2 ranks -> 3 ranks -> simulator."""
    runs = tmp_path / "runs"
    for label, doc in SAMPLED_RESUMABLE.items():
        run(from_dict(_with_steps(doc, 10)), runs / label)
    for world, steps in ((2, 20), (3, 30)):
        proc = torchrun(world, SAMPLED_RESUMABLE, tmp_path, "--resume-steps", str(steps))
        assert proc.returncode == 0, proc.stderr[-3000:]
    for label, doc in SAMPLED_RESUMABLE.items():
        run(from_dict(_with_steps(doc, 40)), runs / label, resume=True)
        rows = read_metrics(runs / label / "metrics.jsonl")
        assert {10, 20, 30} <= {r["step"] for r in rows}, label
        expected = run(from_dict(doc)).metrics
        keep = {r["step"] for r in expected}
        assert_same([r for r in rows if r["step"] in keep], expected, 1e-11)


def test_resume_rejects_a_different_run(tmp_path):
    doc = RESUMABLE["clip21"]
    run(from_dict(_with_steps(doc, 10)), tmp_path / "r")
    other = {**doc, "algorithm": {**doc["algorithm"], "tau": 0.5}}
    with pytest.raises(Exception, match="another config"):
        run(from_dict(other), tmp_path / "r", resume=True)


# -- failures --------------------------------------------------------------------------------------
def test_killed_worker_restarts_from_checkpoint(tmp_path):
    doc = logreg({"name": "celgc", "lr": 1.0, "gamma": 0.05, "local_steps": 4, "momentum": 0.9}, steps=120,
                 batch=8, checkpoint_every=25, log_every=5)
    proc = torchrun(2, {"celgc": doc}, tmp_path, "--kill-rank", "1", "--kill-step", "63", max_restarts=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exitcode: -9" in proc.stderr  # rank 1 really was SIGKILLed, then the group restarted
    rows = read_metrics(tmp_path / "runs" / "celgc" / "metrics.jsonl")
    expected = run(from_dict(doc)).metrics
    assert_same(rows, expected, 1e-11)  # nothing lost, nothing duplicated, same numbers
    summary = json.loads((tmp_path / "runs" / "celgc" / "summary.json").read_text())
    assert summary["resumed_from"] == 50


def test_killed_worker_restarts_from_checkpoint_with_sampling(tmp_path):
    doc = {**logreg({"name": "scaffold", "lr": 0.5, "local_steps": 4}, steps=120, batch=8, checkpoint_every=25,
                    log_every=5), "sampling": {"scheme": "fixed", "clients": 3, "state": "host"}}
    proc = torchrun(2, {"s": doc}, tmp_path, "--kill-rank", "1", "--kill-step", "63", max_restarts=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exitcode: -9" in proc.stderr
    assert_same(read_metrics(tmp_path / "runs" / "s" / "metrics.jsonl"), run(from_dict(doc)).metrics, 1e-11)
    assert json.loads((tmp_path / "runs" / "s" / "summary.json").read_text())["resumed_from"] == 50


def test_hung_worker_is_reported_by_timeout(tmp_path):
    doc = logreg({"name": "clip21", "lr": "1/L", "tau": 0.01}, steps=20, timeout_s=4.0)
    proc = torchrun(2, {"hang": doc}, tmp_path, "--kill-rank", "1", "--kill-step", "5", "--hang", timeout=120)
    assert proc.returncode != 0
    assert "hung past run.timeout_s = 4" in proc.stderr
    rows = read_metrics(tmp_path / "runs" / "hang" / "metrics.jsonl")
    assert rows[0]["step"] == 0  # what was logged before the hang is kept


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("distclip: error:")]


def test_config_differing_across_ranks(tmp_path):
    proc = torchrun(2, {"c": RESUMABLE["clip21"]}, tmp_path, "--rank-set", "1", "algorithm.tau=0.02")
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert len(lines) == 2 and all("rank 1: config differs" in line for line in lines)


def test_dataset_missing_on_one_rank(tmp_path):
    data = tmp_path / "d.svm"
    data.write_text("".join(f"{1 if i % 2 else -1} 1:{i / 10} 2:{(i % 3) / 3}\n" for i in range(20)))
    doc = {"problem": {"kind": "logreg", "path": str(data)}, "partition": {"clients": 4},
           "algorithm": {"name": "gd", "lr": 0.1}, "run": {"steps": 5}}
    proc = torchrun(2, {"m": doc}, tmp_path, "--rank-set", "1", f'problem.path="{tmp_path}/missing.svm"')
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert len(lines) == 2 and all("rank 1: dataset file" in line and "not found" in line for line in lines)


def test_nan_on_one_rank_stops_every_rank(tmp_path):
    doc = {"problem": {"kind": "quadratic", "centres": [1.0, 2.0], "curvatures": [1.0, 1000.0]},
           "algorithm": {"name": "local-sgd", "lr": 0.01, "local_steps": 10000},
           "run": {"steps": 2000, "log_every": 10}}
    proc = torchrun(2, {"nan": doc}, tmp_path)
    assert proc.returncode != 0
    lines = _error_lines(proc)
    assert len(lines) == 2 and all("NaN or Inf" in line and "on rank 1" in line for line in lines)
    expected_step = run_error_step(doc)
    assert all(f"at step {expected_step} " in line for line in lines)


def run_error_step(doc: dict) -> int:
    with pytest.raises(Exception) as err:
        run(from_dict(doc))
    return int(str(err.value).split("at step ")[1].split(":")[0].split(" ")[0])
