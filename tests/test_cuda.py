"""GPU readiness: on a CUDA device the training loop waits for the device only at logged steps, results match
the CPU's, and the NaN/Inf alarm names the same step. The ``cuda`` tests skip without CUDA; scripts/gpu_check.sh
runs them (and ``distclip bench gpu``) on a GPU machine. The GPU benchmark's code also runs here on the CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

import distclip
from distclip.algorithms import ALGORITHMS
from distclip.bench import gpu
from distclip.config import from_dict
from distclip.engine.loop import train
from distclip.engine.transport import InProcess
from distclip.errors import DistclipError
from distclip.runner import build_context, build_problem


def cuda(test):
    """A test that needs a CUDA device: marked ``cuda``, skipped without one."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)")
    return pytest.mark.cuda(skip(test))


def _mlp(device: str, dtype: str = "float32", algorithm: str = "celgc") -> dict:
    alg = {"name": algorithm, "lr": 0.1, "local_steps": 2} | ({"gamma": 0.05} if algorithm == "celgc" else {})
    return {"problem": {"kind": "mlp", "dataset": "digits", "hidden": [16]}, "partition": {"clients": 4},
            "algorithm": alg, "run": {"batch_size": 8, "dtype": dtype, "device": device, "steps": 20,
                                      "log_every": 5}}


def _syncs(steps: int, algorithm: str) -> int:
    """Host synchronisations the training loop makes in ``steps`` steps logged only at the start and the end."""
    cfg = from_dict(_mlp("cuda", algorithm=algorithm))
    problem = build_problem(cfg)
    ctx, _ = build_context(cfg, problem, InProcess(problem.n_clients, "cuda"))
    rules = ALGORITHMS[cfg.algorithm.name].rules
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train(rules, ctx, problem, steps, steps, lambda row: None, evaluate=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


@cuda
@pytest.mark.parametrize("algorithm", ["celgc", "local-sgd", "scaffold"])
def test_no_host_sync_per_step(algorithm):
    assert _syncs(24, algorithm) == _syncs(6, algorithm)


@cuda
def test_cuda_run_matches_cpu_and_keeps_the_model_on_the_device():
    cpu, cuda = distclip.run(_mlp("cpu", "float64")), distclip.run(_mlp("cuda", "float64"))
    assert cuda.model.is_cuda
    for a, b in zip(cpu.metrics, cuda.metrics, strict=True):
        assert a["step"] == b["step"] and a["clip_frac"] == b["clip_frac"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-9)


@cuda
def test_nonfinite_alarm_names_the_same_step_on_cuda():
    doc = {"problem": {"kind": "quadratic", "centres": [1.0, 2.0], "curvatures": [1.0, 1000.0]},
           "algorithm": {"name": "local-sgd", "lr": 0.01, "local_steps": 10000}, "run": {"steps": 2000,
                                                                                      "log_every": 50}}
    messages = []
    for device in ("cpu", "cuda"):
        with pytest.raises(DistclipError) as err:
            distclip.run({**doc, "run": {**doc["run"], "device": device}})
        messages.append(str(err.value))
    assert "NaN or Inf" in messages[0] and messages[0] == messages[1]


def test_gpu_benchmark_code_runs_on_the_cpu(tmp_path):
    res = gpu.run(True, tmp_path, 1, device="cpu")
    assert [r["workload"] for r in res.rows] == list(gpu.WORKLOADS)
    assert all(r["distclip ms"] > 0 and r["distclip / one model"] > 0 for r in res.rows)
