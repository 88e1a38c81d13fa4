"""Every example config runs, shortened (the README's and the examples' own commands, with fewer steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distclip.cli import main
from distclip.metrics import read_metrics

ROOT = Path(__file__).parents[1]
SHORT = {
    "celgc_logreg.toml": ["run.steps=4", "run.log_every=2"],
    "cnn_mnist_dirichlet.toml": ["run.steps=3", "run.log_every=1", "algorithm.local_steps=2"],
    "cnn_mnist_torchrun.toml": ["run.steps=3", "run.log_every=1", "algorithm.local_steps=2"],
    "clip21_vs_clip_gd.toml": ["run.steps=3", "run.log_every=1"],
    "dp_fedavg_adaptive.toml": ["run.steps=4", "run.log_every=2"],
    "own_model/transformer_ptb.toml": ["run.steps=2", "run.log_every=1", "problem.eval_rows=16"],
    "own_model/cnn_mnist.toml": ["run.steps=2", "run.log_every=1"],
    # the Flower app's distclip configs run in the simulator too (the app itself: tests/flower)
    "flower/distclip_mnist/clip21_mnist.toml": ["run.steps=2", "run.log_every=1"],
    "flower/distclip_mnist/celgc_mnist.toml": ["run.steps=2", "run.log_every=1"],
}
APP_FILES = {"flower/pyproject.toml"}  # a Flower app's own pyproject, not a distclip config


def test_every_example_is_listed() -> None:
    found = {str(p.relative_to(ROOT / "examples")) for p in (ROOT / "examples").rglob("*.toml")}
    assert found - APP_FILES == set(SHORT)


@pytest.mark.parametrize("name", list(SHORT))
def test_example_runs(name: str, tmp_path: Path) -> None:
    args = [a for o in SHORT[name] for a in ("--set", o)]
    assert main(["run", str(ROOT / "examples" / name), "--out", str(tmp_path / "out"), "--quiet", *args]) == 0
    summaries = list((tmp_path / "out").rglob("summary.json"))
    assert summaries and all(json.loads(s.read_text())["status"] == "ok" for s in summaries)


def _torchrun(config: str, out: Path, *overrides: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "distclip",
           "run", str(ROOT / "examples" / config), "--out", str(out), "--quiet", "--no-plot",
           *(a for o in overrides for a in ("--set", o))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_own_cnn_example_under_torchrun(tmp_path: Path) -> None:
    """The command in cnn_mnist.toml's header, shortened: 2 gloo processes, each holding 4 of the 8 clients."""
    _torchrun("own_model/cnn_mnist.toml", tmp_path / "out", "run.steps=2", "run.log_every=1")
    summary = json.loads((tmp_path / "out" / "clip21" / "summary.json").read_text())
    assert summary["engine"] == "TorchDistributed" and summary["world_size"] == 2


@pytest.mark.slow
def test_torchrun_example_matches_one_process(tmp_path: Path) -> None:
    """The command in cnn_mnist_torchrun.toml's header, shortened: 2 ranks give the one-process run's metrics."""
    short = SHORT["cnn_mnist_torchrun.toml"]
    _torchrun("cnn_mnist_torchrun.toml", tmp_path / "two", *short)
    assert main(["run", str(ROOT / "examples/cnn_mnist_torchrun.toml"), "--out", str(tmp_path / "one"), "--quiet",
                 "--no-plot", *(a for o in short for a in ("--set", o))]) == 0
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["engine"] == "TorchDistributed" and summary["world_size"] == 2
    two, one = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("two", "one"))
    assert [r["step"] for r in two] == [r["step"] for r in one] == [0, 1, 2, 3]
    for a, b in zip(two, one, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["test_acc"] == pytest.approx(b["test_acc"])
